import CKernels
import COpenBLAS

/// An output matrix held by reference while threads write into its storage.
final class OutputBox {
    var matrix: Matrix
    init(_ matrix: Matrix) { self.matrix = matrix }
}

/// One y = x · Wᵀ planned for threads: the kernel chosen, the input prepared once (packed for the
/// GEMM tiles, rounded to bf16, or quantized to int8), and the output's columns (W's rows) cut
/// into pieces that any thread may run, each writing only its own columns.
final class LinearProduct: @unchecked Sendable {
    private enum Path {
        /// `dsk_gemm_xwT` of this kind over the packed input.
        case gemm(Int32)
        /// `dsk_gemm_xwT_packed` of this kind: a packed weight dequantized panel by panel inside
        /// the GEMM (few rows; `dsk_gemm_packed_applies`).
        case packedGemm(Int32)
        /// BLAS sgemm over f32 weight tiles.
        case blasTiles
        /// The direct kernels that read the stored weight once (few rows).
        case direct
        /// int4 weights × int8-quantized input rows (VNNI).
        case int8Activations
        /// One input row against BF16 weights, a weight row at a time (`dsk_matvec_bf16`); the
        /// input held split into even and odd columns, then as it is.
        case matvec
        /// The same with the input rounded to bf16, on AVX-512 BF16 dot products
        /// (`dsk_matvec_bf16dot`; `bf16Activations`).
        case matvecBF16Dot
    }

    let pieces: Int
    private let path: Path
    private let w: WeightMatrix
    private let rows: Int
    private let chunk: Int
    private let y: UnsafeMutablePointer<Float>?
    /// The input as the path reads it: f32 rows (possibly rounded to bf16), packed for the GEMM
    /// tiles, or int8 blocks with their scales and sums.
    private let x: UnsafeMutableRawPointer
    /// int8 inputs' side tables: block scales, and the int8 weights' block sums (128 · Σ codes)
    /// or the int4 weights' per-group offset corrections.
    private var q8: (scales: UnsafeMutablePointer<Float>, sums: UnsafeMutableRawPointer)?

    /// `packThreads`: threads that prepare the input (1 where several products are planned at once,
    /// each by its own thread).
    init(x input: Matrix, w: WeightMatrix, output: UnsafeMutablePointer<Float>?, threads: Int, backend: LinearBackend,
         packThreads: Int = 1) {
        precondition(input.cols == w.cols, "linear: input has \(input.cols) features, weight expects \(w.cols)")
        self.w = w
        rows = input.rows
        y = output
        let n = w.rows, k = w.cols
        var source = input
        var path: Path
        let bf16Kind = Linear.bf16Kind
        if backend == .bf16Activations && rows >= Linear.bf16GemmThreshold && (w.format == .bf16 || w.format == .packed) {
            if bf16Kind != Int32(DSK_GEMM_F32) {
                path = .gemm(bf16Kind)
            } else {
                // No bf16 kernel beats f32 FMAs here: the same rounding, then the exact kernels.
                source = Self.roundedToBF16(input)
                path = .direct
            }
        } else {
            path = .direct
        }
        if case .direct = path {
            if backend == .reference || rows >= Linear.gemmThreshold || w.format == .f16 {
                path = Linear.exactGemm.kind.map { .gemm($0) } ?? .blasTiles
            } else if backend == .fastInt8Activations, let p = w.packing, rows <= 4,
                      dsk_q8act_supported(Int32(p.bits), k, p.groupSize, p.zeroPoint == nil ? 0 : 1) != 0 {
                path = .int8Activations
            }
        }
        if case .gemm(let kind) = path, w.format == .packed, dsk_gemm_packed_applies(kind, rows) != 0 { path = .packedGemm(kind) }
        if case .direct = path, rows == 1, w.format == .bf16 {
            // The input rounded to bf16 where asked for: by `bf16Activations`, and by
            // `fastInt8Activations` for the weights it leaves in BF16 (lm_head), as llama.cpp's
            // Q4_0/Q8_0 decode does; on AVX-512 BF16 dot products where the CPU has them.
            let roundsInput = backend == .bf16Activations || backend == .fastInt8Activations
            if roundsInput && dsk_matvec_bf16dot_supported() != 0 {
                path = .matvecBF16Dot
            } else {
                if roundsInput { source = Self.roundedToBF16(input) }
                if dsk_matvec_bf16_supported() != 0 && k <= Linear.matvecMaxColumns { path = .matvec }
            }
        }
        self.path = path
        // Pieces: whole converted tiles where the weight is converted first; else about four per
        // thread, in multiples of 96 rows (the tiles' 6 and AMX's 32) or 16 for the direct kernels.
        var converts = w.format == .packed || w.format == .f16
        if case .packedGemm = path { converts = false }  // the GEMM dequantizes its own panels
        switch path {
        case .gemm, .packedGemm, .blasTiles:
            chunk = converts ? Linear.tileRows : max(96, (n + threads * 4 - 1) / (threads * 4) / 96 * 96 + 96)
        case .direct, .int8Activations, .matvec, .matvecBF16Dot:
            if rows == 1 {
                // Decode: pieces of `Linear.decodePieceBytes` of weight rows, handed out in order,
                // so the threads read neighbouring memory at any moment rather than each its own
                // far-apart half of the matrix.
                let piece = Linear.decodePieceBytes(matrixBytes: n * w.rowBytes, threads: threads)
                chunk = max(8, piece / max(w.rowBytes, 1) / 8 * 8)
            } else {
                chunk = max(16, (n + threads * 8 - 1) / (threads * 8))
            }
        }
        pieces = rows == 0 || output == nil ? 0 : (n + chunk - 1) / chunk

        switch path {
        case .gemm(let kind), .packedGemm(let kind):
            let count = dsk_gemm_packed_x_count(rows, k, kind)
            let bytes = count * (Linear.isExact(kind) ? 4 : 2)
            x = .allocate(byteCount: max(bytes, 64), alignment: 64)
            // Row blocks packed by several threads where the input is large (prefill's dense
            // projections): a serial step here would bound scaling with cores.
            let block = dsk_gemm_x_row_block(kind, rows), padded = (rows + block - 1) / block * block
            let workers = rows * k >= 1 << 16 ? packThreads : 1
            let perChunk = max(1, (padded / block + workers * 2 - 1) / (workers * 2)) * block
            let out = UnsafeSendable(x)
            source.data.withUnsafeBufferPointer { s in
                let src = UnsafeSendable(s.baseAddress!)
                parallelFor((padded + perChunk - 1) / perChunk, threads: workers) { c in
                    dsk_gemm_pack_x_rows(src.value, rows, k, k, kind, out.value, c * perChunk, min(padded, (c + 1) * perChunk))
                }
            }
        case .int8Activations:
            // Per row: int8 codes, then one scale per 64-column block and, for int8 weights,
            // 128 · Σ codes per block, for int4 weights the codes' offset correction per group
            // (`dsk_q8act_quantize`).
            let eight = w.packing?.bits == 8
            let group = w.packing?.groupSize ?? k
            let perRow = k / 64, sidePerRow = eight ? k / 64 : k / group
            x = .allocate(byteCount: max(rows * k, 1), alignment: 64)
            let scales = UnsafeMutablePointer<Float>.allocate(capacity: rows * perRow)
            let sums = UnsafeMutableRawPointer.allocate(byteCount: max(rows * sidePerRow, 1) * 4, alignment: 64)
            let xq = x.assumingMemoryBound(to: Int8.self)
            source.data.withUnsafeBufferPointer { xb in
                for r in 0..<rows {
                    // int4 codes interleave even and odd columns; int8 codes lie in column order
                    if eight {
                        dsk_q8act_quantize8(xb.baseAddress! + r * k, k, xq + r * k, scales + r * perRow,
                                            sums.assumingMemoryBound(to: Int32.self) + r * sidePerRow)
                    } else {
                        dsk_q8act_quantize(xb.baseAddress! + r * k, k, group, xq + r * k, scales + r * perRow,
                                           sums.assumingMemoryBound(to: Float.self) + r * sidePerRow)
                    }
                }
            }
            q8 = (scales, sums)
        case .matvec:
            let split = dsk_matvec_split_count(k)
            x = .allocate(byteCount: (split + k) * 4, alignment: 64)
            let xs = x.assumingMemoryBound(to: Float.self)
            source.data.withUnsafeBufferPointer { s in
                dsk_matvec_split_x(s.baseAddress!, k, xs)
                (xs + split).update(from: s.baseAddress!, count: k)
            }
        case .matvecBF16Dot:
            x = .allocate(byteCount: max(k * 2, 64), alignment: 64)
            source.data.withUnsafeBufferPointer { dsk_f32_to_bf16($0.baseAddress!, x.assumingMemoryBound(to: UInt16.self), k) }
        case .blasTiles, .direct:
            x = .allocate(byteCount: max(source.data.count * 4, 4), alignment: 64)
            source.data.withUnsafeBytes { x.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
    }

    private static func roundedToBF16(_ input: Matrix) -> Matrix {
        var out = Matrix(rows: input.rows, cols: input.cols)
        input.data.withUnsafeBufferPointer { i in
            out.data.withUnsafeMutableBufferPointer { dsk_round_bf16_f32(i.baseAddress!, i.count, $0.baseAddress!) }
        }
        return out
    }

    deinit {
        x.deallocate()
        if let q = q8 {
            q.scales.deallocate()
            q.sums.deallocate()
        }
    }

    /// Output columns [piece · chunk, …) of every row.
    func run(_ piece: Int) {
        guard let y else { return }
        let n = w.rows, k = w.cols
        let n0 = piece * chunk, n1 = min(n, n0 + chunk), count = n1 - n0
        let wp = w.bytes.baseAddress!
        let xf = x.assumingMemoryBound(to: Float.self)
        switch path {
        case .gemm(let kind):
            if w.format == .bf16 || w.format == .f32 {
                dsk_gemm_xwT(x, rows, k, wp, w.format == .bf16 ? 1 : 0, n0, n1, y + n0, n, kind)
                return
            }
            // Packed or F16: this piece's rows converted first (exactly: packed values are bf16, so
            // the bf16 kinds take them dequantized straight to bf16).
            let tile = w.rowSlice(n0, count)
            if !Linear.isExact(kind), let p = tile.packing {
                let b16 = UnsafeMutablePointer<UInt16>.allocate(capacity: count * k)
                defer { b16.deallocate() }
                dsk_dequant_packed(tile.bytes.baseAddress!.assumingMemoryBound(to: Int32.self), count, k, Int32(p.bits), p.groupSize,
                                   p.scale, p.zeroPoint, b16)
                dsk_gemm_xwT(x, rows, k, b16, 1, 0, count, y + n0, n, kind)
                return
            }
            let f32 = UnsafeMutablePointer<Float>.allocate(capacity: count * k)
            defer { f32.deallocate() }
            tile.convert(into: f32)
            dsk_gemm_xwT(x, rows, k, f32, 0, 0, count, y + n0, n, kind)
        case .packedGemm(let kind):
            guard let p = w.packing else { return }
            let packed = dsk_packed_weight(words: wp.assumingMemoryBound(to: Int32.self), bits: Int32(p.bits), group: p.groupSize,
                                           scale: p.scale, zp: p.zeroPoint)
            dsk_gemm_xwT_packed(x, rows, k, packed, n0, n1, y + n0, n, kind)
        case .blasTiles:
            let tile = w.rowSlice(n0, count)
            if w.format == .f32 {
                Linear.sgemmABT(xf, lda: k, wp.assumingMemoryBound(to: Float.self) + n0 * k, ldb: k, y + n0, ldc: n, m: rows, n: count, k: k)
                return
            }
            let f32 = UnsafeMutablePointer<Float>.allocate(capacity: count * k)
            defer { f32.deallocate() }
            tile.convert(into: f32)
            Linear.sgemmABT(xf, lda: k, f32, ldb: k, y + n0, ldc: n, m: rows, n: count, k: k)
        case .int8Activations:
            guard let p = w.packing, let q = q8 else { return }
            let xq = x.assumingMemoryBound(to: Int8.self), words = wp.assumingMemoryBound(to: Int32.self)
            if p.bits == 8 {
                dsk_matmul_q8act_packed8(xq, q.scales, q.sums.assumingMemoryBound(to: Int32.self), rows, k, words, p.groupSize, p.scale,
                                         n0, n1, y + n0, n)
            } else {
                dsk_matmul_q8act_packed4(xq, q.scales, q.sums.assumingMemoryBound(to: Float.self), rows, k, words, p.groupSize, p.scale,
                                         n0, n1, y + n0, n)
            }
        case .matvec:
            dsk_matvec_bf16(xf, xf + dsk_matvec_split_count(k), k, wp.assumingMemoryBound(to: UInt16.self), n0, n1, y + n0)
        case .matvecBF16Dot:
            dsk_matvec_bf16dot(x.assumingMemoryBound(to: UInt16.self), k, wp.assumingMemoryBound(to: UInt16.self), n0, n1, y + n0)
        case .direct:
            switch w.format {
            case .bf16:
                dsk_matmul_xwT_bf16(xf, rows, k, wp.assumingMemoryBound(to: UInt16.self), k, n0, n1, y + n0, n)
            case .packed:
                guard let p = w.packing else { return }
                dsk_matmul_xwT_packed(xf, rows, k, wp.assumingMemoryBound(to: Int32.self), k, Int32(p.bits), p.groupSize, p.scale,
                                      p.zeroPoint, n0, n1, y + n0, n)
            default:
                dsk_matmul_xwT_f32(xf, rows, k, wp.assumingMemoryBound(to: Float.self), k, n0, n1, y + n0, n)
            }
        }
    }
}
