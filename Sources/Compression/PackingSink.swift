import Foundation
import Kernels
import SafeTensors

/// Packs a safetensors file while it is being written: the byte stream (header, then tensors in
/// order) is cut at the same frame boundaries `dsconv pack` uses, each frame compressed as soon as
/// it is complete. The result is byte-identical in layout to packing the finished file, without
/// ever writing the plain file. Compression runs on the writer's thread (parallelism comes from
/// several writers, e.g. one per rank).
public final class PackingSink: ByteSink {
    public let path: String
    private let file: FileSink
    private let jobs: [Packer.Job]
    private let options: PackOptions
    private let z: ZstdCompressor
    private let wrap = ZstdCompressor(level: -7)
    private var next = 0
    private var buffer: [UInt8] = []
    private var entries: [SeekableFormat.Entry] = []
    private var originalHash = SHA256()
    private var packedHash = SHA256()
    private var originalSize = 0

    /// `onPackedBytes` sees the packed bytes as they reach the file.
    public init(path: String, headerBytes: Int, tensors: [TensorSpec], options: PackOptions,
                onPackedBytes: ((UnsafeRawBufferPointer) -> Void)? = nil) throws {
        self.path = path
        self.options = options
        jobs = Packer.plan(headerBytes: headerBytes, tensors: tensors.map { ($0.dtype, $0.byteCount) }, options: options)
        z = ZstdCompressor(level: options.level)
        var box: PackingSink? = nil
        file = try FileSink(path: path, direct: true) { bytes in
            box?.packedHash.update(bytes)
            onPackedBytes?(bytes)
        }
        box = self
        buffer.reserveCapacity(options.frameSize)
    }

    public var bytesWritten: Int { file.bytesWritten }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        originalHash.update(bytes)
        originalSize += bytes.count
        var input = bytes
        while !input.isEmpty {
            guard next < jobs.count else {
                throw CompressionError.format(file: path, message: "more bytes than the header and tensors declare")
            }
            let size = jobs[next].size
            if buffer.isEmpty && input.count >= size {
                try emit(UnsafeRawBufferPointer(rebasing: input[0..<size]))
                input = UnsafeRawBufferPointer(rebasing: input[size...])
                continue
            }
            let take = min(size - buffer.count, input.count)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[0..<take]))
            input = UnsafeRawBufferPointer(rebasing: input[take...])
            if buffer.count == size {
                try buffer.withUnsafeBytes { try emit($0) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
    }

    private func emit(_ frame: UnsafeRawBufferPointer) throws {
        let (bytes, decompressed) = try Packer.compressFrame(frame, jobs[next].transform, z: z, wrap: wrap)
        try file.write(bytes)
        entries.append(.init(compressedSize: bytes.count, decompressedSize: decompressed))
        next += 1
    }

    public func close() throws {
        guard next == jobs.count, buffer.isEmpty else {
            throw CompressionError.format(file: path, message: "closed after \(originalSize) bytes, before the last frame was complete")
        }
        try file.write(Packer.trailer(jobs: jobs, entries: entries, originalSize: originalSize, options: options))
        try file.close()
    }

    public func discard() { file.discard() }

    /// Sizes and checksums, once closed.
    public var summary: PackedFileSummary {
        var o = originalHash, p = packedHash
        return PackedFileSummary(originalSize: originalSize, originalSHA256: o.finalizeHex(), packedSize: file.bytesWritten,
                                 packedSHA256: p.finalizeHex(), frames: jobs.count)
    }
}

extension ShardedWriter {
    /// A sharded writer whose shards are packed as they are written (`NAME.safetensors.zst`, no
    /// plain file in between); `onPackedBytes(fileName, bytes)` sees each file's packed bytes.
    public static func packing(directory: String, layout: ShardLayout, options: PackOptions, metadata: [String: String] = [:],
                               onPackedBytes: ((String, UnsafeRawBufferPointer) -> Void)? = nil) -> ShardedWriter {
        ShardedWriter(directory: directory, layout: layout, metadata: metadata, fileSuffix: ".zst") { name in
            { temp, header, specs in
                try PackingSink(path: temp, headerBytes: header, tensors: specs, options: options) { onPackedBytes?(name, $0) }
            }
        }
    }

    /// The pack manifest of a directory this writer packed into: its shards as packed files,
    /// every other file (config, index, tokenizer files) as copied; written last.
    public func writePackManifest(options: PackOptions) throws -> PackManifest {
        var files: [PackManifest.Packed] = []
        for (name, sink) in finishedSinks {
            guard let packed = sink as? PackingSink else { continue }
            let s = packed.summary
            files.append(.init(name: String(name.dropLast(".zst".count)), size: s.originalSize, sha256: s.originalSHA256, packed: name,
                               packedSize: s.packedSize, packedSHA256: s.packedSHA256))
        }
        let copied = try FileRecord.hashAll(in: directory, except: Set(files.map(\.packed)).union([PackManifest.fileName]))
        let manifest = PackManifest(level: Int(options.level), transform: options.bf16Transform, files: files, copied: copied)
        try writeFileAtomically(directory + "/" + PackManifest.fileName, manifest.json.serialized(pretty: true) + "\n")
        return manifest
    }
}
