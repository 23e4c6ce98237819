import CKernels
import Testing

@testable import Quantization

/// Dequantization (the AVX-512 rows and the scalar tables) against bf16(bf16(q − zp) · scale)
/// computed here from the integers, for int4 and int8, symmetric and not, groups the vector path
/// takes (multiples of 16) and ones it leaves to the tables.
@Suite struct DequantizeTests {
    static func bf16(_ f: Float) -> Float {
        var u = f.bitPattern
        u = (u &+ 0x7fff &+ ((u >> 16) & 1)) & 0xffff_0000
        return Float(bitPattern: u)
    }

    @Test(arguments: [(4, 16, true), (4, 32, false), (4, 128, true), (4, 8, true), (8, 16, false), (8, 64, true), (8, 24, true),
                         (8, 1024, true), (4, 896, false)])  // rows wider than the 4096-column stack buffer
    func rowsMatchTheDefinition(bits: Int, group: Int, symmetric: Bool) {
        let rows = 5, cols = group * 6
        var seed: UInt64 = 7
        func next() -> Int {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Int(seed >> 33)
        }
        let half = 1 << (bits - 1)
        let q = (0..<(rows * cols)).map { _ in Int8(truncatingIfNeeded: next() % (2 * half) - half) }
        let scheme = QuantScheme(bits: bits, groupSize: group, symmetric: symmetric)
        let groups = cols / group
        let scale = (0..<(rows * groups)).map { _ in UInt16((Float(next() % 1000 + 1) * 1e-4).bitPattern >> 16) }
        let zp: [Int8]? = symmetric ? nil : (0..<(rows * groups)).map { _ in Int8(next() % 7 - 3) }
        let t = QuantizedTensor(integers: q, rows: rows, cols: cols, scheme: scheme, scale: scale, zeroPoint: zp)
        var f32 = [Float](repeating: .nan, count: rows * cols)
        t.packed.withUnsafeBufferPointer { p in
            scale.withUnsafeBufferPointer { s in
                (zp ?? []).withUnsafeBufferPointer { z in
                    dsk_dequant_packed_f32(p.baseAddress!, rows, cols, Int32(bits), group, s.baseAddress!, zp == nil ? nil : z.baseAddress, &f32)
                }
            }
        }
        let b16 = t.dequantized()
        for r in 0..<rows {
            for c in 0..<cols {
                let g = r * groups + c / group
                let s = Float(bitPattern: UInt32(scale[g]) << 16)
                let want = Self.bf16(Self.bf16(Float(Int(q[r * cols + c]) - Int(zp?[g] ?? 0))) * s)
                #expect(f32[r * cols + c].bitPattern == want.bitPattern, "f32 [\(r), \(c)]: \(f32[r * cols + c]) vs \(want)")
                #expect(Float(bitPattern: UInt32(b16[r * cols + c]) << 16).bitPattern == want.bitPattern, "bf16 [\(r), \(c)]")
            }
        }
    }
}
