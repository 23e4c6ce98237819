import JSON
import Kernels
import SafeTensors

/// One thing wrong with a checkpoint.
public struct Problem: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case missingTensor = "missing_tensor"
        case unexpectedTensor = "unexpected_tensor"
        case wrongShape = "wrong_shape"
        case wrongDType = "wrong_dtype"
        case nonFinite = "non_finite"
        case tokenizer
        case checksum
        case layout
    }

    public let kind: Kind
    public let file: String
    public let tensor: String
    public let message: String

    public init(kind: Kind, file: String, tensor: String, message: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    /// Names from files are printed with control characters escaped (a tensor name can hold anything).
    public var description: String {
        tensor.isEmpty ? "\(Problem.printable(file)): \(message)" : "\(Problem.printable(file)): tensor \(Problem.printable(tensor)): \(message)"
    }

    public static func printable(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if u.value < 0x20 || u.value == 0x7f || (0x80..<0xa0).contains(u.value) {
                out += String(format: "\\u{%02x}", u.value)
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    public var json: JSONValue {
        ["kind": .string(kind.rawValue), "file": .string(file), "tensor": .string(tensor), "message": .string(message)]
    }
}

public struct IntegrityReport: Sendable {
    public var problems: [Problem] = []
    public var tensorsChecked = 0
    public var bytesScanned = 0
    public var ok: Bool { problems.isEmpty }

    public init() {}

    public var json: JSONValue {
        ["ok": .bool(ok), "problems": .array(problems.map(\.json)),
         "tensors_checked": JSONValue(tensorsChecked), "bytes_scanned": JSONValue(bytesScanned)]
    }
}

/// `dsconv verify` without `--prompt`: the schema, the NaN/Inf scan, the tokenizer files. Header
/// and index problems are found earlier, when the `Checkpoint` is opened.
public enum IntegrityCheck {
    /// Bytes per scan work item. Big enough to amortize, small enough to balance threads.
    static let chunkBytes = 8 << 20

    public static func run(_ checkpoint: Checkpoint, threads: Int,
                           progress: (@Sendable (_ bytesDone: Int, _ bytesTotal: Int) -> Void)? = nil) -> IntegrityReport {
        var report = IntegrityReport()
        report.problems += schemaProblems(checkpoint)
        let (nonFinite, scanned) = scanNonFinite(checkpoint.weights, threads: threads, progress: progress)
        report.problems += nonFinite
        report.bytesScanned = scanned
        report.tensorsChecked = checkpoint.weights.tensors.count
        report.problems += tokenizerProblems(directory: checkpoint.directory)
        return report
    }

    /// Missing, unexpected, mis-shaped and mis-typed tensors against the config's schema.
    public static func schemaProblems(_ checkpoint: Checkpoint) -> [Problem] {
        let entries = checkpoint.weights.tensors.map { (file: basename($0.file.path), info: $0.info) }
        return schemaProblems(schema: checkpoint.schema, expectedDType: checkpoint.expectedDType, tensors: entries,
                              indexName: checkpoint.weights.indexPath.map(basename) ?? "checkpoint")
    }

    /// The same over any listing of (file, tensor) pairs, e.g. a packed checkpoint's headers.
    public static func schemaProblems(schema: TensorSchema, expectedDType: DType, tensors: [(file: String, info: TensorInfo)],
                                      indexName: String) -> [Problem] {
        var problems: [Problem] = []
        var found: [String: (file: String, info: TensorInfo)] = [:]
        for t in tensors { found[t.info.name] = t }
        for t in schema.tensors {
            guard let f = found[t.name] else {
                problems.append(Problem(kind: .missingTensor, file: indexName, tensor: t.name,
                                        message: "missing (expected shape \(t.shape), \((t.dtype ?? expectedDType).rawValue))"))
                continue
            }
            if f.info.shape != t.shape {
                problems.append(Problem(kind: .wrongShape, file: f.file, tensor: t.name, message: "shape \(f.info.shape), expected \(t.shape)"))
            }
            // transformers keeps the router in fp32 on purpose; an f32 router is accepted.
            let routerF32 = { if case .router = t.role { return f.info.dtype == .f32 }; return false }()
            let dtype = t.dtype ?? expectedDType
            if f.info.dtype != dtype && !routerF32 {
                problems.append(Problem(kind: .wrongDType, file: f.file, tensor: t.name,
                                        message: "dtype \(f.info.dtype.rawValue), expected \(dtype.rawValue)"))
            }
        }
        for t in tensors where schema[t.info.name] == nil {
            problems.append(Problem(kind: .unexpectedTensor, file: t.file, tensor: t.info.name,
                                    message: "not part of the model the config describes (shape \(t.info.shape), \(t.info.dtype.rawValue))"))
        }
        return problems
    }

    /// Scans every floating tensor for NaN/Inf, in parallel chunks; returns problems and bytes read.
    public static func scanNonFinite(_ weights: ShardedCheckpoint, threads: Int,
                                     progress: (@Sendable (Int, Int) -> Void)? = nil) -> ([Problem], Int) {
        struct Chunk { let tensor: Int; let range: Range<Int> }
        var chunks: [Chunk] = []
        var total = 0
        for (i, loc) in weights.tensors.enumerated() where loc.info.dtype.isFloatingPoint {
            let n = loc.info.byteCount
            let elem = loc.info.dtype.size
            let step = chunkBytes / elem * elem
            var start = 0
            while start < n {
                chunks.append(Chunk(tensor: i, range: start..<min(n, start + step)))
                start += step
            }
            total += n
        }
        let totalBytes = total
        struct Hits { var count = 0; var first = Int.max }
        let hits = Locked([Int: Hits]())
        let done = AtomicCounter()
        let tensors = UnsafeSendable(weights.tensors)
        let work = UnsafeSendable(chunks)
        parallelFor(chunks.count, threads: threads) { c in
            let chunk = work.value[c]
            let loc = tensors.value[chunk.tensor]
            guard let format = loc.info.dtype.scanFormat else { return }
            let bytes = UnsafeRawBufferPointer(rebasing: loc.data[chunk.range])
            let r = NonFiniteScan.count(bytes, format: format)
            let fileRange = loc.file.fileRange(loc.info)
            let absolute = (fileRange.lowerBound + chunk.range.lowerBound)..<(fileRange.lowerBound + chunk.range.upperBound)
            loc.file.mapped.adviseDone(absolute)
            if r.count > 0, let first = r.first {
                let element = chunk.range.lowerBound / loc.info.dtype.size + first
                hits.withLock { h in
                    var e = h[chunk.tensor] ?? Hits()
                    e.count += r.count
                    e.first = min(e.first, element)
                    h[chunk.tensor] = e
                }
            }
            let d = done.increment(by: chunk.range.count) + chunk.range.count
            progress?(d, totalBytes)
        }
        let problems = hits.withLock { h in
            h.keys.sorted().map { i -> Problem in
                let loc = weights.tensors[i]
                let e = h[i]!
                return Problem(kind: .nonFinite, file: basename(loc.file.path), tensor: loc.info.name,
                               message: "\(e.count) NaN/Inf value\(e.count == 1 ? "" : "s"), first at flat index \(e.first) (expected finite \(loc.info.dtype.rawValue))")
            }
        }
        return (problems, total)
    }

    /// tokenizer.json and tokenizer_config.json must exist and parse.
    public static func tokenizerProblems(directory: String) -> [Problem] {
        var problems: [Problem] = []
        for name in Checkpoint.tokenizerFiles {
            let path = directory + "/" + name
            guard pathExists(path) else {
                problems.append(Problem(kind: .tokenizer, file: name, tensor: "", message: "missing (the tokenizer is needed for verify --prompt and calibration)"))
                continue
            }
            do {
                let file = try MappedFile(path: path)
                let keys = try JSONParser.validate(file.bytes)
                if keys.isEmpty {
                    problems.append(Problem(kind: .tokenizer, file: name, tensor: "", message: "is not a JSON object"))
                } else if name == "tokenizer.json", !keys.contains("model") {
                    problems.append(Problem(kind: .tokenizer, file: name, tensor: "", message: "has no \"model\" object"))
                }
            } catch {
                problems.append(Problem(kind: .tokenizer, file: name, tensor: "", message: "does not parse: \(error)"))
            }
        }
        return problems
    }
}

public func basename(_ path: String) -> String {
    path.split(separator: "/").last.map(String.init) ?? path
}
