import Foundation
import Kernels

/// The router's decision for each token: experts (by descending weight) and their weights.
public struct Routing: Sendable {
    public var experts: [[Int]]
    public var weights: [[Float]]
}

/// The softmax router of a MoE layer, in f32 as the original computes it.
struct Router {
    let config: ModelConfig

    /// logits [T, E] → top-k experts per token (tokens spread over `threads`).
    func route(_ logits: Matrix, threads: Int = 1) -> Routing {
        let e = logits.cols
        let k = config.numExpertsPerTok ?? 1
        let chosen = parallelMap(logits.rows, threads: threads) { t -> ([Int], [Float]) in
            var scores = (0..<e).map { logits[t, $0] }
            scores.withUnsafeMutableBufferPointer { Ops.softmax($0.baseAddress!, e) }
            var candidates = scores
            if config.topkMethod == .groupLimitedGreedy, let g = config.nGroup, let tg = config.topkGroup, g > 1 {
                // Group score = the group's best expert; keep the topk_group best groups, zero the rest.
                let size = e / g
                let groupScores = (0..<g).map { gi in scores[(gi * size)..<((gi + 1) * size)].max() ?? 0 }
                let kept = Set(topK(groupScores, tg))
                for gi in 0..<g where !kept.contains(gi) {
                    for i in (gi * size)..<((gi + 1) * size) { candidates[i] = 0 }
                }
            }
            let experts = topK(candidates, k)
            var w = experts.map { scores[$0] }
            if k > 1 && config.normTopkProb {
                let denominator = w.reduce(0, +) + 1e-20
                w = w.map { $0 / denominator }
            } else {
                w = w.map { $0 * Float(config.routedScalingFactor) }
            }
            return (experts, w)
        }
        return Routing(experts: chosen.map(\.0), weights: chosen.map(\.1))
    }

    /// Indices of the k largest values, largest first; ties go to the lower index.
    func topK(_ v: [Float], _ k: Int) -> [Int] {
        Array(v.indices.sorted { v[$0] != v[$1] ? v[$0] > v[$1] : $0 < $1 }.prefix(k))
    }
}

/// A MoE layer: Σ wᵢ·expertᵢ(x) over the routed experts, plus the shared experts.
struct MoELayer {
    let config: ModelConfig
    let layer: Int
    let threads: Int
    /// Experts held by this weight source (expert parallelism); nil: all of them.
    var localExperts: Set<Int>? = nil
    var observer: LinearObserver? = nil
    var backend: LinearBackend = .fast
    /// Calibration: every token goes through every expert (each expert's inputs are observed for
    /// all tokens); only the routed outputs enter the layer output.
    var allTokensThroughExperts = false
    /// Calibration passes over groups of routed experts leave the shared experts out.
    var includeSharedExperts = true

    /// Returns (output [T, hidden], router logits [T, E], routing).
    func forward(_ x: Matrix, weights: WeightSource) throws -> (Matrix, Matrix, Routing) {
        let project = Projector(weights: weights, threads: threads, observer: observer, backend: backend)
        let logits = try project(.router(layer: layer), x)
        let routing = Router(config: config).route(logits, threads: threads)
        var out = Matrix(rows: x.rows, cols: x.cols)
        // Gather → GEMM → weighted scatter, expert by expert (a fixed order: deterministic sums).
        var tokensOf: [Int: [(token: Int, weight: Float)]] = [:]
        for t in 0..<x.rows {
            for (e, w) in zip(routing.experts[t], routing.weights[t]) { tokensOf[e, default: []].append((t, w)) }
        }
        if allTokensThroughExperts {
            for e in 0..<logits.cols where localExperts?.contains(e) ?? true {
                let y = try project.mlp(x) { .routedExpert(layer: layer, expert: e, $0) }
                for (t, w) in tokensOf[e] ?? [] {
                    for c in 0..<x.cols { out.data[t * x.cols + c] += w * y.data[t * x.cols + c] }
                }
            }
        } else if observer == nil {
            let experts = tokensOf.keys.sorted().filter { localExperts?.contains($0) ?? true }
            let shared = includeSharedExperts && config.sharedExpertWidth > 0
            if let y = try pooledExperts(experts, tokensOf, x, shared: shared, weights: weights, into: &out) { out += y }
            return (out, logits, routing)
        } else {
            for e in tokensOf.keys.sorted() where localExperts?.contains(e) ?? true {
                let list = tokensOf[e]!
                let xe = x.gatherRows(list.map(\.token))
                let y = try project.mlp(xe) { .routedExpert(layer: layer, expert: e, $0) }
                for (i, (t, w)) in list.enumerated() {
                    for c in 0..<x.cols { out.data[t * x.cols + c] += w * y.data[i * x.cols + c] }
                }
            }
        }
        if includeSharedExperts && config.sharedExpertWidth > 0 {
            out += try project.mlp(x) { .sharedExpert(layer: layer, $0) }
        }
        return (out, logits, routing)
    }

    /// Expert weights in flight at once (decoded copies stay alive while their products run).
    static let expertBatchBytes = 1 << 30

    /// The routed experts in batches, with the shared experts in the first: every gate and up
    /// product of a batch, then every down product, run as one pool of experts × row pieces
    /// (`Linear.applyMany`), so that all cores stay busy however few tokens each expert has, and
    /// a decoded token pays two fork-joins for its experts instead of three per expert. Routed
    /// outputs are added in expert order and the shared output is returned to be added last, as
    /// the one-at-a-time path does (identical sums).
    private func pooledExperts(_ experts: [Int], _ tokensOf: [Int: [(token: Int, weight: Float)]], _ x: Matrix, shared: Bool,
                               weights: WeightSource, into out: inout Matrix) throws -> Matrix? {
        typealias Job = (input: Matrix, gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix, expert: Int?)
        var sharedOutput: Matrix? = nil
        var start = 0, first = true
        while first || start < experts.count {
            var batch: [Job] = []
            var bytes = 0
            if first && shared {
                let ws = try [MLPProjection.gate, .up, .down].map { try weights.matrix(.sharedExpert(layer: layer, $0)) }
                batch.append((x, ws[0], ws[1], ws[2], nil))
            }
            first = false
            while start < experts.count && (batch.isEmpty || bytes < Self.expertBatchBytes) {
                let e = experts[start]
                let ws = try [MLPProjection.gate, .up, .down].map { try weights.matrix(.routedExpert(layer: layer, expert: e, $0)) }
                bytes += ws.reduce(0) { $0 + $1.bytes.count }
                batch.append((Matrix(rows: 0, cols: x.cols), ws[0], ws[1], ws[2], e))
                start += 1
            }
            if batch.isEmpty { break }
            // Each routed expert's tokens, gathered in parallel.
            let pending = batch
            let inputs = parallelMap(pending.count, threads: threads) { i in
                pending[i].expert.map { x.gatherRows(tokensOf[$0, default: []].map(\.token)) } ?? x
            }
            for i in batch.indices { batch[i].input = inputs[i] }
            let gateUp = Linear.applyMany(batch.flatMap { [($0.input, $0.gate), ($0.input, $0.up)] }, threads: threads, backend: backend)
            let hidden = parallelMap(batch.count, threads: threads) { Ops.siluMul(gateUp[2 * $0], gateUp[2 * $0 + 1]) }
            let down = Linear.applyMany(batch.indices.map { (hidden[$0], batch[$0].down) }, threads: threads, backend: backend)
            // Each token's routed outputs, in expert order, added by the thread that owns the token.
            var into = [[(job: Int, row: Int, weight: Float)]](repeating: [], count: x.rows)
            for (i, job) in batch.enumerated() {
                guard let e = job.expert else {
                    sharedOutput = down[i]
                    continue
                }
                for (r, (t, w)) in tokensOf[e, default: []].enumerated() { into[t].append((i, r, w)) }
            }
            let contributions = into, cols = x.cols
            out.data.withUnsafeMutableBufferPointer { o in
                let op = UnsafeSendable(o.baseAddress!)
                let chunk = max(1, (x.rows + threads * 4 - 1) / (threads * 4))
                parallelFor((x.rows + chunk - 1) / chunk, threads: threads) { c in
                    for t in (c * chunk)..<min(contributions.count, (c + 1) * chunk) {
                        let row = op.value + t * cols
                        for (i, r, w) in contributions[t] {
                            down[i].data.withUnsafeBufferPointer { y in
                                for col in 0..<cols { row[col] += w * y[r * cols + col] }
                            }
                        }
                    }
                }
            }
        }
        return sharedOutput
    }
}
