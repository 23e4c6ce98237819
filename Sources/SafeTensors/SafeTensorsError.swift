import Failures
/// Every way a safetensors file, a sharded index or a write can fail: one case a line, each naming
/// the file (and the tensor where there is one) and what was expected.
public enum SafeTensorsError: Error, Sendable, Equatable, CustomStringConvertible {
    case io(file: String, operation: String, errno: Int32)
    case headerTooSmall(file: String, size: Int)
    case headerTooLarge(file: String, length: UInt64, limit: Int)
    case headerLengthBeyondFile(file: String, length: UInt64, fileSize: Int)
    case headerNotJSON(file: String, reason: String)
    case headerNotObject(file: String)
    case invalidTensorEntry(file: String, tensor: String, reason: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    case shapeOverflow(file: String, tensor: String, shape: [UInt64])
    case byteLengthMismatch(file: String, tensor: String, expected: UInt64, actual: UInt64)
    case offsetGap(file: String, tensor: String, expected: UInt64, actual: UInt64)
    case offsetOverlap(file: String, tensor: String, expected: UInt64, actual: UInt64)
    case dataSizeMismatch(file: String, declared: UInt64, actual: UInt64)
    case indexInvalid(file: String, reason: String)
    case indexMissingFile(index: String, tensor: String, file: String)
    case indexTensorNotInFile(index: String, tensor: String, file: String, foundIn: String?)
    case tensorNotIndexed(index: String, tensor: String, file: String)
    case tensorInTwoFiles(tensor: String, first: String, second: String)
    case noSafetensorsFiles(directory: String)
    case tensorNotFound(tensor: String)
    case writeOutOfOrder(file: String, tensor: String, reason: String)
    case outputExists(path: String)
    case unsafeOutput(path: String, reason: String)
    case outputNotOurs(path: String, role: String)
    case outputLocked(path: String, lock: String)
    case notRegularFile(path: String)
    case manifestInvalid(file: String, reason: String)

    public var description: String {
        switch self {
        case .io(let f, let op, let e):
            return "\(f): \(op) failed: \(String(cString: strerror(e))) (errno \(e))"
        case .headerTooSmall(let f, let size):
            return "\(f): file is \(size) bytes, too small for the 8-byte safetensors header length"
        case .headerTooLarge(let f, let n, let limit):
            return "\(f): header length \(n) exceeds the \(limit)-byte limit"
        case .headerLengthBeyondFile(let f, let n, let size):
            return "\(f): header length \(n) runs past the end of the \(size)-byte file (truncated?)"
        case .headerNotJSON(let f, let reason):
            return "\(f): header is not valid JSON: \(reason)"
        case .headerNotObject(let f):
            return "\(f): header must be a JSON object of tensors"
        case .invalidTensorEntry(let f, let t, let reason):
            return "\(f): tensor \(t): \(reason)"
        case .unknownDType(let f, let t, let d):
            return "\(f): tensor \(t): unknown dtype \"\(d)\" (expected one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .shapeOverflow(let f, let t, let shape):
            return "\(f): tensor \(t): shape \(shape) overflows 64-bit byte count"
        case .byteLengthMismatch(let f, let t, let e, let a):
            return "\(f): tensor \(t): shape × dtype size is \(e) bytes but data_offsets span \(a)"
        case .offsetGap(let f, let t, let e, let a):
            return "\(f): tensor \(t): data starts at \(a), expected \(e) (hole in the data section)"
        case .offsetOverlap(let f, let t, let e, let a):
            return "\(f): tensor \(t): data starts at \(a), before the previous tensor ends at \(e) (overlap)"
        case .dataSizeMismatch(let f, let declared, let actual):
            return actual < declared
                ? "\(f): tensors need \(declared) data bytes but the file holds \(actual) (truncated)"
                : "\(f): tensors need \(declared) data bytes but the file holds \(actual) (trailing bytes)"
        case .indexInvalid(let f, let reason):
            return "\(f): \(reason)"
        case .indexMissingFile(let i, let t, let f):
            return "\(i): tensor \(t) points to \(f), which does not exist"
        case .indexTensorNotInFile(let i, let t, let f, let found):
            if let found { return "\(i): tensor \(t) is indexed in \(f) but lives in \(found)" }
            return "\(i): tensor \(t) is indexed in \(f) but that file does not hold it"
        case .tensorNotIndexed(let i, let t, let f):
            return "\(i): tensor \(t) in \(f) is missing from the index"
        case .tensorInTwoFiles(let t, let a, let b):
            return "tensor \(t) appears in both \(a) and \(b)"
        case .noSafetensorsFiles(let d):
            return "\(d): no *.safetensors files and no model.safetensors.index.json"
        case .tensorNotFound(let t):
            return "tensor \(t) is not in the checkpoint"
        case .writeOutOfOrder(let f, let t, let reason):
            return "\(f): writing tensor \(t): \(reason)"
        case .outputExists(let p):
            return "\(p) already exists (pass --force to replace it)"
        case .unsafeOutput(let p, let reason):
            return "refusing to write the output \(p): \(reason)"
        case .outputNotOurs(let p, let role):
            return "\(p) is \(role) but was not written by dsconv (no \(OutputDirectory.markerName) marker or dsconv manifest): refusing to replace it, even with --force; move it away or choose another output"
        case .notRegularFile(let p):
            return "\(p): not a regular file (a FIFO, device or directory where a file was expected)"
        case .manifestInvalid(let f, let reason):
            return "\(f): \(reason)"
        case .outputLocked(let p, let lock):
            return "\(p) is being written by another dsconv process (\(lock) is locked); wait for it or choose another output"
        }
    }

    /// The file the error is about.
    public var file: String? {
        switch self {
        case .io(let f, _, _), .headerTooSmall(let f, _), .headerTooLarge(let f, _, _),
            .headerLengthBeyondFile(let f, _, _), .headerNotJSON(let f, _), .headerNotObject(let f),
            .invalidTensorEntry(let f, _, _), .unknownDType(let f, _, _), .shapeOverflow(let f, _, _),
            .byteLengthMismatch(let f, _, _, _), .offsetGap(let f, _, _, _), .offsetOverlap(let f, _, _, _),
            .dataSizeMismatch(let f, _, _), .indexInvalid(let f, _), .writeOutOfOrder(let f, _, _), .manifestInvalid(let f, _):
            return f
        case .indexMissingFile(let i, _, _), .indexTensorNotInFile(let i, _, _, _), .tensorNotIndexed(let i, _, _):
            return i
        case .tensorInTwoFiles(_, let a, _): return a
        case .noSafetensorsFiles(let d): return d
        case .outputExists(let p), .unsafeOutput(let p, _), .outputNotOurs(let p, _), .outputLocked(let p, _), .notRegularFile(let p): return p
        case .tensorNotFound: return nil
        }
    }

    /// Whether the failure is the system's (disk, permissions), not the input's.
    public var isIOFailure: Bool {
        if case .io = self { return true }
        return false
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SafeTensorsError: DeclaresFailureKind {
    public var failureKind: FailureKind {
        if isIOFailure { return .io }
        switch self {
        case .noSafetensorsFiles, .writeOutOfOrder, .outputExists, .unsafeOutput, .outputNotOurs, .outputLocked: return .input
        default: return .damaged
        }
    }
}
