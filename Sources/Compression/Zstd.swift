import CZstd
import Failures

/// Why compressed data could not be read or written: the file and the byte offset of the frame.
public enum CompressionError: Error, Sendable, CustomStringConvertible {
    case zstd(file: String, offset: Int, message: String)
    case corrupt(file: String, offset: Int, message: String)
    case format(file: String, message: String)

    public var description: String {
        switch self {
        case .zstd(let f, let o, let m): return "\(f): frame at byte offset \(o): \(m)"
        case .corrupt(let f, let o, let m): return "\(f): corrupted data at byte offset \(o): \(m)"
        case .format(let f, let m): return "\(f): \(m)"
        }
    }
}

/// One-shot zstd frames with reusable contexts (one per thread). Frames carry their content size
/// and an XXH64 checksum, so corruption is detected on decompression.
public final class ZstdCompressor {
    private let cctx: OpaquePointer
    public let level: Int32

    public init(level: Int32) {
        cctx = ZSTD_createCCtx()
        self.level = level
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)
    }

    deinit { ZSTD_freeCCtx(cctx) }

    public static func bound(_ n: Int) -> Int { ZSTD_compressBound(n) }

    /// Compresses `src` as literals only — no match search, each block Huffman-coded on its own —
    /// into a standard frame (zstd's sequence API with only block delimiters). `regions` are byte
    /// counts that must not share a block (e.g. two planes with different statistics).
    public func compressLiterals(_ src: UnsafeRawBufferPointer, regions: [Int], into dst: UnsafeMutableRawBufferPointer) throws(CompressionError) -> Int {
        let blockMax = 128 << 10
        var delimiters: [ZSTD_Sequence] = []
        for var size in regions {
            while size > 0 {
                let n = min(size, blockMax)
                delimiters.append(ZSTD_Sequence(offset: 0, litLength: UInt32(n), matchLength: 0, rep: 0))
                size -= n
            }
        }
        if delimiters.isEmpty { delimiters.append(ZSTD_Sequence(offset: 0, litLength: 0, matchLength: 0, rep: 0)) }
        ZSTD_CCtx_setParameter(cctx, dsconv_zstd_c_block_delimiters(), Int32(ZSTD_sf_explicitBlockDelimiters.rawValue))
        defer { ZSTD_CCtx_setParameter(cctx, dsconv_zstd_c_block_delimiters(), Int32(ZSTD_sf_noBlockDelimiters.rawValue)) }
        let r = delimiters.withUnsafeBufferPointer { seqs in
            ZSTD_compressSequences(cctx, dst.baseAddress, dst.count, seqs.baseAddress, seqs.count, src.baseAddress, src.count)
        }
        if ZSTD_isError(r) != 0 { throw .zstd(file: "", offset: 0, message: String(cString: ZSTD_getErrorName(r))) }
        return r
    }

    /// Compresses `src` into `dst` (capacity ≥ bound); returns the frame size.
    public func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(CompressionError) -> Int {
        let r = ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(r) != 0 { throw .zstd(file: "", offset: 0, message: String(cString: ZSTD_getErrorName(r))) }
        return r
    }
}

public final class ZstdDecompressor {
    private let dctx: OpaquePointer

    public init() { dctx = ZSTD_createDCtx() }
    deinit { ZSTD_freeDCtx(dctx) }

    /// Decompresses one whole frame into exactly `dst.count` bytes.
    public func decompress(_ frame: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, file: String, offset: Int) throws(CompressionError) {
        // The slice must be exactly one frame: the seek table's size for it.
        guard ZstdDecompressor.frameSize(frame) == frame.count else {
            throw .corrupt(file: file, offset: offset, message: "the seek table disagrees with the frame's size (\(frame.count) bytes)")
        }
        let r = ZSTD_decompressDCtx(dctx, dst.baseAddress, dst.count, frame.baseAddress, frame.count)
        if ZSTD_isError(r) != 0 {
            throw .corrupt(file: file, offset: offset, message: "zstd: \(String(cString: ZSTD_getErrorName(r)))")
        }
        guard r == dst.count else {
            throw .corrupt(file: file, offset: offset, message: "frame holds \(r) bytes, the seek table says \(dst.count)")
        }
    }

    /// The compressed size of the frame starting at `frame`, or nil when it is not a valid frame.
    public static func frameSize(_ frame: UnsafeRawBufferPointer) -> Int? {
        let r = ZSTD_findFrameCompressedSize(frame.baseAddress, frame.count)
        return ZSTD_isError(r) != 0 ? nil : r
    }

    /// The declared content size of a frame, if any.
    public static func contentSize(_ frame: UnsafeRawBufferPointer) -> Int? {
        let r = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        if r == ZSTD_CONTENTSIZE_ERROR || r == ZSTD_CONTENTSIZE_UNKNOWN { return nil }
        return Int(r)
    }
}

extension CompressionError: DeclaresFailureKind {
    /// A packed frame or container that does not decode is damaged data.
    public var failureKind: FailureKind { .damaged }
}
