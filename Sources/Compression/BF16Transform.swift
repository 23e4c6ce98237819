import CKernels

/// Lossless rewrites of a BF16 frame before entropy coding (Formats/packed.md).
public enum FrameTransform: String, Sendable, CaseIterable {
    /// Bytes as they are.
    case none
    /// All high bytes (sign, exponent) then all low bytes: zstd then sees the skewed plane alone.
    case bf16Planes = "bf16-planes"
    /// The exponent field entropy-coded with our rANS; sign and mantissa stored raw.
    case bf16ExpRans = "bf16-exp-rans"
    /// Exponent plane then sign+mantissa plane, coded by zstd as literals only (Huffman, no
    /// match search): near the exponent's entropy, and zstd's fast Huffman decoder.
    case bf16ExpHuff = "bf16-exp-huff"

    /// Whether the transformed bytes go to zstd as literals only (no match search).
    var literalsOnly: Bool { self == .bf16ExpHuff }

    /// The transformed bytes of `src` (an even number of bytes for the BF16 transforms).
    public func apply(_ src: UnsafeRawBufferPointer) -> [UInt8] {
        let n = src.count / 2
        switch self {
        case .none:
            return [UInt8](src)
        case .bf16Planes:
            var out = [UInt8](repeating: 0, count: src.count)
            out.withUnsafeMutableBufferPointer { dsk_bf16_to_planes(src.baseAddress!.assumingMemoryBound(to: UInt16.self), n, $0.baseAddress!) }
            return out
        case .bf16ExpHuff:
            var out = [UInt8](repeating: 0, count: src.count)
            out.withUnsafeMutableBufferPointer { dsk_bf16_to_exp_planes(src.baseAddress!.assumingMemoryBound(to: UInt16.self), n, $0.baseAddress!) }
            return out
        case .bf16ExpRans:
            guard n > 0 else { return [] }
            var out = [UInt8](repeating: 0, count: dsk_bf16_exp_bound(n))
            let used = out.withUnsafeMutableBufferPointer { dsk_bf16_exp_encode(src.baseAddress!.assumingMemoryBound(to: UInt16.self), n, $0.baseAddress!) }
            out.removeLast(out.count - used)
            return out
        }
    }

    /// Inverts `apply` into `dst` (the original bytes); false when the data is corrupt.
    public func invert(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> Bool {
        let n = dst.count / 2
        switch self {
        case .none:
            guard src.count == dst.count else { return false }
            dst.copyMemory(from: src)
            return true
        case .bf16Planes:
            guard src.count == dst.count else { return false }
            dsk_planes_to_bf16(src.baseAddress!.assumingMemoryBound(to: UInt8.self), n, dst.baseAddress!.assumingMemoryBound(to: UInt16.self))
            return true
        case .bf16ExpHuff:
            guard src.count == dst.count else { return false }
            dsk_exp_planes_to_bf16(src.baseAddress!.assumingMemoryBound(to: UInt8.self), n, dst.baseAddress!.assumingMemoryBound(to: UInt16.self))
            return true
        case .bf16ExpRans:
            if n == 0 { return src.isEmpty }
            return dsk_bf16_exp_decode(src.baseAddress!.assumingMemoryBound(to: UInt8.self), src.count,
                                       dst.baseAddress!.assumingMemoryBound(to: UInt16.self), n) == 0
        }
    }
}
