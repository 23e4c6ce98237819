import Foundation
import JSON
import Kernels
import SafeTensors

/// Packing options: zstd level, frame size, the BF16 transform, threads.
public struct PackOptions: Sendable {
    public var level: Int32 = 1
    /// Original bytes per frame (even, so BF16 values never straddle frames).
    public var frameSize = 2 << 20
    public var bf16Transform: FrameTransform = .bf16ExpHuff
    public var threads = 1
    public init() {}
}

/// What packing one file produced.
public struct PackedFileSummary: Sendable {
    public let originalSize: Int
    public let originalSHA256: String
    public let packedSize: Int
    public let packedSHA256: String
    public let frames: Int
}

/// Packs a safetensors file into the seekable container. Frames are compressed in parallel
/// batches (each worker its own zstd context) and written in order; the original is read through
/// its map once, with its sha256 computed on the way.
public enum Packer {
    struct Job { let originalOffset: Int; let size: Int; let transform: FrameTransform }

    /// Frames of a safetensors file: the header alone, then each tensor (in data order) cut into
    /// `frameSize` pieces, BF16 ones transformed.
    static func plan(headerBytes: Int, tensors: [(dtype: DType, bytes: Int)], options: PackOptions) -> [Job] {
        var jobs = [Job(originalOffset: 0, size: headerBytes, transform: .none)]
        var o = headerBytes
        for t in tensors {
            let end = o + t.bytes
            let transform = t.dtype == .bf16 ? options.bf16Transform : .none
            while o < end {
                let n = min(options.frameSize, end - o)
                jobs.append(Job(originalOffset: o, size: n, transform: transform))
                o += n
            }
        }
        return jobs
    }

    static func plan(_ file: SafeTensorsFile, options: PackOptions) -> [Job] {
        plan(headerBytes: file.header.dataStart, tensors: file.tensors.map { ($0.dtype, $0.byteCount) }, options: options)
    }

    /// The metadata frame and the seek table that end every packed file.
    static func trailer(jobs: [Job], entries: [SeekableFormat.Entry], originalSize: Int, options: PackOptions) -> [UInt8] {
        let meta: JSONValue = ["format": "dsconv-packed", "version": 1, "original_size": JSONValue(originalSize),
                               "frame_size": JSONValue(options.frameSize),
                               "frames": .array(jobs.map { [JSONValue($0.originalOffset), JSONValue($0.size), .string($0.transform.rawValue)] })]
        let metaFrame = SeekableFormat.skippableFrame(magic: SeekableFormat.metadataMagic, Array(meta.serialized().utf8))
        return metaFrame + SeekableFormat.seekTable(entries + [.init(compressedSize: metaFrame.count, decompressedSize: 0)])
    }

    /// One frame: transform, then zstd (an entropy-coded payload is only wrapped, at zstd's fastest level).
    public static func compressFrame(_ src: UnsafeRawBufferPointer, _ transform: FrameTransform, z: ZstdCompressor, wrap: ZstdCompressor) throws -> ([UInt8], Int) {
        let payload = transform.apply(src)
        var out = [UInt8](repeating: 0, count: ZstdCompressor.bound(payload.count))
        let coder = transform == .bf16ExpRans ? wrap : z
        let n = try out.withUnsafeMutableBytes { dst in
            try payload.withUnsafeBytes {
                // The exponent plane and the sign+mantissa plane never share a block (nor a Huffman table).
                transform.literalsOnly ? try coder.compressLiterals($0, regions: [payload.count / 2, payload.count - payload.count / 2], into: dst)
                    : try coder.compress($0, into: dst)
            }
        }
        return (Array(out[0..<n]), payload.count)  // right-sized: frames may be held in batches
    }

    public static func pack(_ source: String, to destination: String, options: PackOptions) throws -> PackedFileSummary {
        keepFreedMemoryForReuse()
        let file = try SafeTensorsFile(path: source)
        let jobs = plan(file, options: options)
        let bytes = UnsafeSendable(file.mapped.bytes)
        var packedHash = SHA256()
        let sink = try FileSink(path: destination + ".tmp", direct: true) { packedHash.update($0) }
        var originalHash = SHA256()
        var entries: [SeekableFormat.Entry] = []
        do {
            let batch = max(1, options.threads) * 4
            var next = 0
            while next < jobs.count {
                let slice = Array(jobs[next..<min(jobs.count, next + batch)])
                let results = Locked([Int: Result<([UInt8], Int), Error>]())
                let counter = AtomicCounter()
                parallelFor(max(1, options.threads), threads: options.threads) { _ in
                    let z = ZstdCompressor(level: options.level)
                    // An entropy-coded payload does not compress further: zstd's fastest mode wraps
                    // it (raw blocks) without spending time looking for matches.
                    let wrap = ZstdCompressor(level: -7)
                    while true {
                        let i = counter.increment()
                        if i >= slice.count { break }
                        let job = slice[i]
                        let src = UnsafeRawBufferPointer(rebasing: bytes.value[job.originalOffset..<(job.originalOffset + job.size)])
                        let r = Result { try Packer.compressFrame(src, job.transform, z: z, wrap: wrap) }
                        results.withLock { $0[i] = r }
                    }
                }
                for (i, job) in slice.enumerated() {
                    let (frame, decompressed) = try results.withLock { $0[i]! }.get()
                    try sink.write(frame)
                    entries.append(.init(compressedSize: frame.count, decompressedSize: decompressed))
                    originalHash.update(UnsafeRawBufferPointer(rebasing: bytes.value[job.originalOffset..<(job.originalOffset + job.size)]))
                    file.mapped.adviseDone(job.originalOffset..<(job.originalOffset + job.size))
                }
                next += slice.count
            }
            // Metadata (a skippable frame), then the seek table.
            try sink.write(trailer(jobs: jobs, entries: entries, originalSize: file.fileSize, options: options))
            try sink.close()
        } catch {
            sink.discard()
            throw error
        }
        guard rename(destination + ".tmp", destination) == 0 else {
            throw SafeTensorsError.io(file: destination, operation: "rename", errno: errno)
        }
        return PackedFileSummary(originalSize: file.fileSize, originalSHA256: originalHash.finalizeHex(), packedSize: sink.bytesWritten,
                                 packedSHA256: packedHash.finalizeHex(), frames: jobs.count)
    }

    /// Restores the original file from a packed one, frames decoded in parallel batches and written
    /// in order; returns its sha256. The output appears only when complete (temp file, rename).
    public static func unpack(_ packed: PackedFile, to destination: String, threads: Int) throws -> String {
        keepFreedMemoryForReuse()
        var hash = SHA256()
        let sink = try FileSink(path: destination + ".tmp", direct: true) { hash.update($0) }
        let file = UnsafeSendable(packed.mapped.bytes)
        do {
            let frames = packed.frames
            let batch = max(1, threads) * 4
            var next = 0
            while next < frames.count {
                let slice = Array(frames[next..<min(frames.count, next + batch)])
                let results = Locked([Int: Result<[UInt8], Error>]())
                let counter = AtomicCounter()
                parallelFor(max(1, threads), threads: threads) { _ in
                    let z = ZstdDecompressor()
                    while true {
                        let i = counter.increment()
                        if i >= slice.count { break }
                        let r = Result { try PackedFile.decode(slice[i], in: file.value, path: packed.path, decompressor: z) }
                        results.withLock { $0[i] = r }
                    }
                }
                for i in 0..<slice.count { try sink.write(try results.withLock { $0[i]! }.get()) }
                if let last = slice.last, let first = slice.first {
                    packed.mapped.adviseDone(first.offset..<(last.offset + last.compressedSize))
                }
                next += slice.count
            }
            try sink.close()
        } catch {
            sink.discard()
            throw error
        }
        guard rename(destination + ".tmp", destination) == 0 else {
            throw SafeTensorsError.io(file: destination, operation: "rename", errno: errno)
        }
        return hash.finalizeHex()
    }
}

#if canImport(Glibc)
import Glibc
#endif
