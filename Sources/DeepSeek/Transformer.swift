import Foundation
import Kernels

/// Receives intermediate results of a forward pass (for reference tests and calibration).
public protocol ForwardObserver: AnyObject {
    /// Named activations, as the fixtures name them: `embeddings`, `layers.i.self_attn_output`,
    /// `layers.i.mlp_output`, `layers.i.hidden_states`, `layers.i.router_logits`, `final_norm`.
    func record(_ name: String, _ value: Matrix)
    func routed(layer: Int, _ routing: Routing)
}

extension ForwardObserver {
    public func record(_ name: String, _ value: Matrix) {}
    public func routed(layer: Int, _ routing: Routing) {}
}

/// The DeepSeek-V2 decoder, driven by config.json. Weights are read through `WeightSource` as
/// each layer runs, so a checkpoint larger than memory still runs (mmap pages come and go).
public final class Transformer {
    public let config: ModelConfig
    public let weights: WeightSource
    public let rope: RopeParameters
    public var threads: Int

    public init(config: ModelConfig, weights: WeightSource, threads: Int) {
        self.config = config
        self.weights = weights
        self.rope = RopeParameters(config: config)
        self.threads = threads
        Linear.configureBLAS()
        keepFreedMemoryForReuse()
    }

    public convenience init(checkpoint: Checkpoint, threads: Int) {
        self.init(config: checkpoint.config, weights: checkpoint, threads: threads)
    }

    /// Runs `tokens` at positions cache.length..., appending to the cache. Returns logits
    /// [T, vocab] when `allLogits`, else [1, vocab] for the last token.
    public func forward(_ tokens: [Int], cache: KVCache, path: AttentionPath = .auto, allLogits: Bool = false,
                        observer: ForwardObserver? = nil) throws -> Matrix {
        guard !tokens.isEmpty else { throw ModelError.badInput("forward: no tokens") }
        let start = cache.length
        // Embedding: rows of embed_tokens.
        let embed = try weights.matrix(.embedding)
        var x = Matrix(rows: tokens.count, cols: config.hiddenSize)
        for (i, id) in tokens.enumerated() {
            guard id >= 0 && id < embed.rows else {
                throw ModelError.badInput("token id \(id) is outside the vocabulary (0..<\(embed.rows))")
            }
            let row = embed.rowSlice(id, 1).toF32()
            for c in 0..<config.hiddenSize { x.data[i * config.hiddenSize + c] = row[c] }
        }
        observer?.record("embeddings", x)
        let eps = Float(config.rmsNormEps)
        for l in 0..<config.numHiddenLayers {
            // h = x + attn(norm(x)); x' = h + mlp(norm(h)).
            let xn = Ops.rmsNorm(x, weight: try weights.vector(.inputNorm(layer: l)), eps: eps)
            let attention = MLA(config: config, layer: l, rope: rope, threads: threads)
            let a = try attention.forward(xn, start: start, cache: cache, weights: weights, path: path)
            observer?.record("layers.\(l).self_attn_output", a)
            x += a
            let hn = Ops.rmsNorm(x, weight: try weights.vector(.postAttentionNorm(layer: l)), eps: eps)
            let m: Matrix
            if config.isMoELayer(l) {
                let (out, logits, routing) = try MoELayer(config: config, layer: l, threads: threads).forward(hn, weights: weights)
                observer?.record("layers.\(l).router_logits", logits)
                observer?.routed(layer: l, routing)
                m = out
            } else {
                m = mlp(hn, gate: try weights.matrix(.denseMLP(layer: l, .gate)), up: try weights.matrix(.denseMLP(layer: l, .up)),
                        down: try weights.matrix(.denseMLP(layer: l, .down)), threads: threads)
            }
            observer?.record("layers.\(l).mlp_output", m)
            x += m
            observer?.record("layers.\(l).hidden_states", x)
        }
        cache.advance(by: tokens.count)
        var final = Ops.rmsNorm(x, weight: try weights.vector(.finalNorm), eps: eps)
        observer?.record("final_norm", final)
        if !allLogits { final = final.gatherRows([final.rows - 1]) }
        let head = try weights.matrix(config.tieWordEmbeddings ? .embedding : .lmHead)
        return Linear.apply(final, head, threads: threads)
    }
}
