import Compression
import DeepSeek
import Foundation
import JSON
import Kernels
import SafeTensors

/// Streams a checkpoint into `tp` rank directories following a `ShardPlan`: tensor by tensor,
/// each source tensor scanned for NaN/Inf once and then cut into every rank's slice, written
/// through per-rank streaming writers that checksum as they go. Memory: one write buffer per rank
/// plus a gather buffer; never a tensor per rank, never a state dict.
public struct Resharder {
    public let source: Checkpoint
    public let plan: ShardPlan
    public let maxShardSize: Int
    public let threads: Int
    /// When set, every rank shard is packed as it is written (`NAME.safetensors.zst`, no plain
    /// file in between) and each rank directory gets a pack manifest.
    public let compress: PackOptions?
    /// Where rank files go and what tensors are called in them.
    public let layout: any ReshardLayout

    public init(source: Checkpoint, plan: ShardPlan, maxShardSize: Int, threads: Int, compress: PackOptions? = nil,
                layout: any ReshardLayout = HuggingFaceRankLayout()) {
        self.source = source
        self.plan = plan
        self.layout = layout
        self.maxShardSize = maxShardSize
        self.threads = threads
        self.compress = compress
    }

    /// Refuses a source with schema or tokenizer problems (the NaN scan runs during the copy).
    public static func preflight(_ source: Checkpoint) throws {
        let problems = IntegrityCheck.schemaProblems(source) + IntegrityCheck.tokenizerProblems(directory: source.directory)
        if !problems.isEmpty {
            let shown = problems.prefix(3).map(\.description).joined(separator: "; ")
            throw ModelError.badInput("\(source.directory) fails its integrity checks (\(problems.count) problem(s)): \(shown)")
        }
    }

    /// Per-rank output state: the writer and the running checksum of each file.
    final class RankOutput: @unchecked Sendable {
        let writer: ShardedWriter
        var hashes: [String: SHA256] = [:]
        init(directory: String, files: ShardLayout, compress: PackOptions?) {
            weak var box: RankOutput? = nil
            let hash = { (file: String, bytes: UnsafeRawBufferPointer) -> Void in box?.hashes[file, default: SHA256()].update(bytes) }
            if let options = compress {
                writer = ShardedWriter.packing(directory: directory, layout: files, options: options, onPackedBytes: hash)
            } else {
                writer = ShardedWriter(directory: directory, layout: files, onBytes: hash)
            }
            box = self
        }
    }

    /// Writes everything into `out` (which the caller commits). `progress(index, total, name)`.
    public func write(into out: OutputDirectory, progress: ((Int, Int, String) -> Void)? = nil) throws -> ReshardManifest {
        let tp = plan.tp
        // Rank directories: config (with its tensor_parallel entry) and side files.
        let configText = try readWholeFile(source.directory + "/config.json")
        guard case .object(let configJSON) = (try? JSONParser.parse(configText)) ?? .null else {
            throw ModelError.badInput("\(source.directory)/config.json is not a JSON object")
        }
        if let why = layout.refusal(plan: plan, compressed: compress != nil) { throw ModelError.badInput(why) }
        let generated = try layout.generatedFiles(config: source.config)
        var outputs: [RankOutput] = []
        var directories = Set<String>()
        for r in 0..<tp {
            let dir = layout.rankDirectory(r, tp: tp)
            // Side files once per directory (ranks of the deepseek layout share the output's).
            if directories.insert(dir).inserted {
                if dir != "." { try out.makeSubdirectory(dir) }
                if let config = layout.rankConfig(configJSON, rank: r, plan: plan) {
                    try writeFileAtomically(out.path(dir + "/config.json"), JSONValue.object(config).serialized(pretty: true) + "\n")
                }
                // The side files (as DeepSeek's convert.py, every file named "token…" among them),
                // once per directory, so that merge restores them.
                for f in Checkpoint.sideFiles(in: source.directory) {
                    try copyFile(from: source.directory + "/" + f, to: out.path(dir + "/" + f))
                }
                for g in generated { try writeFileAtomically(out.path(dir + "/" + g.name), g.text) }
            }
            let specs = try plan.ranks[r].map { s in TensorSpec(name: outputName(s), dtype: try dtype(of: s.name), shape: s.shape) }
            let files = layout.shardLayout(rank: r, tp: tp, tensors: specs, maxShardSize: maxShardSize)
            outputs.append(RankOutput(directory: out.path(dir), files: files, compress: compress))
        }
        // Which ranks hold a slice of each tensor.
        var slicesOf: [String: [(rank: Int, slice: PlannedSlice)]] = [:]
        for r in 0..<tp { for s in plan.ranks[r] { slicesOf[s.name, default: []].append((r, s)) } }
        let order = source.schema.tensors.map(\.name)
        do {
            for (i, name) in order.enumerated() {
                let loc = try source.weights.require(name)
                try IntegrityCheck.requireFinite(loc, name: name, releasingPages: true)
                let work = UnsafeSendable(((slicesOf[name] ?? []).map { ($0.rank, $0.slice, outputName($0.slice)) }, outputs, loc))
                let failure = Locked<Error?>(nil)
                parallelFor(work.value.0.count, threads: threads) { k in
                    let (rank, slice, outName) = work.value.0[k]
                    do {
                        try Self.writeSlice(slice, as: outName, of: work.value.2, to: work.value.1[rank].writer)
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                    }
                }
                if let e = failure.withLock({ $0 }) { throw e }
                loc.file.mapped.adviseDone(loc.file.fileRange(loc.info))
                progress?(i + 1, order.count, name)
            }
            for o in outputs { try o.writer.finish() }
        } catch {
            for o in outputs { o.writer.abort() }
            throw error
        }
        if let options = compress {
            // Each packed rank directory gets its pack manifest, so that `dsconv unpack` restores it and readers find its tensors.
            for o in outputs { _ = try o.writer.writePackManifest(options: options) }
        }
        // Checksums: shards from the running hashes, side files read back (small).
        var ranks: [ReshardManifest.Rank] = []
        let allShards = Set(outputs.flatMap { $0.writer.writtenFiles.map(\.name) })
        var hashedDirectories = Set<String>()
        for r in 0..<tp {
            let dir = layout.rankDirectory(r, tp: tp)
            var files: [FileRecord] = []
            for (name, size) in outputs[r].writer.writtenFiles {
                var h = outputs[r].hashes[name] ?? SHA256()
                files.append(.init(name: name, size: size, sha256: h.finalizeHex()))
            }
            // Side files are recorded with the first rank of their directory.
            if hashedDirectories.insert(dir).inserted {
                files += try FileRecord.hashAll(in: out.path(dir), except: allShards.union([OutputDirectory.markerName, ReshardManifest.fileName]))
            }
            ranks.append(.init(rank: r, directory: dir, localExperts: plan.localExperts[r], files: files))
        }
        var tensors: [ReshardManifest.Tensor] = []
        for name in order {
            let loc = try source.weights.require(name)
            let slices = (slicesOf[name] ?? []).map { ReshardManifest.Slice(rank: $0.rank, dim: $0.slice.dim, offset: $0.slice.offset, length: $0.slice.length) }
            let stored = source.schema[name].map { layout.naming.name($0.role, $0.component) } ?? name
            // Tensors the ranks hold values of their own for keep the source's value in the manifest.
            var value: [Int64]? = nil
            if slicesOf[name]?.contains(where: { $0.slice.contents != nil }) == true, loc.info.dtype == .i64 {
                value = (0..<loc.info.elementCount).map { loc.data.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) }
            }
            tensors.append(.init(name: name, storedAs: stored, dtype: loc.info.dtype, shape: loc.info.shape, slices: slices, value: value))
        }
        let manifest = ReshardManifest(tp: tp, experts: plan.experts, groupSize: plan.groupSize, layout: layout.name, source: source.directory,
                                       tensors: tensors, ranks: ranks)
        try out.writeManifest(ReshardManifest.fileName, manifest.json)
        return manifest
    }

    func dtype(of name: String) throws -> DType { try source.weights.require(name).info.dtype }

    /// A slice's tensor name in the rank files.
    func outputName(_ s: PlannedSlice) -> String { layout.naming.name(s.role, s.component) }

    /// Bytes read per step of a large tensor; pages are dropped from the process after each step,
    /// so the mapped (resident) part of the source stays at about this size per thread.
    static let window = 64 << 20

    /// Writes a contiguous byte range of the source window by window, dropping each window's pages.
    static func writeRange(_ range: Range<Int>, of loc: TensorLocation, name: String, to writer: ShardedWriter) throws {
        let data = loc.data
        let base = loc.file.fileRange(loc.info).lowerBound
        try writer.write(name, from: .producer { w in
            var offset = range.lowerBound
            while offset < range.upperBound {
                let end = min(range.upperBound, offset + window)
                try w.write(UnsafeRawBufferPointer(rebasing: data[offset..<end]))
                loc.file.mapped.adviseDone((base + offset)..<(base + end))
                offset = end
            }
        })
    }

    /// Bytes of a slice, streamed: whole tensors and row blocks are one range of the map; column
    /// blocks are gathered row by row through a bounded buffer.
    static func writeSlice(_ s: PlannedSlice, as name: String, of loc: TensorLocation, to writer: ShardedWriter) throws {
        let data = loc.data
        let es = loc.info.dtype.size
        if let values = s.contents {
            // A value of the rank's own (a quantized weight's weight_shape), little-endian int64.
            guard loc.info.dtype == .i64, values.count == loc.info.elementCount else {
                throw ModelError.badTensor(file: loc.file.path, tensor: loc.info.name, message: "\(loc.info.dtype.rawValue) \(loc.info.shape), expected I64 [\(values.count)]")
            }
            try values.withUnsafeBytes { b in try writer.write(name, from: .bytes(b)) }
            return
        }
        switch s.dim {
        case nil:
            try writeRange(0..<data.count, of: loc, name: name, to: writer)
        case 0?:
            let rowBytes = s.sourceShape.dropFirst().reduce(es, *)
            try writeRange((s.offset * rowBytes)..<((s.offset + s.length) * rowBytes), of: loc, name: name, to: writer)
        default:
            let rows = s.sourceShape[0], cols = s.sourceShape[1]
            let chunk = s.length * es
            try writer.write(name, from: .producer { w in
                let capacity = max(chunk, (4 << 20) / chunk * chunk)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
                defer { buffer.deallocate() }
                var used = 0
                for r in 0..<rows {
                    let src = data.baseAddress! + (r * cols + s.offset) * es
                    (buffer.baseAddress! + used).copyMemory(from: src, byteCount: chunk)
                    used += chunk
                    if used + chunk > capacity {
                        try w.write(UnsafeRawBufferPointer(rebasing: buffer[0..<used]))
                        used = 0
                    }
                }
                if used > 0 { try w.write(UnsafeRawBufferPointer(rebasing: buffer[0..<used])) }
            })
        }
    }
}
