import Compression
import DeepSeek
import Kernels
import SafeTensors
import Sharding

/// The kinds of directory dsconv reads. Detected in one place (`CheckpointKind.detect`); every
/// command opens its input through `OpenedCheckpoint`.
public enum CheckpointKind: String, Sendable {
    /// Hugging Face safetensors shards (BF16, or compressed-tensors when config.json has a
    /// `quantization_config`).
    case plain
    /// A `dsconv pack` output: seekable-zstd shards and `dsconv-pack-manifest.json`.
    case packed
    /// A `dsconv reshard` output: rank directories and `dsconv-manifest.json`.
    case reshard

    /// By the manifest a dsconv output carries; anything else is read as plain shards.
    public static func detect(_ directory: String) -> CheckpointKind {
        if ReshardManifest.isReshardOutput(directory) { return .reshard }
        switch TensorStores.storage(of: directory) {
        case .packed: return .packed
        case .plain: return .plain
        }
    }

    /// How a kind is named in messages.
    public var noun: String {
        switch self {
        case .plain: return "a safetensors checkpoint"
        case .packed: return "a packed directory (dsconv pack)"
        case .reshard: return "a reshard output (dsconv reshard)"
        }
    }
}

/// Any checkpoint kind, opened: its config, its tensors, its integrity check, the model that runs
/// it, and where its tokenizer is. Headers, indexes and manifests are validated on opening.
public final class OpenedCheckpoint: @unchecked Sendable {
    /// One entry per logical tensor (a reshard output's tensors as they were before the split).
    public struct TensorSummary: Sendable {
        public let name: String
        public let dtype: DType
        public let byteCount: Int
    }

    enum Storage {
        case plain(Checkpoint)
        case packed(PackedStore, StoreWeights)
        case reshard(ReshardManifest)
    }

    public let kind: CheckpointKind
    public let directory: String
    public let config: ModelConfig
    public let schema: TensorSchema
    /// Where tokenizer.json and tokenizer_config.json are.
    public let textDirectory: String
    let storage: Storage
    let threads: Int

    public static func open(_ directory: String, threads: Int) throws -> OpenedCheckpoint {
        try OpenedCheckpoint(directory: directory, threads: threads)
    }

    init(directory: String, threads: Int) throws {
        self.directory = directory
        self.threads = threads
        kind = CheckpointKind.detect(directory)
        switch kind {
        case .plain:
            let c = try Checkpoint(directory: directory)
            config = c.config
            schema = c.schema
            storage = .plain(c)
            textDirectory = directory
        case .packed:
            config = try ModelConfig.load(path: directory + "/config.json")
            schema = TensorSchema(config: config)
            let store = try PackedStore(directory: directory, threads: threads)
            storage = .packed(store, StoreWeights(store: store, schema: schema))
            textDirectory = directory
        case .reshard:
            let manifest = try ReshardManifest(directory: directory)
            textDirectory = directory + "/" + manifest.ranks[0].directory
            config = try ModelConfig.load(path: textDirectory + "/config.json")
            schema = TensorSchema(config: config)
            storage = .reshard(manifest)
        }
    }

    /// The plain checkpoint a command needs (reshard, pack, quantize read shards directly).
    public func plain(for command: String) throws -> Checkpoint {
        guard case .plain(let c) = storage else {
            let hint = kind == .packed ? "dsconv unpack it first" : "dsconv merge it first"
            throw ModelError.badInput("\(directory) is \(kind.noun); \(command) reads a safetensors checkpoint (\(hint))")
        }
        return c
    }

    /// The reshard manifest, for commands that read a reshard output (merge).
    public func reshardManifest(for command: String) throws -> ReshardManifest {
        guard case .reshard(let m) = storage else {
            throw ModelError.badInput("\(directory) is \(kind.noun); \(command) reads a reshard output (dsconv-manifest.json)")
        }
        return m
    }

    /// Logical tensors and their stored dtypes.
    public var tensors: [TensorSummary] {
        switch storage {
        case .plain(let c): return c.weights.listing.map { TensorSummary(name: $0.info.name, dtype: $0.info.dtype, byteCount: $0.info.byteCount) }
        case .packed(let p, _): return p.listing.map { TensorSummary(name: $0.info.name, dtype: $0.info.dtype, byteCount: $0.info.byteCount) }
        case .reshard(let m): return m.tensors.map { TensorSummary(name: $0.name, dtype: $0.dtype, byteCount: $0.shape.reduce($0.dtype.size, *)) }
        }
    }

    /// The weight files (path relative to the directory, size on disk).
    public var files: [(name: String, size: Int)] {
        switch storage {
        case .plain(let c): return c.weights.files.map { (basename($0.path), $0.fileSize) }
        case .packed(let p, _): return p.manifest.files.map { ($0.packed, $0.packedSize) }
        case .reshard(let m):
            return m.ranks.flatMap { r in
                r.files.filter { $0.name.hasSuffix(".safetensors") || $0.name.hasSuffix(".safetensors.zst") }
                    .map { (r.directory == "." ? $0.name : r.directory + "/" + $0.name, $0.size) }
            }
        }
    }

    /// One line on how the tensors are laid out.
    public var layout: String {
        switch storage {
        case .plain: return config.quantization == nil ? "safetensors" : "safetensors, compressed-tensors pack-quantized"
        case .packed(let p, _): return "packed (\(p.manifest.transform.rawValue))"
        case .reshard(let m): return "reshard tp \(m.tp), experts \(m.experts.rawValue)" + (m.layout == ReshardManifest.layout ? "" : ", layout \(m.layout)")
        }
    }

    /// `dsconv verify` without a prompt: every byte read back and checked.
    public func integrity(progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> IntegrityReport {
        switch storage {
        case .plain(let c): return IntegrityCheck.run(c, threads: threads, progress: progress)
        case .packed(let p, _):
            return IntegrityCheck.run(store: p, schema: schema, textDirectory: directory, threads: threads, progress: progress)
        case .reshard: return try ReshardIntegrity.run(directory: directory, threads: threads, progress: progress)
        }
    }

    /// The model that runs it: one `Transformer`, or the reshard output's ranks reduced, on the
    /// given kernel backend.
    public func model(backend: LinearBackend = .fast) throws -> any LanguageModel {
        let transformers: [Transformer]
        let model: any LanguageModel
        switch storage {
        case .plain(let c):
            let t = Transformer(checkpoint: c, threads: threads)
            (transformers, model) = ([t], t)
        case .packed(_, let w):
            let t = Transformer(config: config, weights: w, threads: threads)
            (transformers, model) = ([t], t)
        case .reshard:
            let tp = try TensorParallelModel(directory: directory, threads: threads)
            (transformers, model) = (tp.ranks, tp)
        }
        for t in transformers { t.backend = backend }
        return model
    }
}
