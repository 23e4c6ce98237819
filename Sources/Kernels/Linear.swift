import CKernels
import COpenBLAS

/// Element types a weight may arrive in. `packed`: integer codes in int32 words with per-group
/// scales (compressed-tensors pack-quantized, `PackedLayout`).
public enum WeightFormat: Sendable {
    case bf16, f16, f32, packed

    /// Bytes per element of a dense format; nil for `packed` (its rows are words, see `rowBytes`).
    public var elementBytes: Int? {
        switch self {
        case .bf16, .f16: return 2
        case .f32: return 4
        case .packed: return nil
        }
    }
}

/// The side tables of a packed quantized weight; the pointers live as long as the matrix's owner.
public struct PackedLayout: @unchecked Sendable {
    public let bits: Int
    public let groupSize: Int
    /// bf16 [rows, cols / groupSize].
    public let scale: UnsafePointer<UInt16>
    /// int8 [rows, cols / groupSize], nil when symmetric.
    public let zeroPoint: UnsafePointer<Int8>?

    public init(bits: Int, groupSize: Int, scale: UnsafePointer<UInt16>, zeroPoint: UnsafePointer<Int8>?) {
        self.bits = bits
        self.groupSize = groupSize
        self.scale = scale
        self.zeroPoint = zeroPoint
    }

    func wordsPerRow(_ cols: Int) -> Int { (cols * bits + 31) / 32 }

    /// Scale (and zero-point) entries per row.
    func groupsPerRow(_ cols: Int) -> Int { (cols + groupSize - 1) / groupSize }
}

/// A weight matrix [outFeatures, inFeatures] as it lies in the checkpoint (usually an mmap slice).
/// `owner` keeps the mapping alive.
public struct WeightMatrix: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public let format: WeightFormat
    public let rows: Int
    public let cols: Int
    public let owner: AnyObject?
    /// Set for `.packed`.
    public let packing: PackedLayout?

    public init(bytes: UnsafeRawBufferPointer, format: WeightFormat, rows: Int, cols: Int, owner: AnyObject?, packing: PackedLayout? = nil) {
        precondition((format == .packed) == (packing != nil), "a packed weight needs its layout")
        self.bytes = bytes
        self.format = format
        self.rows = rows
        self.cols = cols
        self.owner = owner
        self.packing = packing
    }

    /// Bytes of one row as stored: elements for dense formats, int32 words for packed ones.
    public var rowBytes: Int {
        if let p = packing { return p.wordsPerRow(cols) * 4 }
        return cols * (format.elementBytes ?? 0)
    }

    /// Rows [from, from+count) as a weight of its own (a view, no copy).
    public func rowSlice(_ from: Int, _ count: Int) -> WeightMatrix {
        let b = UnsafeRawBufferPointer(rebasing: bytes[(from * rowBytes)..<((from + count) * rowBytes)])
        if let p = packing {
            let groups = p.groupsPerRow(cols)
            let layout = PackedLayout(bits: p.bits, groupSize: p.groupSize, scale: p.scale + from * groups,
                                      zeroPoint: p.zeroPoint.map { $0 + from * groups })
            return WeightMatrix(bytes: b, format: .packed, rows: count, cols: cols, owner: owner, packing: layout)
        }
        return WeightMatrix(bytes: b, format: format, rows: count, cols: cols, owner: owner)
    }

    /// The whole matrix in f32.
    public func toF32() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        out.withUnsafeMutableBufferPointer { convert(into: $0.baseAddress!) }
        return out
    }

    func convert(into dst: UnsafeMutablePointer<Float>) {
        let n = rows * cols
        switch format {
        case .bf16: Conversion.bf16ToF32(bytes, dst, count: n)
        case .f16: Conversion.f16ToF32(bytes, dst, count: n)
        case .f32: dst.update(from: bytes.baseAddress!.assumingMemoryBound(to: Float.self), count: n)
        case .packed:
            guard let p = packing else { return }
            dsk_dequant_packed_f32(bytes.baseAddress!.assumingMemoryBound(to: Int32.self), rows, cols, Int32(p.bits), p.groupSize,
                                   p.scale, p.zeroPoint, dst)
        }
    }
}

/// Which kernels compute y = x · Wᵀ. Chosen in one place (a `Transformer`'s `backend`, through
/// its `Projector`) and pinnable by tests. `reference` and `fast` accumulate in f32 from exactly
/// converted weights and differ in summation order only; `fastInt8Activations` and
/// `bf16Activations` are not exact.
public enum LinearBackend: Sendable {
    /// Every product on the many-rows GEMM (`Linear.exactGemm`: our AVX-512 or AVX2 tiles, or BLAS sgemm)
    /// over exactly converted weights (BF16, F16, packed int4/int8 dequantized exactly): the path
    /// forward-parity tests pin against transformers' float32.
    case reference
    /// Few rows (decode, small expert batches) on direct kernels that read the stored BF16 or
    /// packed int4/int8 weight once; many rows as `reference`.
    case fast
    /// As `fast`, except that symmetric int4 and int8 weights (groups of 64 or more, or per
    /// channel) meet 1–4 input rows quantized to int8 per 64 columns, multiplied with integer dot
    /// products (AVX-512 VNNI; the Q8 activations llama.cpp uses). Not exact: about 4e-3 relative error per product, which
    /// `verify --reference` reports as KL. One-row products on the BF16 weights it leaves alone
    /// (lm_head) take the input rounded to bf16, as `bf16Activations` does and as llama.cpp does
    /// for BF16 tensors. Where the CPU or weight does not qualify: `fast`.
    case fastInt8Activations
    /// Prefill and calibration speed: from `Linear.bf16GemmThreshold` rows on, inputs rounded to
    /// bf16 meet BF16 weights (and packed int4/int8 ones, whose values are bf16) on AMX-BF16 or
    /// AVX-512 BF16 tiles with f32 accumulation (`Linear.bf16Kind`); where this CPU has neither
    /// faster than f32 FMAs, the rounded inputs take the exact kernels. Not exact: the rounding
    /// of activations (2⁻⁹ relative), reported by the bench as KL against the exact path. One-row
    /// products (decode) on BF16 weights round their input too, on AVX-512 BF16 dot products where
    /// the CPU has them (half the instructions per weight byte of converting to f32). Other row
    /// counts below the threshold, and F16/F32 weights: `fast`.
    case bf16Activations
}

/// y = x · Wᵀ, the linear layer. Few rows (decode, small expert batches) run a kernel that reads
/// the stored weight once, threaded over output features; many rows run a GEMM (see
/// `LinearProduct`). Several independent products can share one pool of work (`applyMany`).
public enum Linear {
    /// Row count from which the exact GEMM beats the direct kernels.
    public static let gemmThreshold = 8
    /// Row count from which `bf16Activations` takes the bf16 GEMM (AMX pads rows to 32, and still
    /// beats the direct kernels from a few rows on).
    public static let bf16GemmThreshold = 8

    /// Which many-rows GEMM the exact path runs.
    public enum ExactGemm: Sendable {
        /// Our AVX-512F register tiles (`dsk_gemm_xwT`, DSK_GEMM_F32), weights converted as they
        /// are packed.
        case avx512Tiles
        /// The same tiles on AVX2 + FMA (DSK_GEMM_F32_AVX2), for CPUs without AVX-512F.
        case avx2Tiles
        /// OpenBLAS sgemm over weight tiles converted to f32.
        case blas

        /// The `dsk_gemm_xwT` kind of our tiles; nil for BLAS.
        public var kind: Int32? {
            switch self {
            case .avx512Tiles: return Int32(DSK_GEMM_F32)
            case .avx2Tiles: return Int32(DSK_GEMM_F32_AVX2)
            case .blas: return nil
            }
        }

        public var name: String {
            switch self {
            case .avx512Tiles: return "f32 AVX-512 tiles"
            case .avx2Tiles: return "f32 AVX2 tiles"
            case .blas: return "BLAS sgemm"
            }
        }
    }

    /// Chosen at run time: our AVX-512F tiles, else our AVX2 tiles, else BLAS. `DSCONV_GEMM=blas`,
    /// `avx2` or `avx512` forces one this CPU runs (BLAS may be the faster one on a machine where
    /// its kernel suits the CPU).
    public static let exactGemm: ExactGemm = {
        let forced = getenv("DSCONV_GEMM").map { String(cString: $0) }
        let runnable = [ExactGemm.avx512Tiles, .avx2Tiles].filter { dsk_gemm_supported($0.kind!) != 0 } + [.blas]
        switch forced {
        case "blas": return .blas
        case "avx2" where runnable.contains(.avx2Tiles): return .avx2Tiles
        default: return runnable[0]
        }
    }()

    /// Whether `kind` is one of the exact (f32) GEMM kinds rather than a bf16 one.
    static func isExact(_ kind: Int32) -> Bool { dsk_gemm_is_f32(kind) != 0 }

    /// The bf16 GEMM this CPU runs for `bf16Activations`: DSK_GEMM_AMX, DSK_GEMM_AVX512BF16, or
    /// DSK_GEMM_F32 when neither beats f32 FMAs here (measured once, at first use).
    public static var bf16Kind: Int32 { dsk_gemm_bf16_kind() }

    /// A name for `bf16Kind` (benchmarks, verify's notes).
    public static var bf16KindName: String {
        switch bf16Kind {
        case Int32(DSK_GEMM_AMX): return "AMX-BF16 tiles"
        case Int32(DSK_GEMM_AVX512BF16): return "AVX-512 BF16 dot products"
        default: return exactGemm.name + " over bf16-rounded inputs"
        }
    }

    /// Whether `fastInt8Activations` can run for an int4 or int8 weight with these groups on this
    /// CPU (AVX-512 VNNI; symmetric; groups a multiple of 64).
    public static func int8ActivationsApply(bits: Int, groupSize: Int?, symmetric: Bool) -> Bool {
        // Per channel (no groups): one scale per row, any width that is a multiple of 64.
        let g = groupSize ?? 64
        return dsk_q8act_supported(Int32(bits), g, g, symmetric ? 0 : 1) != 0
    }

    /// Widest BF16 row (columns) that exact one-row products read a weight row at a time
    /// (`dsk_matvec_bf16`). Up to 4 KB rows, eight rows at once would be eight streams shorter than
    /// a page, which the prefetchers lose: one sequential stream read 1.2–1.5× faster (q_b, expert
    /// down projections, 1536 columns). Longer rows keep the eight-row kernel, which loads x once
    /// for eight rows and measured faster in the model at 5120 columns.
    public static let matvecMaxColumns = 2048

    /// Weight bytes per piece of a one-row product (decode): a quarter of each thread's share of
    /// the matrix, within 256 KB…4 MB. Threads take pieces in order, so at any moment they stream
    /// neighbouring rows. Longer pieces are longer unbroken streams: on an AMD EPYC VM whose
    /// memory reads 50+ GB/s in some placements, bf16 rows one at a time (5120 columns, two
    /// threads, one buffer) read 51–53 GB/s in 256 KB pieces, 57 in 1 MB and 59–63 in 4 MB (1536
    /// columns: 47, 54–57, 56–58), and the 48-expert synth decoded at 18.1–18.8 tokens/s against
    /// 15.9 in that state; where the memory reads 33–35 GB/s the size made no difference. A
    /// quarter of a thread's share keeps small matrices (a layer's 6 MB kv_a, an int4 expert's 4
    /// MB) in enough pieces for the threads to finish together.
    public static func decodePieceBytes(matrixBytes: Int, threads: Int) -> Int {
        min(4 << 20, max(256 << 10, matrixBytes / max(threads * 4, 1)))
    }

    /// Weight rows converted per piece where a weight must be converted first (packed, F16; ≈ 5 MB
    /// of f32 at K = 5120).
    public static let tileRows = 256

    public static func apply(_ x: Matrix, _ w: WeightMatrix, threads: Int, backend: LinearBackend = .fast) -> Matrix {
        applyMany([(x, w)], threads: threads, backend: backend)[0]
    }

    /// Independent products as one pool of pieces (a MoE layer's experts × their row tiles): each
    /// input is prepared once, then any thread takes any product's next piece, so many small
    /// products keep all cores busy where one at a time would not. Results equal `apply`'s.
    public static func applyMany(_ products: [(Matrix, WeightMatrix)], threads: Int, backend: LinearBackend = .fast) -> [Matrix] {
        let outputs = products.map { OutputBox(Matrix(rows: $0.0.rows, cols: $0.1.rows)) }
        withOutputPointers(outputs, 0, []) { pointers in
            // Inputs prepared in parallel too: one product's row blocks over all threads, or
            // several products (a MoE layer's experts) a product per thread.
            let plans: [LinearProduct]
            if products.count == 1 {
                plans = [LinearProduct(x: products[0].0, w: products[0].1, output: pointers[0], threads: threads, backend: backend,
                                       packThreads: threads)]
            } else {
                let ps = UnsafeSendable(pointers)
                let inputs = UnsafeSendable(products)
                plans = parallelMap(products.count, threads: threads) { i in
                    LinearProduct(x: inputs.value[i].0, w: inputs.value[i].1, output: ps.value[i], threads: threads, backend: backend)
                }
            }
            let work = plans.enumerated().flatMap { p, plan in (0..<plan.pieces).map { (plan: p, piece: $0) } }
            parallelFor(work.count, threads: threads) { i in plans[work[i].plan].run(work[i].piece) }
        }
        return outputs.map(\.matrix)
    }

    /// Each output's storage pinned for the whole run (nested scopes, one per product).
    private static func withOutputPointers(_ boxes: [OutputBox], _ i: Int, _ pointers: [UnsafeMutablePointer<Float>?],
                                           _ body: ([UnsafeMutablePointer<Float>?]) -> Void) {
        if i == boxes.count { return body(pointers) }
        boxes[i].matrix.data.withUnsafeMutableBufferPointer { b in
            withOutputPointers(boxes, i + 1, pointers + [b.baseAddress], body)
        }
    }

    /// C = A · Bᵀ (A [m, k], B [n, k], C [m, n]) for raw pointers with leading dimensions.
    /// (`beta` 1 adds to C.)
    public static func sgemmABT(_ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                                _ c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// C = Aᵀ · B (A [k, m], B [k, n], C [m, n]).
    public static func sgemmATB(_ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                                _ c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int, k: Int) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }

    /// C = A · B (A [m, k], B [k, n], C [m, n]).
    public static func sgemmAB(_ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                               _ c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int, k: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }

    /// y = A · x (A [m, n], row stride lda) — or Aᵀ · x with `transposed` (x has m entries, y n).
    public static func gemv(_ a: UnsafePointer<Float>, lda: Int, m: Int, n: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                            transposed: Bool = false, alpha: Float = 1) {
        cblas_sgemv(CblasRowMajor, transposed ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, 0, y, 1)
    }

    /// OpenBLAS runs single-threaded: parallelism comes from our own tiles, so the two thread
    /// pools never compete for the cores.
    public static func configureBLAS() { openblas_set_num_threads(1) }

    /// OpenBLAS with its own threads, for measuring its peak in benchmarks.
    public static func setBLASThreadsForBenchmark(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}

/// Row-wise operations of the forward pass.
public enum Ops {
    /// x ← x / sqrt(mean(x²) + eps) · weight, per row (RMSNorm, computed in f32 as the reference does).
    public static func rmsNorm(_ x: Matrix, weight: [Float], eps: Float) -> Matrix {
        precondition(weight.count == x.cols)
        var y = Matrix(rows: x.rows, cols: x.cols)
        x.data.withUnsafeBufferPointer { xb in
            y.data.withUnsafeMutableBufferPointer { yb in
                for r in 0..<x.rows {
                    let row = xb.baseAddress! + r * x.cols
                    var ss: Float = 0
                    for c in 0..<x.cols { ss += row[c] * row[c] }
                    let inv = 1 / (ss / Float(x.cols) + eps).squareRoot()
                    for c in 0..<x.cols { yb[r * x.cols + c] = weight[c] * (row[c] * inv) }
                }
            }
        }
        return y
    }

    /// In-place softmax over `count` values, with libm's `expf`: the router's, computed as the
    /// reference does (a polynomial exp could flip a near-tie between experts). Attention's rows
    /// take the vectorized `dsk_softmax_masked`.
    public static func softmax(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        var m = -Float.infinity
        for i in 0..<count { m = max(m, p[i]) }
        var s: Float = 0
        for i in 0..<count {
            let e = expf(p[i] - m)
            p[i] = e
            s += e
        }
        let inv = 1 / s
        for i in 0..<count { p[i] *= inv }
    }

    /// silu(gate) · up, elementwise.
    public static func siluMul(_ gate: Matrix, _ up: Matrix) -> Matrix {
        var y = Matrix(rows: gate.rows, cols: gate.cols)
        for i in 0..<y.data.count {
            let g = gate.data[i]
            y.data[i] = g / (1 + expf(-g)) * up.data[i]
        }
        return y
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension Linear {
    /// H (upper triangle, row-major [cols, cols]) += XᵀX for X [rows, cols] (calibration Hessians).
    public static func syrkUpperAccumulate(_ x: UnsafePointer<Float>, rows: Int, cols: Int, into h: UnsafeMutablePointer<Float>) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(cols), Int32(rows), 1, x, Int32(cols), 1, h, Int32(cols))
    }
}
