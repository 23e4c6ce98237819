import CKernels
import Foundation
import JSON
import Kernels
import SafeTensors

/// One frame of a packed file as its metadata describes it: the original bytes it holds and how
/// they were transformed before zstd.
public struct PackedFrame: Sendable {
    public let originalOffset: Int
    public let originalSize: Int
    public let transform: FrameTransform
    /// Byte offset and size of the zstd frame in the packed file.
    public let offset: Int
    public let compressedSize: Int
    public let decompressedSize: Int
}

/// `NAME.safetensors.zst`: a safetensors file packed as seekable zstd (Formats/packed.md). Opening
/// it validates the seek table against the frames and reads only the header frame, so listing
/// tensors is cheap; any tensor can be read back by decompressing only its frames.
public final class PackedFile: @unchecked Sendable {
    public let path: String
    public let mapped: MappedFile
    public let frames: [PackedFrame]
    public let originalSize: Int
    public let header: SafeTensorsHeader
    private let byName: [String: Int]

    public init(path: String) throws {
        self.path = path
        mapped = try MappedFile(path: path)
        let bytes = mapped.bytes
        let map0 = mapped
        let (entries, offsets) = try SeekableFormat.parse(bytes, path: path) { map0.adviseDone($0) }
        let map = mapped
        defer { map.adviseDone(0..<map.size) }  // validation touched every frame header
        // The metadata frame is the last entry before the table.
        guard let metaIndex = entries.indices.last, SeekableFormat.read32(bytes, offsets[metaIndex]) == SeekableFormat.metadataMagic else {
            throw CompressionError.format(file: path, message: "no dsconv metadata frame before the seek table")
        }
        let metaStart = offsets[metaIndex] + 8
        let meta: JSONValue
        do { meta = try JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[metaStart..<(offsets[metaIndex] + entries[metaIndex].compressedSize)])) } catch {
            throw CompressionError.format(file: path, message: "metadata frame at byte offset \(offsets[metaIndex]) is not valid JSON: \(error)")
        }
        guard meta["format"]?.stringValue == "dsconv-packed", let size = meta["original_size"]?.integerValue,
            let list = meta["frames"]?.arrayValue
        else { throw CompressionError.format(file: path, message: "metadata frame is not dsconv-packed metadata") }
        guard list.count == metaIndex else {
            throw CompressionError.format(file: path, message: "metadata lists \(list.count) frames, the seek table \(metaIndex)")
        }
        var frames: [PackedFrame] = []
        var expected = 0
        for (i, f) in list.enumerated() {
            guard let a = f.arrayValue, a.count == 3, let o = a[0].integerValue, let s = a[1].integerValue,
                let t = a[2].stringValue.flatMap(FrameTransform.init(rawValue:)), Int(o) == expected
            else { throw CompressionError.format(file: path, message: "metadata frame entry \(i) is invalid or out of order") }
            // A frame's decoded size follows from its original size: refuse anything else before
            // allocating for it.
            let limit = t == .bf16ExpRans ? dsk_bf16_exp_bound(Int(s) / 2) : Int(s)
            guard s >= 0, entries[i].decompressedSize <= limit, t == .bf16ExpRans || entries[i].decompressedSize == Int(s) else {
                throw CompressionError.format(file: path, message: "frame at byte offset \(offsets[i]) decodes to \(entries[i].decompressedSize) bytes, inconsistent with its \(s) original bytes")
            }
            frames.append(PackedFrame(originalOffset: Int(o), originalSize: Int(s), transform: t, offset: offsets[i],
                                      compressedSize: entries[i].compressedSize, decompressedSize: entries[i].decompressedSize))
            expected += Int(s)
        }
        guard expected == Int(size) else { throw CompressionError.format(file: path, message: "frames cover \(expected) of \(size) original bytes") }
        originalSize = Int(size)
        self.frames = frames
        guard let first = frames.first else { throw CompressionError.format(file: path, message: "no frames") }
        let headerBytes = try PackedFile.decode(first, in: bytes, path: path)
        let parsed = headerBytes.withUnsafeBytes { b in Result { () throws(SafeTensorsError) in try SafeTensorsHeader.parseHeaderOnly(b, fileSize: Int(size), path: path) } }
        header = try parsed.get()
        byName = Dictionary(uniqueKeysWithValues: header.tensors.enumerated().map { ($1.name, $0) })
    }

    public var tensors: [TensorInfo] { header.tensors }
    public func info(_ name: String) -> TensorInfo? { byName[name].map { header.tensors[$0] } }

    /// The original bytes of one frame.
    public static func decode(_ f: PackedFrame, in file: UnsafeRawBufferPointer, path: String, decompressor: ZstdDecompressor? = nil) throws -> [UInt8] {
        let z = decompressor ?? ZstdDecompressor()
        var raw = [UInt8](repeating: 0, count: f.decompressedSize)
        try raw.withUnsafeMutableBytes { dst in
            try z.decompress(UnsafeRawBufferPointer(rebasing: file[f.offset..<(f.offset + f.compressedSize)]), into: dst, file: path, offset: f.offset)
        }
        if f.transform == .none { return raw }
        var out = [UInt8](repeating: 0, count: f.originalSize)
        let ok = out.withUnsafeMutableBytes { dst in raw.withUnsafeBytes { f.transform.invert($0, into: dst) } }
        guard ok else { throw CompressionError.corrupt(file: path, offset: f.offset, message: "\(f.transform.rawValue) block does not decode") }
        return out
    }

    /// Frames holding original bytes [start, end).
    func frames(covering range: Range<Int>) -> ArraySlice<PackedFrame> {
        let lo = frames.firstIndex { $0.originalOffset + $0.originalSize > range.lowerBound } ?? frames.count
        var hi = lo
        while hi < frames.count && frames[hi].originalOffset < range.upperBound { hi += 1 }
        return frames[lo..<hi]
    }

    /// A tensor's original bytes, decompressing only its frames (in parallel).
    public func tensorData(_ name: String, threads: Int = 1) throws -> [UInt8] {
        guard let t = info(name) else { throw SafeTensorsError.tensorNotFound(tensor: name) }
        let start = header.dataStart + t.dataOffsets.lowerBound
        let range = start..<(start + t.byteCount)
        var out = [UInt8](repeating: 0, count: t.byteCount)
        let covering = Array(frames(covering: range))
        let failure = Locked<Error?>(nil)
        let file = UnsafeSendable(mapped.bytes)
        out.withUnsafeMutableBytes { dst in
            let d = UnsafeSendable(dst)
            parallelFor(covering.count, threads: threads) { i in
                let f = covering[i]
                do {
                    let bytes = try PackedFile.decode(f, in: file.value, path: self.path)
                    // Copy the intersection of the frame with the tensor.
                    let lo = max(f.originalOffset, range.lowerBound), hi = min(f.originalOffset + f.originalSize, range.upperBound)
                    bytes.withUnsafeBytes { b in
                        UnsafeMutableRawBufferPointer(rebasing: d.value[(lo - range.lowerBound)..<(hi - range.lowerBound)])
                            .copyMemory(from: UnsafeRawBufferPointer(rebasing: b[(lo - f.originalOffset)..<(hi - f.originalOffset)]))
                    }
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                }
            }
        }
        if let e = failure.withLock({ $0 }) { throw e }
        return out
    }
}
