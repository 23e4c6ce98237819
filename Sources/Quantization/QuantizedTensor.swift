import CKernels

/// One Linear weight [rows, cols] quantized: the integers packed into int32 words along columns,
/// BF16 scales [rows, groups], and (asymmetric) int8 zero points [rows, groups].
/// The byte layout is compressed-tensors' `pack-quantized` (Formats/quantized.md).
public struct QuantizedTensor: Sendable {
    public let rows: Int
    public let cols: Int
    public let scheme: QuantScheme
    /// [rows, packedWords] little-endian int32 words.
    public var packed: [Int32]
    /// [rows, groups] bf16 bits.
    public var scale: [UInt16]
    /// [rows, groups]; nil for symmetric schemes.
    public var zeroPoint: [Int8]?

    public init(rows: Int, cols: Int, scheme: QuantScheme, packed: [Int32], scale: [UInt16], zeroPoint: [Int8]?) {
        self.rows = rows
        self.cols = cols
        self.scheme = scheme
        self.packed = packed
        self.scale = scale
        self.zeroPoint = zeroPoint
    }

    public var groups: Int { scheme.groups(cols: cols) }

    /// Integers [rows, cols] → packed tensor.
    public init(integers q: [Int8], rows: Int, cols: Int, scheme: QuantScheme, scale: [UInt16], zeroPoint: [Int8]?) {
        var words = [Int32](repeating: 0, count: rows * scheme.packedWords(cols: cols))
        q.withUnsafeBufferPointer { qb in
            words.withUnsafeMutableBufferPointer { dsk_pack_int32_rows(qb.baseAddress!, rows, cols, Int32(scheme.bits), $0.baseAddress!) }
        }
        self.init(rows: rows, cols: cols, scheme: scheme, packed: words, scale: scale, zeroPoint: zeroPoint)
    }

    /// The integers [rows, cols].
    public func integers() -> [Int8] {
        var q = [Int8](repeating: 0, count: rows * cols)
        packed.withUnsafeBufferPointer { p in
            q.withUnsafeMutableBufferPointer { dsk_unpack_int32_rows(p.baseAddress!, rows, cols, Int32(scheme.bits), $0.baseAddress!) }
        }
        return q
    }

    /// bf16(bf16(q − zp) · scale), [rows, cols] as bf16 bits: compressed-tensors' decompression.
    public func dequantized() -> [UInt16] {
        var out = [UInt16](repeating: 0, count: rows * cols)
        out.withUnsafeMutableBufferPointer { o in dequantize(into: o.baseAddress!) }
        return out
    }

    public func dequantize(into out: UnsafeMutablePointer<UInt16>) {
        packed.withUnsafeBufferPointer { p in
            scale.withUnsafeBufferPointer { s in
                let run = { (z: UnsafePointer<Int8>?) in
                    dsk_dequant_packed(p.baseAddress!, rows, cols, Int32(scheme.bits), scheme.groupWidth(cols: cols), s.baseAddress!, z, out)
                }
                if let zeroPoint { zeroPoint.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
            }
        }
    }

    /// Zero points packed along dim 0 (output rows), as compressed-tensors stores them:
    /// [ceil(rows·bits/32), groups].
    public func packedZeroPoint() -> [Int32]? {
        guard let zeroPoint else { return nil }
        let g = groups
        var transposed = [Int8](repeating: 0, count: rows * g)
        for r in 0..<rows { for j in 0..<g { transposed[j * rows + r] = zeroPoint[r * g + j] } }
        let words = scheme.packedWords(cols: rows)
        var byGroup = [Int32](repeating: 0, count: g * words)
        transposed.withUnsafeBufferPointer { t in
            byGroup.withUnsafeMutableBufferPointer { dsk_pack_int32_rows(t.baseAddress!, g, rows, Int32(scheme.bits), $0.baseAddress!) }
        }
        var out = [Int32](repeating: 0, count: words * g)
        for j in 0..<g { for w in 0..<words { out[w * g + j] = byGroup[j * words + w] } }
        return out
    }

    /// The inverse of `packedZeroPoint`.
    public static func unpackZeroPoint(_ words: [Int32], rows: Int, groups g: Int, bits: Int) -> [Int8] {
        let per = (rows * bits + 31) / 32
        var byGroup = [Int32](repeating: 0, count: g * per)
        for j in 0..<g { for w in 0..<per { byGroup[j * per + w] = words[w * g + j] } }
        var transposed = [Int8](repeating: 0, count: g * rows)
        byGroup.withUnsafeBufferPointer { b in
            transposed.withUnsafeMutableBufferPointer { dsk_unpack_int32_rows(b.baseAddress!, g, rows, Int32(bits), $0.baseAddress!) }
        }
        var out = [Int8](repeating: 0, count: rows * g)
        for r in 0..<rows { for j in 0..<g { out[r * g + j] = transposed[j * rows + r] } }
        return out
    }
}
