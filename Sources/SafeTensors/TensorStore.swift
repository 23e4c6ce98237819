import Primitives

/// A stored tensor: the file that holds it (a plain name in the store's directory) and its header entry.
public struct StoredTensor: Sendable {
    public let file: String
    public let info: TensorInfo

    public init(file: String, info: TensorInfo) {
        self.file = file
        self.info = info
    }
}

/// A tensor's bytes and the object that keeps them alive.
public struct TensorBytes: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public let owner: AnyObject
    /// A view of a mapped file (costs no heap: pages come and go with the page cache), as opposed
    /// to bytes decoded into memory that `owner` holds.
    public let isMapped: Bool

    public init(bytes: UnsafeRawBufferPointer, owner: AnyObject, isMapped: Bool) {
        self.bytes = bytes
        self.owner = owner
        self.isMapped = isMapped
    }
}

/// Tensors by name, whatever holds them: safetensors shards (`ShardedCheckpoint`), a packed
/// directory (`Compression.PackedStore`), one rank of a reshard output. Knows nothing of the
/// model: the schema that says which tensors must be there lives above it.
public protocol TensorStore: AnyObject, Sendable {
    /// The directory the store reads.
    var directory: String { get }
    /// Every tensor, in file order then data order.
    var listing: [StoredTensor] { get }
    /// What a missing tensor is reported against (the index, or the directory).
    var listingName: String { get }
    func info(_ name: String) -> TensorInfo?
    /// Whether `bytes` are views of mapped files (free to ask for again) rather than decoded copies.
    var servesMappedBytes: Bool { get }
    /// Path of the file that holds a tensor, for messages.
    func path(of name: String) -> String?
    /// A tensor's bytes, as stored (packed stores decode them; nothing is cached here).
    func bytes(_ name: String) throws -> TensorBytes
    /// Every byte read back: NaN/Inf in floating tensors, and whatever the store can check of its
    /// own files (a packed store decodes every frame and checks each file's sha256).
    func scan(threads: Int, progress: (@Sendable (_ bytesDone: Int, _ bytesTotal: Int) -> Void)?) -> IntegrityReport
}

extension DType {
    /// How the NaN/Inf scan reads this dtype (nil: not a floating type).
    public var scanFormat: NonFiniteScan.Format? {
        switch self {
        case .bf16: return .bf16
        case .f16: return .f16
        case .f32: return .f32
        case .f64: return .f64
        case .f8e4m3: return .f8e4m3
        case .f8e5m2: return .f8e5m2
        default: return nil
        }
    }
}

/// Bytes owned by an object, so a weight view can keep them alive.
public final class OwnedBytes: @unchecked Sendable {
    private let storage: UnsafeMutableRawBufferPointer
    public let count: Int

    public init(_ bytes: [UInt8]) {
        let s = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { s.copyMemory(from: $0) }
        storage = s
        count = bytes.count
    }

    /// Uninitialized storage of `byteCount` bytes, to be filled through `mutableBytes`.
    public init(byteCount: Int) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        count = byteCount
    }

    /// An aligned copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(byteCount: bytes.count)
        mutableBytes.copyMemory(from: bytes)
    }

    deinit { storage.deallocate() }

    public var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]) }
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }
}

extension ShardedCheckpoint: TensorStore {
    public var listing: [StoredTensor] { tensors.map { StoredTensor(file: basename($0.file.path), info: $0.info) } }

    public var listingName: String { indexPath.map(basename) ?? "checkpoint" }

    public var servesMappedBytes: Bool { true }

    public func info(_ name: String) -> TensorInfo? { self[name]?.info }

    public func path(of name: String) -> String? { self[name]?.file.path }

    public func bytes(_ name: String) throws -> TensorBytes {
        let loc = try require(name)
        return TensorBytes(bytes: loc.data, owner: loc.file, isMapped: true)
    }

    /// Bytes per scan work item. Big enough to amortize, small enough to balance threads.
    static let scanChunkBytes = 8 << 20

    /// Every floating tensor scanned for NaN/Inf in parallel chunks, pages released as they are read.
    public func scan(threads: Int, progress: (@Sendable (Int, Int) -> Void)?) -> IntegrityReport {
        struct Chunk { let tensor: Int; let range: Range<Int> }
        var chunks: [Chunk] = []
        var total = 0
        for (i, loc) in tensors.enumerated() where loc.info.dtype.isFloatingPoint {
            let n = loc.info.byteCount
            let elem = loc.info.dtype.size
            let step = Self.scanChunkBytes / elem * elem
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
        let locations = UnsafeSendable(tensors)
        let work = UnsafeSendable(chunks)
        parallelFor(chunks.count, threads: threads) { c in
            let chunk = work.value[c]
            let loc = locations.value[chunk.tensor]
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
        var report = IntegrityReport()
        report.problems = hits.withLock { h in
            h.keys.sorted().compactMap { i -> Problem? in
                guard let e = h[i] else { return nil }
                let loc = tensors[i]
                return Problem(kind: .nonFinite, file: basename(loc.file.path), tensor: loc.info.name,
                               message: "\(e.count) NaN/Inf value\(e.count == 1 ? "" : "s"), first at flat index \(e.first) (expected finite \(loc.info.dtype.rawValue))")
            }
        }
        report.bytesScanned = total
        report.tensorsChecked = tensors.count
        return report
    }
}
