import CKernels
import Kernels
import Quantization
import Testing

/// The packed-weight kernels (decode rows and prefill tiles) against the same weight dequantized
/// to BF16: the values are identical, so only the summation order may differ.
@Suite struct PackedKernelTests {
    /// (4, 1376, false) and (8, 352, true): 8256 and 2112 columns, past the int4 and int8 row
    /// kernels' one-row-at-a-time widths, so that one-row products take their four-rows-at-once
    /// paths (with a tail of two rows). int8 groups of multiples of 32 take the AVX-512 BF16
    /// rounding where the CPU has it (zero points too), groups of 16 the rounding in lanes.
    @Test(arguments: [(4, 32, true), (4, 128, false), (8, 64, true), (4, 24, true), (4, 1376, false), (8, 352, true), (8, 64, false),
                      (8, 352, false), (8, 32, true), (8, 16, true)])
    func packedMatchesDequantized(bits: Int, group: Int, symmetric: Bool) {
        var seed: UInt64 = 11
        func next() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: seed >> 11) % 2001 - 1000) / 1000
        }
        let rows = 42, cols = group * 6  // 42: four-row blocks and a tail
        let w: [UInt16] = (0..<(rows * cols)).map { _ in UInt16(truncatingIfNeeded: (Float(0.02) * next()).bitPattern >> 16) }
        let scheme = QuantScheme(bits: bits, groupSize: group, symmetric: symmetric)
        let q = w.withUnsafeBufferPointer { RoundToNearest.quantize($0.baseAddress!, rows: rows, cols: cols, scheme: scheme) }
        let deq = q.dequantized()
        let zp = q.zeroPoint ?? []
        q.packed.withUnsafeBytes { p in
            q.scale.withUnsafeBufferPointer { s in
                zp.withUnsafeBufferPointer { z in
                    deq.withUnsafeBytes { d in
                        let layout = PackedLayout(bits: bits, groupSize: group, scale: s.baseAddress!, zeroPoint: symmetric ? nil : z.baseAddress)
                        let packed = WeightMatrix(bytes: p, format: .packed, rows: rows, cols: cols, owner: nil, packing: layout)
                        let plain = WeightMatrix(bytes: d, format: .bf16, rows: rows, cols: cols, owner: nil)
                        #expect(packed.toF32() == plain.toF32(), "dequantization differs")
                        #expect(packed.rowSlice(7, 9).toF32() == plain.rowSlice(7, 9).toF32(), "row slices differ")
                        for m in [1, 3, 5, 40] {
                            let x = Matrix(rows: m, cols: cols, data: (0..<(m * cols)).map { _ in next() })
                            let a = Linear.apply(x, packed, threads: 2), b = Linear.apply(x, plain, threads: 2)
                            let worst = zip(a.data, b.data).map { abs($0 - $1) / max(abs($1), 1e-3) }.max() ?? 0
                            #expect(worst < 1e-4, "bits \(bits) g\(group) m \(m): relative difference \(worst)")
                        }
                    }
                }
            }
        }
    }
}

/// Weights so small that their groups' scales are subnormal (bf16): the int8 row kernels round
/// q · scale to bf16 with an instruction that flushes subnormal inputs to zero, so such groups
/// round in lanes instead, and a product keeps the values the dequantized weight has.
@Suite struct SubnormalScaleTests {
    @Test(arguments: [(8, 64, 6), (8, 64, 33), (8, 32, 12), (4, 64, 6)])
    func subnormalScalesAreNotFlushed(bits: Int, group: Int, groups: Int) {
        var seed: UInt64 = 5
        func next() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: seed >> 11) % 2001 - 1000) / 1000
        }
        let rows = 10, cols = group * groups
        // |w| up to 1e-37 (int8) or 1e-38 (int4): scales about 1e-37 / 127 or 1e-38 / 7, below
        // bf16's smallest normal (1.2e-38).
        let top: Float = bits == 8 ? 1e-37 : 1e-38
        let w: [UInt16] = (0..<(rows * cols)).map { _ in UInt16(truncatingIfNeeded: (top * next()).bitPattern >> 16) }
        let q = w.withUnsafeBufferPointer {
            RoundToNearest.quantize($0.baseAddress!, rows: rows, cols: cols, scheme: QuantScheme(bits: bits, groupSize: group, symmetric: true))
        }
        #expect(q.scale.contains { $0 & 0x7f80 == 0 && $0 & 0x7f != 0 }, "the fixture should have subnormal scales")
        let deq = q.dequantized()
        q.packed.withUnsafeBytes { p in
            q.scale.withUnsafeBufferPointer { s in
                deq.withUnsafeBytes { d in
                    let layout = PackedLayout(bits: bits, groupSize: group, scale: s.baseAddress!, zeroPoint: nil)
                    let packed = WeightMatrix(bytes: p, format: .packed, rows: rows, cols: cols, owner: nil, packing: layout)
                    let plain = WeightMatrix(bytes: d, format: .bf16, rows: rows, cols: cols, owner: nil)
                    for m in [1, 3] {
                        let x = Matrix(rows: m, cols: cols, data: (0..<(m * cols)).map { _ in next() })
                        let a = Linear.apply(x, packed, threads: 2), b = Linear.apply(x, plain, threads: 2)
                        // Relative to the outputs' own size (about 1e-36): a flushed weight shows.
                        let worst = zip(a.data, b.data).map { abs($0 - $1) / max(abs($1), 1e-40) }.max() ?? 0
                        #expect(worst < 1e-4, "bits \(bits) g\(group) m \(m): relative difference \(worst)")
                    }
                }
            }
        }
    }
}

/// Scales at the top of the range, as a checkpoint made elsewhere may hold: with scale 2^121,
/// (q − 128) · scale stays finite for codes 1…255, but 128 · scale is 2^128, past f32's largest.
/// The int8 row kernels that fold the offset into one fused multiply-subtract (q · scale −
/// 128 · scale) round such groups in lanes instead, and a product keeps the dequantized values.
@Suite struct HugeScaleTests {
    @Test(arguments: [(64, 6), (32, 12), (5120, 1)])
    func hugeScalesDoNotOverflow(group: Int, groups: Int) {
        var seed: UInt64 = 11
        func next() -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return seed >> 33
        }
        let rows = 10, cols = group * groups
        let integers = (0..<(rows * cols)).map { _ in Int8(Int(next() % 255) - 127) }  // −127…127
        let huge: UInt16 = 0x7C00  // 2^121 in bf16
        let scale = (0..<(rows * groups)).map { $0 % 2 == 0 ? huge : 0x3C00 }  // and 2^-7
        let q = QuantizedTensor(integers: integers, rows: rows, cols: cols, scheme: QuantScheme(bits: 8, groupSize: group, symmetric: true),
                                scale: scale, zeroPoint: nil)
        let deq = q.dequantized()
        #expect(deq.allSatisfy { Float(bitPattern: UInt32($0) << 16).isFinite }, "the dequantized weights should be finite")
        q.packed.withUnsafeBytes { p in
            q.scale.withUnsafeBufferPointer { s in
                deq.withUnsafeBytes { d in
                    let layout = PackedLayout(bits: 8, groupSize: group, scale: s.baseAddress!, zeroPoint: nil)
                    let packed = WeightMatrix(bytes: p, format: .packed, rows: rows, cols: cols, owner: nil, packing: layout)
                    let plain = WeightMatrix(bytes: d, format: .bf16, rows: rows, cols: cols, owner: nil)
                    for m in [1, 3] {
                        // Inputs near 1e-30 keep the sums finite (about 1e11).
                        let x = Matrix(rows: m, cols: cols, data: (0..<(m * cols)).map { _ in 1e-30 * (Float(next() % 2001) / 1000 - 1) })
                        let a = Linear.apply(x, packed, threads: 2), b = Linear.apply(x, plain, threads: 2)
                        let finite = a.data.allSatisfy { $0.isFinite }
                        #expect(finite, "g\(group) m \(m): a non-finite output")
                        let worst = zip(a.data, b.data).map { abs($0 - $1) / max(abs($1), 1) }.max() ?? 0
                        #expect(worst < 1e-4, "g\(group) m \(m): relative difference \(worst)")
                    }
                }
            }
        }
    }
}

/// The int8-activation decode path (`fastInt8Activations`): close to the exact kernels, not equal;
/// weights it does not take (asymmetric, groups under 64) and many rows run the exact path.
@Suite struct Int8ActivationKernelTests {
    /// (bits, group, symmetric, groups per row): int4 blocks go two at a time, so odd block counts
    /// (5 × 64, 3 × 192) and pairs across a group boundary (64, 192) are cases of their own; rows
    /// of 64- and 128-column groups take their block scales 16 at a time, so rows of 21 and 18
    /// blocks (a partial second sixteen; an odd pair count) are too; int8 rows of 64- and 128-column
    /// groups go the same way, wider groups (256, and per channel: one group of 640) by group sums.
    @Test(arguments: [(4, 64, true, 4), (4, 64, true, 5), (4, 64, true, 21), (4, 128, true, 4), (4, 128, true, 9), (4, 192, true, 3),
                      (4, 128, false, 4), (4, 32, true, 4),
                      (8, 64, true, 4), (8, 64, true, 21), (8, 128, true, 9), (8, 256, true, 4), (8, 640, true, 1), (8, 64, false, 4),
                      (8, 32, true, 4)])
    func int8ActivationsStayCloseOrFallBack(bits: Int, group: Int, symmetric: Bool, groups: Int) {
        var seed: UInt64 = 23
        func next() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: seed >> 11) % 2001 - 1000) / 1000
        }
        let rows = 37, cols = group * groups
        let w: [UInt16] = (0..<(rows * cols)).map { _ in UInt16(truncatingIfNeeded: (Float(0.02) * next()).bitPattern >> 16) }
        let scheme = QuantScheme(bits: bits, groupSize: group, symmetric: symmetric)
        let q = w.withUnsafeBufferPointer { RoundToNearest.quantize($0.baseAddress!, rows: rows, cols: cols, scheme: scheme) }
        let zp = q.zeroPoint ?? []
        let takes = symmetric && group % 64 == 0 && dsk_q8act_supported(Int32(bits), cols, group, 0) != 0
        q.packed.withUnsafeBytes { p in
            q.scale.withUnsafeBufferPointer { s in
                zp.withUnsafeBufferPointer { z in
                    let layout = PackedLayout(bits: bits, groupSize: group, scale: s.baseAddress!, zeroPoint: symmetric ? nil : z.baseAddress)
                    let packed = WeightMatrix(bytes: p, format: .packed, rows: rows, cols: cols, owner: nil, packing: layout)
                    for m in [1, 3, 4, 5, 40] {
                        // Activations with an outlier column, as real hidden states have.
                        let x = Matrix(rows: m, cols: cols, data: (0..<(m * cols)).map { i in i % cols == 5 ? 20 * next() : next() })
                        let exact = Linear.apply(x, packed, threads: 2, backend: .fast)
                        let fast = Linear.apply(x, packed, threads: 2, backend: .fastInt8Activations)
                        let err = zip(exact.data, fast.data).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
                        let norm = exact.data.reduce(0) { $0 + Double($1 * $1) }
                        let rel = (err / max(norm, 1e-30)).squareRoot()
                        if takes && m <= 4 {
                            #expect(rel > 0 && rel < 2e-2, "bits \(bits) g\(group) m \(m): relative L2 \(rel)")
                            // And it is exactly the approximation it claims, to f32 summation: the
                            // input rounded to int8 per 64 columns (max |x| / 127), times q · scale.
                            let integers = q.integers()
                            for r in 0..<m {
                                var xq = [Double](repeating: 0, count: cols)
                                for b in 0..<(cols / 64) {
                                    let block = (0..<64).map { x[r, b * 64 + $0] }
                                    let top = block.map { abs($0) }.max() ?? 0
                                    for j in 0..<64 {
                                        let code = top > 0 ? Float(block[j] * (127 / top)).rounded(.toNearestOrEven) : 0
                                        xq[b * 64 + j] = Double(code) * Double(top / 127)
                                    }
                                }
                                for n in 0..<rows {
                                    var ref = 0.0, size = 0.0
                                    for c in 0..<cols {
                                        let term = xq[c] * Double(integers[n * cols + c]) * Double(Conversion.float(bf16: q.scale[n * (cols / group) + c / group]))
                                        ref += term
                                        size += abs(term)
                                    }
                                    #expect(abs(Double(fast[r, n]) - ref) <= 1e-5 * max(size, 1e-6), "bits \(bits) g\(group) [\(r), \(n)]: \(fast[r, n]) vs \(ref)")
                                }
                            }
                        } else {
                            #expect(rel == 0, "bits \(bits) g\(group) sym \(symmetric) m \(m): should run the exact path, relative L2 \(rel)")
                        }
                    }
                }
            }
        }
    }
}
