import CKernels

/// Number formats the weights arrive in, converted to the f32 the arithmetic uses.
public enum Conversion {
    /// bf16 → f32 is exact (a shift).
    public static func bf16ToF32(_ src: UnsafeRawBufferPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(src.count >= count * 2)
        dsk_bf16_to_f32(src.baseAddress!.assumingMemoryBound(to: UInt16.self), dst, count)
    }

    public static func f16ToF32(_ src: UnsafeRawBufferPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(src.count >= count * 2)
        dsk_f16_to_f32(src.baseAddress!.assumingMemoryBound(to: UInt16.self), dst, count)
    }

    /// f32 → bf16 with round-to-nearest-even.
    public static func f32ToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        dsk_f32_to_bf16(src, dst, count)
    }

    public static func bf16(_ x: Float) -> UInt16 {
        var v = x
        var out: UInt16 = 0
        dsk_f32_to_bf16(&v, &out, 1)
        return out
    }

    public static func float(bf16 bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }
}

