import CKernels
import Foundation
import Kernels
import Quantization
import Testing

@testable import DeepSeek

/// The prefill attention core on our GEMM tiles (`MLA.tiledCore`) against attention computed in
/// double: a cached prefix (start > 0), query blocks with a short last one, heads read from rows
/// that hold other heads, head widths that are and are not multiples of the tiles' 32.
@Suite struct AttentionCoreTests {
    struct Shape: CustomStringConvertible, Sendable {
        let nope, rope, v, start, t, block: Int
        var description: String { "nope \(nope) rope \(rope) v \(v), \(start)+\(t) tokens, blocks of \(block)" }
    }

    static func random(_ count: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<count).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(s >> 40) % 2001 - 1000) / 1000
        }
    }

    /// out [t, v] of one head in double; `round` applies to Q, K, V and the probabilities (the
    /// bf16 kinds' roundings) or leaves them (exact kinds).
    static func reference(_ sh: Shape, q: [Float], qRow: Int, kv: [Float], kvRow: Int, lat: [Float], latRow: Int, kpeAt: Int,
                          scale: Float) -> [Double] {
        let s = sh.start + sh.t
        var out = [Double](repeating: 0, count: sh.t * sh.v)
        for i in 0..<sh.t {
            let visible = sh.start + i + 1
            var sc = [Double](repeating: 0, count: visible)
            for j in 0..<visible {
                var d = 0.0
                for c in 0..<sh.nope { d += Double(q[i * qRow + c]) * Double(kv[j * kvRow + c]) }
                for c in 0..<sh.rope { d += Double(q[i * qRow + sh.nope + c]) * Double(lat[j * latRow + kpeAt + c]) }
                sc[j] = d * Double(scale)
            }
            let m = sc.max() ?? 0
            let e = sc.map { Foundation.exp($0 - m) }, sum = e.reduce(0, +)
            for c in 0..<sh.v {
                var o = 0.0
                for j in 0..<visible { o += e[j] / sum * Double(kv[j * kvRow + sh.nope + c]) }
                out[i * sh.v + c] = o
            }
            _ = s
        }
        return out
    }

    @Test(arguments: [Shape(nope: 16, rope: 8, v: 16, start: 5, t: 70, block: 64), Shape(nope: 128, rope: 64, v: 128, start: 0, t: 9, block: 64),
                      Shape(nope: 128, rope: 64, v: 128, start: 30, t: 100, block: 32)])
    func tiledCoreMatchesDouble(_ sh: Shape) {
        let s = sh.start + sh.t, qd = sh.nope + sh.rope
        let qRow = 3 * qd + 5, kvRow = 2 * (sh.nope + sh.v) + 3, latRow = 40 + sh.rope, kpeAt = 40
        let q = Self.random(sh.t * qRow, seed: 1), kv = Self.random(s * kvRow, seed: 2), lat = Self.random(s * latRow, seed: 3)
        let scale = 1 / Float(qd).squareRoot()
        let kinds = [Linear.exactGemm.kind, Linear.bf16Kind == Int32(DSK_GEMM_F32) ? nil : Linear.bf16Kind].compactMap { $0 }
        let ref = Self.reference(sh, q: q, qRow: qRow, kv: kv, kvRow: kvRow, lat: lat, latRow: latRow, kpeAt: kpeAt, scale: scale)
        for kind in kinds {
            let outRow = sh.v + 7
            var out = [Float](repeating: .nan, count: sh.t * outRow)
            var scores = [Float](repeating: .nan, count: sh.block * s)
            q.withUnsafeBufferPointer { qb in
                kv.withUnsafeBufferPointer { kb in
                    lat.withUnsafeBufferPointer { lb in
                        scores.withUnsafeMutableBufferPointer { sb in
                            out.withUnsafeMutableBufferPointer { ob in
                                MLA.tiledCore(kind: kind, q: qb.baseAddress!, qRow: qRow, t: sh.t, start: sh.start, block: sh.block,
                                              keys: kb.baseAddress!, kvRow: kvRow, kpe: lb.baseAddress! + kpeAt, latentRow: latRow,
                                              nope: sh.nope, ropeDim: sh.rope, vDim: sh.v, scale: scale, scores: sb.baseAddress!,
                                              out: ob.baseAddress!, outRow: outRow)
                            }
                        }
                    }
                }
            }
            var e = 0.0, r = 0.0
            for i in 0..<sh.t {
                for c in 0..<sh.v {
                    let d = Double(out[i * outRow + c]) - ref[i * sh.v + c]
                    e += d * d
                    r += ref[i * sh.v + c] * ref[i * sh.v + c]
                }
                #expect(out[(i * outRow + sh.v)..<(i * outRow + outRow)].allSatisfy { $0.isNaN }, "\(sh): written past the head's columns")
            }
            let rel = (e / r).squareRoot()
            // exact kinds: f32 sums; bf16 kinds: Q, K, V and P rounded (2^-9 each)
            let bound = dsk_gemm_is_f32(kind) != 0 ? 1e-5 : 1.5e-2
            #expect(rel <= bound, "kind \(kind) \(sh): relative L2 \(rel)")
        }
    }
}

/// The absorbed decode attention over a quantized kv_b (`--quantize-kv-b`): read packed by the
/// fast backend (rows dequantized exactly as they are read) it matches the reference backend's
/// whole-head f32 conversion, int4 and int8, symmetric and with zero points.
@Suite struct QuantizedKvBAbsorbedTests {
    @Test(arguments: [(4, true), (4, false), (8, true)])
    func packedKvBMatchesReference(bits: Int, symmetric: Bool) throws {
        let sizes = SynthSizes(layers: 1, experts: 4, hidden: 64, vocab: 100)
        let config = try Synth.config(like: .deepseekV25, sizes: sizes)
        let heads = config.numAttentionHeads, nope = config.qkNopeHeadDim, v = config.vHeadDim, rank = config.kvLoraRank
        let qd = config.qHeadDim, w = rank + config.qkRopeHeadDim
        let rows = heads * (nope + v)
        let group = min(rank, 32)
        let weights = AttentionCoreTests.random(rows * rank, seed: 7).map { UInt16(($0 * 0.05).bitPattern >> 16) }
        let q = weights.withUnsafeBufferPointer {
            RoundToNearest.quantize($0.baseAddress!, rows: rows, cols: rank, scheme: QuantScheme(bits: bits, groupSize: group, symmetric: symmetric))
        }
        let start = 6, t = 1
        let query = Matrix(rows: t, cols: heads * qd, data: AttentionCoreTests.random(t * heads * qd, seed: 8))
        let latents = AttentionCoreTests.random((start + t) * w, seed: 9)
        var outputs: [LinearBackend: [Float]] = [:]
        let zp = q.zeroPoint ?? []
        q.packed.withUnsafeBytes { p in
            q.scale.withUnsafeBufferPointer { s in
                zp.withUnsafeBufferPointer { z in
                    let layout = PackedLayout(bits: bits, groupSize: group, scale: s.baseAddress!, zeroPoint: symmetric ? nil : z.baseAddress)
                    let kvb = WeightMatrix(bytes: p, format: .packed, rows: rows, cols: rank, owner: nil, packing: layout)
                    for backend in [LinearBackend.reference, .fast] {
                        let mla = MLA(config: config, layer: 0, rope: RopeParameters(config: config), threads: 2, backend: backend)
                        outputs[backend] = mla.absorbed(q: query, start: start, latents: latents, kvb: kvb).data
                    }
                }
            }
        }
        let a = outputs[.reference] ?? [], b = outputs[.fast] ?? []
        #expect(a.count == t * heads * v && b.count == a.count)
        let e = zip(a, b).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }, r = a.reduce(0.0) { $0 + Double($1 * $1) }
        #expect(r > 0 && (e / r).squareRoot() <= 1e-5, "int\(bits)\(symmetric ? "" : " asymmetric"): relative L2 \((e / max(r, 1e-30)).squareRoot())")
    }
}
