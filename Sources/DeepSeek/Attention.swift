import CKernels
import Foundation
import Kernels

/// How attention reads the latent cache.
public enum AttentionPath: Sendable {
    /// Per-head K and V rebuilt from the latents through kv_b (the training-time form).
    case naive
    /// kv_b folded into the query (k side) and the output (v side); attention runs in latent space.
    case absorbed
    /// Naive for prefill, absorbed for single-token decode.
    case auto
}

/// Multi-head Latent Attention of one layer.
struct MLA {
    /// Query rows whose scores are held at once in the naive (prefill) path. A block meets only the
    /// keys its last row sees, so smaller blocks skip more of the causal mask's zeros: at 64 rows a
    /// 512-token prefill computes 56% of the full T × S scores instead of 75% at 256.
    static let queryBlock = 64

    let config: ModelConfig
    let layer: Int
    let rope: RopeParameters
    let threads: Int
    var observer: LinearObserver? = nil
    var backend: LinearBackend = .fast

    var project: (WeightSource) -> Projector {
        { Projector(weights: $0, threads: threads, observer: observer, backend: backend) }
    }

    var heads: Int { config.numAttentionHeads }
    var nope: Int { config.qkNopeHeadDim }
    var ropeDim: Int { config.qkRopeHeadDim }
    var qDim: Int { config.qHeadDim }
    var vDim: Int { config.vHeadDim }
    var rank: Int { config.kvLoraRank }

    /// x: normalized hidden states [T, hidden] at positions start..<start+T. Appends this
    /// layer's latents to the cache and returns o_proj's output [T, hidden].
    func forward(_ x: Matrix, start: Int, cache: KVCache, weights: WeightSource, path: AttentionPath) throws -> Matrix {
        let t = x.rows
        let project = self.project(weights)
        // q = q_b(RMSNorm(q_a(x))) or q_proj(x): [T, heads·(nope+rope)].
        var q: Matrix
        if config.qLoraRank != nil {
            let qa = try project(.qA(layer: layer), x)
            let qn = Ops.rmsNorm(qa, weight: try weights.vector(.qANorm(layer: layer)), eps: 1e-6)
            q = try project(.qB(layer: layer), qn)
        } else {
            q = try project(.q(layer: layer), x)
        }
        // kv_a(x) = [c_kv | k_pe]: [T, rank + rope].
        let kva = try project(.kvA(layer: layer), x)
        let ckv = Ops.rmsNorm(kva.columns(0, rank), weight: try weights.vector(.kvANorm(layer: layer)), eps: 1e-6)
        var kpe = kva.columns(rank, ropeDim)
        // Rope on q_pe (per head) and k_pe (shared).
        for i in 0..<t {
            let (c, s) = rope.cosSin(position: start + i)
            q.data.withUnsafeMutableBufferPointer { qb in
                for h in 0..<heads { RopeParameters.rotate(qb.baseAddress! + i * heads * qDim + h * qDim + nope, cos: c, sin: s) }
            }
            kpe.data.withUnsafeMutableBufferPointer { kb in RopeParameters.rotate(kb.baseAddress! + i * ropeDim, cos: c, sin: s) }
        }
        // Cache rows: [c_kv | k_pe].
        var rows = [Float](repeating: 0, count: t * (rank + ropeDim))
        for i in 0..<t {
            for c in 0..<rank { rows[i * (rank + ropeDim) + c] = ckv[i, c] }
            for c in 0..<ropeDim { rows[i * (rank + ropeDim) + rank + c] = kpe[i, c] }
        }
        cache.append(layer: layer, rows: rows)
        let kvb = try weights.matrix(.kvB(layer: layer))
        let useAbsorbed: Bool
        switch path {
        case .naive: useAbsorbed = false
        case .absorbed: useAbsorbed = true
        case .auto: useAbsorbed = t == 1 && start > 0
        }
        let attn = useAbsorbed
            ? absorbed(q: q, start: start, latents: cache.storage[layer], kvb: kvb)
            : naive(q: q, start: start, latents: cache.storage[layer], kvb: kvb, project: project)
        return try project(.o(layer: layer), attn)
    }

    /// The GEMM kind of the prefill attention core (Q·Kᵀ and P·V per head): the bf16 tiles where
    /// `bf16Activations` rounds a prompt's activations anyway; else our exact f32 tiles; nil (CPUs
    /// with neither AVX-512F nor AVX2): BLAS sgemm.
    func coreKind(rows: Int) -> Int32? {
        if backend == .bf16Activations && rows >= Linear.bf16GemmThreshold && Linear.bf16Kind != Int32(DSK_GEMM_F32) {
            return Linear.bf16Kind
        }
        return Linear.exactGemm.kind
    }

    /// Full per-head K/V from the latents: k_nope, v = split(kv_b(c_kv)). Returns [T, heads·v].
    func naive(q: Matrix, start: Int, latents: [Float], kvb: WeightMatrix, project: Projector) -> Matrix {
        let t = q.rows
        let s = start + t
        let w = rank + ropeDim
        let latent = Matrix(rows: s, cols: w, data: latents).columns(0, rank)
        if start == 0 { observer?.linearInput(.kvB(layer: layer), latent) }  // the layer's tokens, once
        let kv = project.apply(latent, kvb)  // [S, heads·(nope+v)]
        var out = Matrix(rows: t, cols: heads * vDim)
        let scale = rope.softmaxScale
        let qd = qDim, nope = nope, ropeDim = ropeDim, vDim = vDim, heads = heads, rank = rank
        let qp = UnsafeSendable(q), kvp = UnsafeSendable(kv)
        let lat = UnsafeSendable(latents)
        let kind = coreKind(rows: t)
        // Each head reads its Q, K and V in place or from its own copies and writes its own
        // columns of `out` (disjoint). scores = scale · (Q_nope K_nopeᵀ + Q_pe K_peᵀ); causal
        // softmax; o = P V_h, a block of query rows at a time so that the scores never exceed
        // queryBlock × S (memory linear in the prompt), each block meeting only the keys its last
        // row sees.
        out.data.withUnsafeMutableBufferPointer { outBuffer in
            let outp = UnsafeSendable(outBuffer.baseAddress!)
            parallelFor(heads, threads: threads) { h in
                let q = qp.value, kv = kvp.value
                let kvw = heads * (nope + vDim), qRow = heads * qd
                let block = Swift.max(1, Swift.min(t, MLA.queryBlock))
                var scores = [Float](repeating: 0, count: block * s)
                q.data.withUnsafeBufferPointer { qb in
                    kv.data.withUnsafeBufferPointer { kb in
                        lat.value.withUnsafeBufferPointer { lb in
                            scores.withUnsafeMutableBufferPointer { sb in
                                let qh = qb.baseAddress! + h * qd, kh = kb.baseAddress! + h * (nope + vDim)
                                if let kind {
                                    Self.tiledCore(kind: kind, q: qh, qRow: qRow, t: t, start: start, block: block, keys: kh, kvRow: kvw,
                                                   kpe: lb.baseAddress! + rank, latentRow: w, nope: nope, ropeDim: ropeDim, vDim: vDim,
                                                   scale: scale, scores: sb.baseAddress!, out: outp.value + h * vDim, outRow: heads * vDim)
                                    return
                                }
                                var i0 = 0
                                while i0 < t {
                                    let m = Swift.min(block, t - i0)
                                    let keys = start + i0 + m
                                    Linear.sgemmABT(qh + i0 * qRow, lda: qRow, kh, ldb: kvw, sb.baseAddress!, ldc: keys,
                                                    m: m, n: keys, k: nope)
                                    Linear.sgemmABT(qh + i0 * qRow + nope, lda: qRow, lb.baseAddress! + rank, ldb: w, sb.baseAddress!, ldc: keys,
                                                    m: m, n: keys, k: ropeDim, beta: 1)
                                    for i in 0..<m { dsk_softmax_masked(sb.baseAddress! + i * keys, start + i0 + i + 1, keys, scale) }
                                    Linear.sgemmAB(sb.baseAddress!, lda: keys, kh + nope, ldb: kvw, outp.value + i0 * heads * vDim + h * vDim,
                                                   ldc: heads * vDim, m: m, n: vDim, k: keys)
                                    i0 += m
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// One head's attention core on our GEMM tiles (`dsk_gemm_xwT_ld`). The head's keys
    /// [S, nope + rope] (k_nope from kv_b's output, k_pe from the latents) and its values
    /// transposed [v, S] are copied once into the kind's weight format (bf16, rounded, for the bf16
    /// kinds; f32 for the exact ones), then each query block is packed, multiplied by the keys,
    /// soft-maxed, packed again and multiplied by the values. The exact kinds sum in another order
    /// than BLAS, nothing else.
    static func tiledCore(kind: Int32, q: UnsafePointer<Float>, qRow: Int, t: Int, start: Int, block: Int,
                          keys kh: UnsafePointer<Float>, kvRow: Int, kpe: UnsafePointer<Float>, latentRow: Int,
                          nope: Int, ropeDim: Int, vDim: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
                          out: UnsafeMutablePointer<Float>, outRow: Int) {
        let s = start + t, qd = nope + ropeDim
        let bf16 = dsk_gemm_is_f32(kind) == 0, esize = bf16 ? 2 : 4
        let keys = UnsafeMutableRawPointer.allocate(byteCount: s * qd * esize, alignment: 64)
        let values = UnsafeMutableRawPointer.allocate(byteCount: vDim * s * esize, alignment: 64)
        let packedCount = Swift.max(dsk_gemm_packed_x_count(block, qd, kind), dsk_gemm_packed_x_count(block, s, kind))
        let packed = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(packedCount * esize, 64), alignment: 64)
        defer {
            keys.deallocate()
            values.deallocate()
            packed.deallocate()
        }
        for j in 0..<s {
            if bf16 {
                let row = keys.assumingMemoryBound(to: UInt16.self) + j * qd
                dsk_round_bf16(kh + j * kvRow, nope, row)
                dsk_round_bf16(kpe + j * latentRow, ropeDim, row + nope)
            } else {
                let row = keys.assumingMemoryBound(to: Float.self) + j * qd
                row.update(from: kh + j * kvRow, count: nope)
                (row + nope).update(from: kpe + j * latentRow, count: ropeDim)
            }
        }
        dsk_transpose_rows(kh + nope, s, vDim, kvRow, bf16 ? 1 : 0, values, s)
        var i0 = 0
        while i0 < t {
            let m = Swift.min(block, t - i0)
            let visibleKeys = start + i0 + m
            dsk_gemm_pack_x(q + i0 * qRow, m, qRow, qd, kind, packed)
            dsk_gemm_xwT_ld(packed, m, qd, keys, qd, bf16 ? 1 : 0, 0, visibleKeys, scores, visibleKeys, kind)
            for i in 0..<m { dsk_softmax_masked(scores + i * visibleKeys, start + i0 + i + 1, visibleKeys, scale) }
            dsk_gemm_pack_x(scores, m, visibleKeys, visibleKeys, kind, packed)
            dsk_gemm_xwT_ld(packed, m, visibleKeys, values, s, bf16 ? 1 : 0, 0, vDim, out + i0 * outRow, outRow, kind)
            i0 += m
        }
    }

    /// Attention in latent space: q̃_h = W_kb,hᵀ q_nope,h; score = q̃_h·c_kv + q_pe,h·k_pe;
    /// o_h = W_vb,h (Σ p · c_kv). Returns [T, heads·v].
    func absorbed(q: Matrix, start: Int, latents: [Float], kvb: WeightMatrix) -> Matrix {
        if backend != .reference && (kvb.format == .bf16 || kvb.format == .packed) {
            return absorbedFast(q: q, start: start, latents: latents, kvb: kvb)
        }
        let t = q.rows
        let s = start + t
        let w = rank + ropeDim
        var out = Matrix(rows: t, cols: heads * vDim)
        let scale = rope.softmaxScale
        let qd = qDim, nope = nope, ropeDim = ropeDim, vDim = vDim, heads = heads, rank = rank
        let qp = UnsafeSendable(q), lat = UnsafeSendable(latents), wp = UnsafeSendable(kvb)
        let results = Locked([Int: [Float]]())
        parallelFor(heads, threads: threads) { h in
            let q = qp.value, latents = lat.value
            // Head h's rows of kv_b in f32 (exact), converted by the thread that uses them: one
            // head's block stays in cache, and no whole-matrix copy is made per token.
            let wkv = wp.value.rowSlice(h * (nope + vDim), nope + vDim).toF32()  // [nope + v, rank]
            let kRows = 0  // k_nope rows of head h in its block
            let vRows = nope
            var o = [Float](repeating: 0, count: t * vDim)
            var qt = [Float](repeating: 0, count: rank)
            var scores = [Float](repeating: 0, count: s)
            var latentOut = [Float](repeating: 0, count: rank)
            for i in 0..<t {
                let qrow = i * heads * qd + h * qd
                for c in 0..<rank { qt[c] = 0 }
                for d in 0..<nope {
                    let qv = q.data[qrow + d]
                    let wrow = (kRows + d) * rank
                    for c in 0..<rank { qt[c] += qv * wkv[wrow + c] }
                }
                let visible = start + i + 1
                for j in 0..<visible {
                    var dot: Float = 0
                    for c in 0..<rank { dot += qt[c] * latents[j * w + c] }
                    for d in 0..<ropeDim { dot += q.data[qrow + nope + d] * latents[j * w + rank + d] }
                    scores[j] = dot
                }
                scores.withUnsafeMutableBufferPointer { dsk_softmax_masked($0.baseAddress!, visible, visible, scale) }
                for c in 0..<rank { latentOut[c] = 0 }
                for j in 0..<visible {
                    let p = scores[j]
                    for c in 0..<rank { latentOut[c] += p * latents[j * w + c] }
                }
                for e in 0..<vDim {
                    var acc: Float = 0
                    let wrow = (vRows + e) * rank
                    for c in 0..<rank { acc += wkv[wrow + c] * latentOut[c] }
                    o[i * vDim + e] = acc
                }
            }
            results.withLock { $0[h] = o }
        }
        results.withLock { r in
            for h in 0..<heads {
                let o = r[h]!
                for i in 0..<t { for d in 0..<vDim { out.data[i * heads * vDim + h * vDim + d] = o[i * vDim + d] } }
            }
        }
        return out
    }

    /// The absorbed path on kv_b as stored (the fast backends), no f32 copy of it: q through
    /// k_nope's block and the latent output through v's block, with the BF16 kernels or, for a
    /// quantized kv_b (`--quantize-kv-b`), the packed ones (each row dequantized exactly as it is
    /// read), so that a quantized kv_b is read in its packed form, not converted per token.
    func absorbedFast(q: Matrix, start: Int, latents: [Float], kvb: WeightMatrix) -> Matrix {
        let t = q.rows
        let s = start + t
        let w = rank + ropeDim
        var out = Matrix(rows: t, cols: heads * vDim)
        let scale = rope.softmaxScale
        let qd = qDim, nope = nope, ropeDim = ropeDim, vDim = vDim, heads = heads, rank = rank
        let qp = UnsafeSendable(q), lat = UnsafeSendable(latents)
        let weight = kvb
        out.data.withUnsafeMutableBufferPointer { ob in
        let op = UnsafeSendable(ob.baseAddress!)
        parallelFor(heads, threads: threads) { h in
            let q = qp.value, latents = lat.value
            // The head's k_nope rows and v rows of kv_b, as weights of their own (views).
            let kRows = weight.rowSlice(h * (nope + vDim), nope), vRows = weight.rowSlice(h * (nope + vDim) + nope, vDim)
            var rowScratch = [Float](repeating: 0, count: kRows.packing == nil ? 0 : rank)
            // [q̃ | q_pe]: the query against a whole cache row [c_kv | k_pe].
            var qFull = [Float](repeating: 0, count: w)
            var scores = [Float](repeating: 0, count: s)
            var latentOut = [Float](repeating: 0, count: rank)
            var latentSplit = [Float](repeating: 0, count: max(dsk_matvec_split_count(rank), 1))
            for i in 0..<t {
                let qrow = i * heads * qd + h * qd
                q.data.withUnsafeBufferPointer { qb in
                    qFull.withUnsafeMutableBufferPointer { qf in
                        if let p = kRows.packing {
                            rowScratch.withUnsafeMutableBufferPointer { tmp in
                                dsk_rows_axpy_packed(qb.baseAddress! + qrow, nope, kRows.bytes.baseAddress!.assumingMemoryBound(to: Int32.self), rank,
                                                     Int32(p.bits), p.groupSize, p.scale, p.zeroPoint, tmp.baseAddress!, qf.baseAddress!)
                            }
                        } else {
                            dsk_rows_axpy_bf16(qb.baseAddress! + qrow, nope, kRows.bytes.baseAddress!.assumingMemoryBound(to: UInt16.self), rank,
                                               qf.baseAddress!)
                        }
                    }
                }
                for d in 0..<ropeDim { qFull[rank + d] = q.data[qrow + nope + d] }
                let visible = start + i + 1
                // scores = scale · [c_kv | k_pe] · [q̃ | q_pe] over the visible latents (one gemv
                // over whole cache rows), softmax, then the latent output Σ p · c_kv (one gemvᵀ).
                latents.withUnsafeBufferPointer { lb in
                    qFull.withUnsafeBufferPointer { qb in
                        scores.withUnsafeMutableBufferPointer { sb in
                            Linear.gemv(lb.baseAddress!, lda: w, m: visible, n: w, qb.baseAddress!, sb.baseAddress!)
                            dsk_softmax_masked(sb.baseAddress!, visible, visible, scale)
                            latentOut.withUnsafeMutableBufferPointer {
                                Linear.gemv(lb.baseAddress!, lda: w, m: visible, n: rank, sb.baseAddress!, $0.baseAddress!, transposed: true)
                            }
                        }
                    }
                }
                // Each head writes its own columns of its own rows: no two threads share an element.
                // o_h = W_vb,h · latentOut, a weight row at a time (`dsk_matvec_bf16`: rows of 512;
                // packed rows on the exact packed row kernel).
                if let p = vRows.packing {
                    latentOut.withUnsafeBufferPointer { lo in
                        dsk_matmul_xwT_packed(lo.baseAddress!, 1, rank, vRows.bytes.baseAddress!.assumingMemoryBound(to: Int32.self), rank,
                                              Int32(p.bits), p.groupSize, p.scale, p.zeroPoint, 0, vDim, op.value + i * heads * vDim + h * vDim, 1)
                    }
                    continue
                }
                latentOut.withUnsafeBufferPointer { lo in
                    latentSplit.withUnsafeMutableBufferPointer { ls in
                        dsk_matvec_split_x(lo.baseAddress!, rank, ls.baseAddress!)
                        dsk_matvec_bf16(ls.baseAddress!, lo.baseAddress!, rank, vRows.bytes.baseAddress!.assumingMemoryBound(to: UInt16.self), 0, vDim,
                                        op.value + i * heads * vDim + h * vDim)
                    }
                }
            }
        }
        }
        return out
    }
}
