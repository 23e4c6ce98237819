import CKernels

/// Round-to-nearest quantization (RTN) with compressed-tensors' min/max observer: scales from
/// each group's range, optionally shrunk per group by `clip` (AWQ's clipping search).
public enum RoundToNearest {
    /// Scales and zero points of a bf16 weight [rows, cols].
    public static func parameters(_ w: UnsafePointer<UInt16>, rows: Int, cols: Int, scheme: QuantScheme,
                                  clip: [Float]? = nil) -> (scale: [UInt16], zeroPoint: [Int8]?) {
        let g = scheme.groups(cols: cols)
        let scale = UnsafeMutablePointer<UInt16>.allocate(capacity: rows * g)
        let zp = UnsafeMutablePointer<Int8>.allocate(capacity: rows * g)
        defer { scale.deallocate(); zp.deallocate() }
        let clipPointer = clip.map { c -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: c.count)
            p.initialize(from: c, count: c.count)
            return p
        }
        defer { clipPointer?.deallocate() }
        dsk_quant_params(w, rows, cols, cols, scheme.groupWidth(cols: cols), Int32(scheme.bits), scheme.symmetric ? 1 : 0,
                         clipPointer, scale, scheme.symmetric ? nil : zp)
        let s = Array(UnsafeBufferPointer(start: scale, count: rows * g))
        return (s, scheme.symmetric ? nil : Array(UnsafeBufferPointer(start: zp, count: rows * g)))
    }

    /// Integers for given scales.
    public static func integers(_ w: UnsafePointer<UInt16>, rows: Int, cols: Int, scheme: QuantScheme,
                                scale: [UInt16], zeroPoint: [Int8]?) -> [Int8] {
        var q = [Int8](repeating: 0, count: rows * cols)
        let zp = zeroPoint ?? []
        scale.withUnsafeBufferPointer { s in
            zp.withUnsafeBufferPointer { z in
                q.withUnsafeMutableBufferPointer { qb in
                    dsk_quant_apply(w, rows, cols, cols, scheme.groupWidth(cols: cols), Int32(scheme.bits), s.baseAddress!,
                                    zeroPoint == nil ? nil : z.baseAddress, qb.baseAddress!)
                }
            }
        }
        return q
    }

    /// Rows of `w` quantized straight into their place in the output arrays: packed words
    /// [rows, packedWords], scales and (asymmetric) zero points [rows, groups]. No intermediate
    /// tensor is built; the integers pass through one scratch buffer of these rows.
    public static func quantizeRows(_ w: UnsafePointer<UInt16>, rows: Int, cols: Int, scheme: QuantScheme,
                                    packed: UnsafeMutablePointer<Int32>, scale: UnsafeMutablePointer<UInt16>,
                                    zeroPoint: UnsafeMutablePointer<Int8>?) {
        let gw = scheme.groupWidth(cols: cols), bits = Int32(scheme.bits)
        dsk_quant_params(w, rows, cols, cols, gw, bits, scheme.symmetric ? 1 : 0, nil, scale, scheme.symmetric ? nil : zeroPoint)
        let q = UnsafeMutablePointer<Int8>.allocate(capacity: rows * cols)
        defer { q.deallocate() }
        dsk_quant_apply(w, rows, cols, cols, gw, bits, scale, scheme.symmetric ? nil : zeroPoint, q)
        dsk_pack_int32_rows(q, rows, cols, bits, packed)
    }

    public static func quantize(_ w: UnsafePointer<UInt16>, rows: Int, cols: Int, scheme: QuantScheme, clip: [Float]? = nil) -> QuantizedTensor {
        let (scale, zp) = parameters(w, rows: rows, cols: cols, scheme: scheme, clip: clip)
        let q = integers(w, rows: rows, cols: cols, scheme: scheme, scale: scale, zeroPoint: zp)
        return QuantizedTensor(integers: q, rows: rows, cols: cols, scheme: scheme, scale: scale, zeroPoint: zp)
    }
}
