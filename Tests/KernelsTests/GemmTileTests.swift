import CKernels
import Foundation
import Testing

@testable import Kernels

/// The prefill GEMM tiles (gemm.c) against a double-precision reference, every kind this CPU runs,
/// on shapes with tails in M, N and K; and `Linear` choosing them.
@Suite struct GemmTileTests {
    struct Case: CustomStringConvertible, Sendable {
        let m, k, n: Int
        var description: String { "\(m)x\(k)x\(n)" }
    }

    /// Odd sizes: a row, tiles' remainders (4 × 6 with 1–3 rows left, 32 × 32), K past a block (1024 f32, 2048 bf16)
    /// and not a multiple of the vector.
    static let cases = [Case(m: 1, k: 7, n: 1), Case(m: 5, k: 33, n: 7), Case(m: 37, k: 100, n: 45), Case(m: 64, k: 96, n: 64),
                        Case(m: 9, k: 2100, n: 13), Case(m: 70, k: 1030, n: 97), Case(m: 7, k: 40, n: 13),
                        Case(m: 90, k: 600, n: 25)]

    static func random(_ count: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<count).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(s >> 40) % 2001 - 1000) / 1000
        }
    }

    static func bf16(_ values: [Float]) -> [UInt16] { values.map { UInt16($0.bitPattern >> 16) } }
    static func widen(_ h: [UInt16]) -> [Float] { h.map { Float(bitPattern: UInt32($0) << 16) } }
    static func rounded(_ x: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: x.count)
        dsk_round_bf16_f32(x, x.count, &out)
        return out
    }

    /// Relative L2 error of y against X · Wᵀ in double.
    static func error(_ y: [Float], _ x: [Float], _ w: [Float], _ c: Case) -> Double {
        var e = 0.0, r = 0.0
        for i in 0..<c.m {
            for j in 0..<c.n {
                var s = 0.0
                for t in 0..<c.k { s += Double(x[i * c.k + t]) * Double(w[j * c.k + t]) }
                e += (Double(y[i * c.n + j]) - s) * (Double(y[i * c.n + j]) - s)
                r += s * s
            }
        }
        return (e / max(r, 1e-30)).squareRoot()
    }

    /// One kind over two row ranges (the split threads make), W as bf16 or f32.
    static func run(_ kind: Int32, _ x: [Float], _ w: UnsafeRawPointer, wIsBF16: Bool, _ c: Case) -> [Float] {
        var packed = [UInt8](repeating: 0xff, count: dsk_gemm_packed_x_count(c.m, c.k, kind) * (Linear.isExact(kind) ? 4 : 2))
        var y = [Float](repeating: .nan, count: c.m * c.n)
        packed.withUnsafeMutableBytes { p in
            dsk_gemm_pack_x(x, c.m, c.k, c.k, kind, p.baseAddress!)
            let split = c.n / 2 / 32 * 32
            y.withUnsafeMutableBufferPointer { yb in
                dsk_gemm_xwT(p.baseAddress!, c.m, c.k, w, wIsBF16 ? 1 : 0, 0, split, yb.baseAddress!, c.n, kind)
                dsk_gemm_xwT(p.baseAddress!, c.m, c.k, w, wIsBF16 ? 1 : 0, split, c.n, yb.baseAddress! + split, c.n, kind)
            }
        }
        return y
    }

    @Test(arguments: cases) func everyKindMatchesTheReference(_ c: Case) {
        let x = Self.random(c.m * c.k, seed: 1), wh = Self.bf16(Self.random(c.n * c.k, seed: 2)), w = Self.widen(wh)
        let kinds = [DSK_GEMM_F32, DSK_GEMM_F32_AVX2, DSK_GEMM_AVX512BF16, DSK_GEMM_AMX].map { Int32($0) }.filter { dsk_gemm_supported($0) != 0 }
        for kind in kinds {
            // The exact kind multiplies x as it is; the bf16 kinds multiply x rounded to bf16.
            let exact = Linear.isExact(kind)
            let y = wh.withUnsafeBytes { Self.run(kind, x, $0.baseAddress!, wIsBF16: true, c) }
            let e = Self.error(y, exact ? x : Self.rounded(x), w, c)
            #expect(e <= 1e-6, "kind \(kind) \(c): relative error \(e)")
            #expect(y.allSatisfy { $0.isFinite }, "kind \(kind) \(c): an output left unwritten")
            if exact {
                let yf = w.withUnsafeBytes { Self.run(kind, x, $0.baseAddress!, wIsBF16: false, c) }
                #expect(yf == y, "f32 weights and the same bf16 weights give different sums")
            }
        }
    }

    /// Packed int4/int8 weights, dequantized panel by panel inside the GEMM, give exactly the sums
    /// of the same GEMM over the weight dequantized whole (the old path), for groups of 32 and 128
    /// and per channel, symmetric and not, with K past the K blocks and M and N with tails.
    @Test func packedWeightsEqualTheirDequantizedForm() {
        let kinds = [DSK_GEMM_F32, DSK_GEMM_AVX512BF16].map { Int32($0) }.filter { dsk_gemm_supported($0) != 0 }
        for (bits, group, symmetric) in [(4, 32, true), (4, 128, false), (8, 0, true), (4, 0, true), (8, 128, false)] {
            for c in [Case(m: 3, k: 2304, n: 13), Case(m: 19, k: 256, n: 50), Case(m: 40, k: 1152, n: 7)] {
                let g = group == 0 ? c.k : group, groups = c.k / g, words = c.k * bits / 32
                var seed: UInt64 = UInt64(bits * 1000 + g + c.m)
                func next() -> UInt64 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return seed >> 33 }
                let packed = (0..<(c.n * words)).map { _ in Int32(truncatingIfNeeded: next() | (next() << 31)) }
                let scales = (0..<(c.n * groups)).map { _ in UInt16((Float(next() % 1000 + 10) * 1e-5).bitPattern >> 16) }
                let zeros: [Int8]? = symmetric ? nil : (0..<(c.n * groups)).map { _ in Int8(Int(next() % 9) - 4) }
                var dense = [UInt16](repeating: 0, count: c.n * c.k)
                zeros.withOptionalPointer { zp in dsk_dequant_packed(packed, c.n, c.k, Int32(bits), g, scales, zp, &dense) }
                let x = Self.random(c.m * c.k, seed: 5)
                for kind in kinds where dsk_gemm_packed_applies(kind, c.m) != 0 {
                    let reference = dense.withUnsafeBytes { Self.run(kind, x, $0.baseAddress!, wIsBF16: true, c) }
                    var xp = [UInt8](repeating: 0xff, count: dsk_gemm_packed_x_count(c.m, c.k, kind) * (Linear.isExact(kind) ? 4 : 2))
                    var y = [Float](repeating: .nan, count: c.m * c.n)
                    packed.withUnsafeBufferPointer { pw in
                        scales.withUnsafeBufferPointer { sc in
                            zeros.withOptionalPointer { zp in
                                xp.withUnsafeMutableBytes { p in
                                    dsk_gemm_pack_x(x, c.m, c.k, c.k, kind, p.baseAddress!)
                                    let w = dsk_packed_weight(words: pw.baseAddress!, bits: Int32(bits), group: g, scale: sc.baseAddress!, zp: zp)
                                    let split = 6
                                    y.withUnsafeMutableBufferPointer { yb in
                                        dsk_gemm_xwT_packed(p.baseAddress!, c.m, c.k, w, 0, split, yb.baseAddress!, c.n, kind)
                                        dsk_gemm_xwT_packed(p.baseAddress!, c.m, c.k, w, split, c.n, yb.baseAddress! + split, c.n, kind)
                                    }
                                }
                            }
                        }
                    }
                    #expect(y == reference, "kind \(kind), int\(bits) group \(g)\(symmetric ? "" : " asymmetric"), \(c)")
                }
            }
        }
    }

    /// W read as rows of a wider matrix (`dsk_gemm_xwT_ld`, ldw > K: one head's keys or values in
    /// attention) gives exactly the sums of the same rows stored contiguously, every kind, bf16
    /// and (exact kinds) f32 weights, K a multiple of 32 (read in place) and not (packed copies).
    @Test(arguments: [Case(m: 5, k: 64, n: 13), Case(m: 64, k: 192, n: 70), Case(m: 37, k: 100, n: 45), Case(m: 9, k: 2100, n: 40)])
    func stridedWeightsEqualContiguousOnes(_ c: Case) {
        let ldw = c.k + 37
        let x = Self.random(c.m * c.k, seed: 11), wh = Self.bf16(Self.random(c.n * c.k, seed: 12))
        var wide = [UInt16](repeating: 0x7fc0, count: c.n * ldw)  // NaN between the rows: must not be read
        for r in 0..<c.n { for j in 0..<c.k { wide[r * ldw + j] = wh[r * c.k + j] } }
        let wf = Self.widen(wh)
        var wideF = [Float](repeating: .nan, count: c.n * ldw)
        for r in 0..<c.n { for j in 0..<c.k { wideF[r * ldw + j] = wf[r * c.k + j] } }
        let kinds = [DSK_GEMM_F32, DSK_GEMM_F32_AVX2, DSK_GEMM_AVX512BF16, DSK_GEMM_AMX].map { Int32($0) }.filter { dsk_gemm_supported($0) != 0 }
        for kind in kinds {
            let contiguous = wh.withUnsafeBytes { Self.run(kind, x, $0.baseAddress!, wIsBF16: true, c) }
            var packed = [UInt8](repeating: 0xff, count: dsk_gemm_packed_x_count(c.m, c.k, kind) * (Linear.isExact(kind) ? 4 : 2))
            var y = [Float](repeating: .nan, count: c.m * c.n), yf = y
            packed.withUnsafeMutableBytes { p in
                dsk_gemm_pack_x(x, c.m, c.k, c.k, kind, p.baseAddress!)
                let split = c.n / 2 / 6 * 6
                for (half, n0, n1) in [(0, 0, split), (1, split, c.n)] {
                    _ = half
                    wide.withUnsafeBytes { w in
                        y.withUnsafeMutableBufferPointer { yb in
                            dsk_gemm_xwT_ld(p.baseAddress!, c.m, c.k, w.baseAddress!, ldw, 1, n0, n1, yb.baseAddress! + n0, c.n, kind)
                        }
                    }
                    if Linear.isExact(kind) {
                        wideF.withUnsafeBytes { w in
                            yf.withUnsafeMutableBufferPointer { yb in
                                dsk_gemm_xwT_ld(p.baseAddress!, c.m, c.k, w.baseAddress!, ldw, 0, n0, n1, yb.baseAddress! + n0, c.n, kind)
                            }
                        }
                    }
                }
            }
            #expect(y == contiguous, "kind \(kind) \(c): strided bf16 rows differ from contiguous ones")
            if Linear.isExact(kind) { #expect(yf == contiguous, "kind \(kind) \(c): strided f32 rows differ") }
        }
    }

    /// The attention softmax kernel against a double-precision softmax: within 1e-6 relative per
    /// entry plus what f32 inputs carry (its exp is a polynomial, not libm's), the scale applied, the tail past `visible`
    /// zeroed, -inf scores giving zero, lengths around the 16-lane vectors.
    @Test func softmaxKernelMatchesDouble() {
        for (visible, count) in [(1, 1), (5, 9), (16, 16), (17, 40), (100, 100), (513, 600)] {
            var p = Self.random(count, seed: UInt64(visible)).map { $0 * 30 }
            if visible > 3 { p[2] = -.infinity }
            let scale: Float = 0.37
            let v = p.prefix(visible).map { Double($0) * Double(scale) }
            let m = v.max() ?? 0
            let e = v.map { Foundation.exp($0 - m) }, sum = e.reduce(0, +)
            let reference = e.map { $0 / sum }
            dsk_softmax_masked(&p, visible, count, scale)
            for i in 0..<visible {
                // f32 rounds scale · p and its distance below the maximum (2^-24 relative each), which
                // exp turns into |x − m| · 2^-24 of relative error, as it would with libm's expf
                let bound = v[i] == -.infinity ? 0 : reference[i] * (1e-6 + 1.2e-7 * (v[i] - m).magnitude)
                #expect(abs(Double(p[i]) - reference[i]) <= bound, "\(visible)/\(count) entry \(i): \(p[i]) vs \(reference[i])")
            }
            #expect(p[visible...].allSatisfy { $0 == 0 }, "\(visible)/\(count): the masked tail is not zero")
        }
    }

    /// A block transposed, as f32 and rounded to bf16, rows not a multiple of the 16-row passes.
    @Test func transposeRows() {
        let rows = 37, cols = 5, lds = 9, ldd = 40
        let src = Self.random(rows * lds, seed: 21)
        var f = [Float](repeating: -1, count: cols * ldd)
        var h = [UInt16](repeating: 0xffff, count: cols * ldd)
        f.withUnsafeMutableBytes { dsk_transpose_rows(src, rows, cols, lds, 0, $0.baseAddress!, ldd) }
        h.withUnsafeMutableBytes { dsk_transpose_rows(src, rows, cols, lds, 1, $0.baseAddress!, ldd) }
        let rounded = Self.bf16(Self.rounded(src))
        for c in 0..<cols {
            for r in 0..<rows {
                #expect(f[c * ldd + r] == src[r * lds + c])
                #expect(h[c * ldd + r] == rounded[r * lds + c])
            }
            #expect(f[(c * ldd + rows)..<(c * ldd + ldd)].allSatisfy { $0 == -1 }, "written past the block")
        }
    }

    /// Packing X's row blocks separately (as threads do) writes the same bytes as packing it whole.
    @Test func packingRowBlocksEqualsPackingWhole() {
        let m = 70, k = 2100
        let x = Self.random(m * k, seed: 3)
        let kinds = [DSK_GEMM_F32, DSK_GEMM_F32_AVX2, DSK_GEMM_AVX512BF16, DSK_GEMM_AMX].map { Int32($0) }.filter { dsk_gemm_supported($0) != 0 }
        for kind in kinds {
            let bytes = dsk_gemm_packed_x_count(m, k, kind) * (Linear.isExact(kind) ? 4 : 2)
            var whole = [UInt8](repeating: 0xee, count: bytes), parts = [UInt8](repeating: 0x11, count: bytes)
            whole.withUnsafeMutableBytes { dsk_gemm_pack_x(x, m, k, k, kind, $0.baseAddress!) }
            let block = dsk_gemm_x_row_block(kind, m), padded = (m + block - 1) / block * block
            parts.withUnsafeMutableBytes { p in
                // uneven ranges, last first
                var bounds = [0, block, 3 * block, padded].filter { $0 <= padded }
                bounds = Array(Set(bounds)).sorted()
                for i in stride(from: bounds.count - 2, through: 0, by: -1) {
                    dsk_gemm_pack_x_rows(x, m, k, k, kind, p.baseAddress!, bounds[i], bounds[i + 1])
                }
            }
            #expect(whole == parts, "kind \(kind): row-block packing differs")
        }
    }

    @Test func bf16KindIsOneThisCPURuns() {
        let kind = dsk_gemm_bf16_kind()
        #expect(kind == Int32(DSK_GEMM_F32) || dsk_gemm_supported(kind) != 0)
        #expect(dsk_gemm_bf16_kind() == kind, "the choice is made once per process")
    }

    static func weight(_ values: [UInt16], rows: Int, cols: Int) -> (WeightMatrix, UnsafeMutableRawBufferPointer) {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: values.count * 2, alignment: 64)
        values.withUnsafeBytes { b.copyMemory(from: $0) }
        return (WeightMatrix(bytes: UnsafeRawBufferPointer(b), format: .bf16, rows: rows, cols: cols, owner: nil), b)
    }

    /// `bf16Activations` is the exact product of the rounded input (to f32 summation order), from
    /// its row threshold on; below it, the exact `fast` path.
    @Test func bf16ActivationsIsTheProductOfRoundedInputs() {
        let c = Case(m: 40, k: 300, n: 200)
        let (w, storage) = Self.weight(Self.bf16(Self.random(c.n * c.k, seed: 3)), rows: c.n, cols: c.k)
        defer { storage.deallocate() }
        let x = Matrix(rows: c.m, cols: c.k, data: Self.random(c.m * c.k, seed: 4))
        let y = Linear.apply(x, w, threads: 2, backend: .bf16Activations)
        let exactOfRounded = Linear.apply(Matrix(rows: c.m, cols: c.k, data: Self.rounded(x.data)), w, threads: 2, backend: .reference)
        #expect(relativeL2(y.data, exactOfRounded.data) <= 1e-6)
        let exact = Linear.apply(x, w, threads: 2, backend: .reference)
        let e = relativeL2(y.data, exact.data)
        #expect(e > 0 && e <= 1e-2, "rounding activations to bf16 costs about 2^-9 relative, here \(e)")
        let few = Matrix(rows: Linear.bf16GemmThreshold - 1, cols: c.k, data: Array(x.data.prefix((Linear.bf16GemmThreshold - 1) * c.k)))
        #expect(Linear.apply(few, w, threads: 2, backend: .bf16Activations).data == Linear.apply(few, w, threads: 2, backend: .fast).data)
    }

    /// One-row products (decode) on BF16 weights: the exact path within f32 summation of a
    /// double-precision reference, whichever kernel its width takes (a row at a time up to
    /// `Linear.matvecMaxColumns`, eight rows at once beyond), with column tails past the 64-column
    /// blocks (8269: past the bf16 dot-product kernel's four-rows-at-once width, 10 rows of which 2
    /// go one at a time) and the same values however the rows are cut among threads. `bf16Activations`, and
    /// `fastInt8Activations` on the BF16 weights it leaves alone, give the product of the input
    /// rounded to bf16.
    @Test(arguments: [Case(m: 1, k: 70, n: 45), Case(m: 1, k: 1536, n: 77), Case(m: 1, k: Linear.matvecMaxColumns, n: 33),
                      Case(m: 1, k: Linear.matvecMaxColumns + 13, n: 40), Case(m: 1, k: 5120, n: 19), Case(m: 1, k: 8269, n: 10)])
    func oneRowProducts(_ c: Case) {
        let values = Self.bf16(Self.random(c.n * c.k, seed: 31))
        let (w, storage) = Self.weight(values, rows: c.n, cols: c.k)
        defer { storage.deallocate() }
        let x = Matrix(rows: 1, cols: c.k, data: Self.random(c.k, seed: 32))
        let wide = Self.widen(values)
        func reference(_ x: [Float]) -> [Double] {
            (0..<c.n).map { r in (0..<c.k).reduce(0.0) { $0 + Double(x[$1]) * Double(wide[r * c.k + $1]) } }
        }
        func close(_ y: [Float], _ ref: [Double]) -> Bool {
            let scale = ref.map { abs($0) }.max() ?? 1
            return zip(y, ref).allSatisfy { abs(Double($0) - $1) <= 1e-5 * max(scale, 1) }
        }
        let exact = Linear.apply(x, w, threads: 2, backend: .fast)
        #expect(close(exact.data, reference(x.data)), "\(c) fast")
        for threads in [1, 3, 7] { #expect(Linear.apply(x, w, threads: threads, backend: .fast).data == exact.data, "\(c), \(threads) threads") }
        let rounded = Self.rounded(x.data)
        let bf16 = Linear.apply(x, w, threads: 2, backend: .bf16Activations)
        #expect(close(bf16.data, reference(rounded)), "\(c) bf16 activations")
        #expect(Linear.apply(x, w, threads: 5, backend: .fastInt8Activations).data == bf16.data, "\(c) int8 activations on BF16")
        if dsk_matvec_bf16dot_supported() != 0 { #expect(bf16.data != exact.data, "\(c): the bf16 path rounds its input") }
    }

    /// Products run as one pool give exactly what each gives alone, whatever the thread count.
    @Test func applyManyEqualsApplyOneByOne() {
        var products: [(Matrix, WeightMatrix)] = []
        var storages: [UnsafeMutableRawBufferPointer] = []
        defer { storages.forEach { $0.deallocate() } }
        for (i, c) in [Case(m: 3, k: 64, n: 50), Case(m: 40, k: 64, n: 300), Case(m: 0, k: 64, n: 10), Case(m: 9, k: 64, n: 130)].enumerated() {
            let (w, s) = Self.weight(Self.bf16(Self.random(c.n * c.k, seed: UInt64(10 + i))), rows: c.n, cols: c.k)
            storages.append(s)
            products.append((Matrix(rows: c.m, cols: c.k, data: Self.random(c.m * c.k, seed: UInt64(20 + i))), w))
        }
        for backend in [LinearBackend.fast, .reference, .bf16Activations] {
            let alone = products.map { Linear.apply($0.0, $0.1, threads: 1, backend: backend) }
            for threads in [1, 2, 5] {
                let pooled = Linear.applyMany(products, threads: threads, backend: backend)
                #expect(pooled.map(\.data) == alone.map(\.data), "\(backend), \(threads) threads")
            }
        }
    }

    func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
        var e = 0.0, r = 0.0
        for (p, q) in zip(a, b) { e += Double(p - q) * Double(p - q); r += Double(q) * Double(q) }
        return (e / max(r, 1e-30)).squareRoot()
    }
}

extension Optional where Wrapped == [Int8] {
    /// The array's storage for a C call, or NULL.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Int8>?) -> R) -> R {
        switch self {
        case .some(let a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: return body(nil)
        }
    }
}
