import JSON

/// How tensors are cut into shard files: in the given order, a new shard starting whenever the
/// next tensor would push the current one past `maxShardSize` (a tensor larger than the cap gets a
/// shard of its own), as Hugging Face's `save_pretrained` does.
public struct ShardLayout: Sendable {
    public let shards: [[TensorSpec]]
    /// Set when every tensor goes into one file of this name, without an index.
    public let singleFile: String?

    /// All tensors in one file named `singleFile`, no index (DeepSeek's `model{r}-mp{N}.safetensors`).
    public init(tensors: [TensorSpec], singleFile: String) {
        shards = [tensors]
        self.singleFile = singleFile
    }

    public init(tensors: [TensorSpec], maxShardSize: Int) {
        singleFile = nil
        var shards: [[TensorSpec]] = []
        var current: [TensorSpec] = []
        var size = 0
        for t in tensors {
            if !current.isEmpty && size + t.byteCount > maxShardSize {
                shards.append(current)
                current = []
                size = 0
            }
            current.append(t)
            size += t.byteCount
        }
        if !current.isEmpty || shards.isEmpty { shards.append(current) }
        self.shards = shards
    }

    /// `model-00001-of-00003.safetensors` (or the single file's name).
    public func fileName(_ shard: Int) -> String {
        if let singleFile { return singleFile }
        func pad(_ n: Int) -> String { let s = String(n); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
        return "model-\(pad(shard + 1))-of-\(pad(shards.count)).safetensors"
    }
}

/// Writes a whole sharded checkpoint into a directory: shards in order, then
/// `model.safetensors.index.json` (none for a single-file layout). Tensors must be written in the
/// order given.
public final class ShardedWriter {
    public let directory: String
    public let layout: ShardLayout
    public let metadata: [String: String]
    private var shard = 0
    private var inShard = 0
    private var writer: SafeTensorsWriter?
    private let onFile: ((String, UnsafeRawBufferPointer) -> Void)?
    /// Appended to every shard's file name (".zst" for packed shards); the index keeps plain names.
    public let fileSuffix: String
    /// (file name, size) of every finished shard, and its sink.
    public private(set) var writtenFiles: [(name: String, size: Int)] = []
    public private(set) var finishedSinks: [(name: String, sink: ByteSink)] = []

    /// `onBytes(fileName, bytes)` sees every byte written, per file (for checksums; with a
    /// `makeSink` factory the factory decides what it sees).
    public convenience init(directory: String, tensors: [TensorSpec], maxShardSize: Int, metadata: [String: String] = [:],
                            onBytes: ((String, UnsafeRawBufferPointer) -> Void)? = nil, fileSuffix: String = "",
                            makeSink: ((String) -> SinkFactory)? = nil) {
        self.init(directory: directory, layout: ShardLayout(tensors: tensors, maxShardSize: maxShardSize), metadata: metadata,
                  onBytes: onBytes, fileSuffix: fileSuffix, makeSink: makeSink)
    }

    public init(directory: String, layout: ShardLayout, metadata: [String: String] = [:],
                onBytes: ((String, UnsafeRawBufferPointer) -> Void)? = nil, fileSuffix: String = "",
                makeSink: ((String) -> SinkFactory)? = nil) {
        self.directory = directory
        self.layout = layout
        self.metadata = metadata
        self.onFile = onBytes
        self.fileSuffix = fileSuffix
        self.makeSink = makeSink
    }

    /// Per file name, the sink factory (nil: plain files).
    private let makeSink: ((String) -> SinkFactory)?

    public func write(_ name: String, from source: TensorSource) throws {
        if writer == nil { try openShard() }
        guard let w = writer else { return }
        try w.write(name, from: source)
        inShard += 1
        if inShard == layout.shards[shard].count { try closeShard() }
    }

    private func openShard() throws {
        guard shard < layout.shards.count else {
            throw SafeTensorsError.writeOutOfOrder(file: directory, tensor: "", reason: "more tensors than planned")
        }
        let name = layout.fileName(shard) + fileSuffix
        let hook = onFile.map { f in { (b: UnsafeRawBufferPointer) in f(name, b) } }
        writer = try SafeTensorsWriter(path: directory + "/" + name, tensors: layout.shards[shard], metadata: metadata, onBytes: hook,
                                       makeSink: makeSink?(name))
        inShard = 0
    }

    private func closeShard() throws {
        guard let w = writer else { return }
        try w.finish()
        let name = layout.fileName(shard) + fileSuffix
        writtenFiles.append((name, w.sink.bytesWritten))
        finishedSinks.append((name, w.sink))
        writer = nil
        shard += 1
    }

    /// Finishes the last shard (an empty checkpoint still gets one file) and writes the index.
    public func finish() throws {
        if writer == nil && shard < layout.shards.count && layout.shards[shard].isEmpty { try openShard() }
        try closeShard()
        guard shard == layout.shards.count else {
            throw SafeTensorsError.writeOutOfOrder(file: directory, tensor: layout.shards[shard].first?.name ?? "", reason: "finish() before all tensors were written")
        }
        if layout.singleFile == nil { try writeFileAtomically(directory + "/" + ShardedCheckpoint.indexFileName, indexJSON()) }
    }

    public func indexJSON() -> String {
        var map = JSONObject()
        var total = 0
        for (i, tensors) in layout.shards.enumerated() {
            for t in tensors {
                map[t.name] = .string(layout.fileName(i))
                total += t.byteCount
            }
        }
        let index: JSONValue = ["metadata": ["total_size": JSONValue(total)], "weight_map": .object(map)]
        return index.serialized(pretty: true) + "\n"
    }

    public func abort() { writer?.abort() }
}
