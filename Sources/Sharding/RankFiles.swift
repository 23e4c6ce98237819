import Compression
import DeepSeek
import Kernels
import SafeTensors

/// The tensors of one rank directory, plain safetensors or packed (`reshard --compress`).
public enum RankFiles {
    case plain(ShardedCheckpoint)
    case packed(PackedCheckpoint)

    /// `expectedShapes`: the plan's shapes for this rank (packed tensors are checked against them).
    public static func open(_ directory: String, threads: Int, expectedShapes: [String: [Int]]) throws -> RankFiles {
        if PackManifest.isPacked(directory) {
            return .packed(try PackedCheckpoint(directory: directory, threads: threads, expectedShapes: expectedShapes))
        }
        return .plain(try ShardedCheckpoint(directory: directory))
    }

    public var directory: String {
        switch self {
        case .plain(let c): return c.directory
        case .packed(let p): return p.directory
        }
    }

    /// (file name, tensor) pairs.
    public var listing: [(file: String, info: TensorInfo)] {
        switch self {
        case .plain(let c): return c.tensors.map { (basename($0.file.path), $0.info) }
        case .packed(let p): return p.tensorEntries
        }
    }

    public func info(_ name: String) -> TensorInfo? {
        switch self {
        case .plain(let c): return c[name]?.info
        case .packed(let p): return p.info(name)
        }
    }

    /// A tensor's bytes and the object that keeps them alive.
    public func bytes(_ name: String) throws -> (UnsafeRawBufferPointer, AnyObject) {
        switch self {
        case .plain(let c):
            let loc = try c.require(name)
            return (loc.data, loc.file)
        case .packed(let p):
            let owned = try p.bytes(name)
            return (owned.bytes, owned)
        }
    }

    public func matrix(_ role: TensorRole) throws -> WeightMatrix {
        switch self {
        case .plain(let c):
            guard let loc = c[role.name] else {
                throw ModelError.badTensor(file: c.directory, tensor: role.name, message: "missing from this rank")
            }
            return try loc.weightMatrix()
        case .packed(let p):
            return try p.matrix(role)
        }
    }

    /// NaN/Inf scan (and, for packed ranks, full decoding with checksums).
    public func scan(threads: Int, progress: (@Sendable (Int, Int) -> Void)?) -> IntegrityReport {
        switch self {
        case .plain(let c):
            var r = IntegrityReport()
            let (problems, scanned) = IntegrityCheck.scanNonFinite(c, threads: threads, progress: progress)
            r.problems = problems
            r.bytesScanned = scanned
            r.tensorsChecked = c.tensors.count
            return r
        case .packed(let p):
            return p.decodeAndScan(progress: progress)
        }
    }
}
