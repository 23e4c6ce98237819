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
///
/// The pass is also exposed stage by stage (`embed`, `attention`, `feedForward`, `logits`) so that
/// a tensor-parallel driver can run one `Transformer` per rank — each over its own weights, with
/// a config whose head count and expert width are the rank's — and reduce their partial sums.
public final class Transformer {
    public let config: ModelConfig
    public let weights: WeightSource
    public let rope: RopeParameters
    public var threads: Int
    /// Vocabulary rows this weight source holds: the whole vocabulary, or a vocab-parallel slice.
    public let vocabRange: Range<Int>
    /// Routed experts this weight source holds (nil: all).
    public let localExperts: Set<Int>?
    /// Sees every projection's input (calibration).
    public var linearObserver: LinearObserver?
    /// Calibration: run every token through every routed expert (only routed outputs count).
    public var allTokensThroughExperts = false
    /// The kernels every projection runs on (`.reference` pins the sgemm path for parity tests).
    public var backend: LinearBackend = .fast

    /// How this model applies a projection: its weights, observer and backend.
    var projector: Projector { Projector(weights: weights, threads: threads, observer: linearObserver, backend: backend) }

    public init(config: ModelConfig, weights: WeightSource, threads: Int, vocabRange: Range<Int>? = nil, localExperts: Set<Int>? = nil) {
        self.config = config
        self.weights = weights
        self.rope = RopeParameters(config: config)
        self.threads = threads
        self.vocabRange = vocabRange ?? 0..<config.vocabSize
        self.localExperts = localExperts
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
        var x = try embed(tokens)
        observer?.record("embeddings", x)
        let start = cache.length
        for l in 0..<config.numHiddenLayers {
            // h = x + attn(norm(x)); x' = h + mlp(norm(h)).
            let a = try attention(layer: l, x, start: start, cache: cache, path: path)
            observer?.record("layers.\(l).self_attn_output", a)
            x += a
            let m = try feedForward(layer: l, x, observer: observer)
            observer?.record("layers.\(l).mlp_output", m)
            x += m
            observer?.record("layers.\(l).hidden_states", x)
        }
        cache.advance(by: tokens.count)
        return try logits(x, allPositions: allLogits, observer: observer)
    }

    /// Embedding rows; ids outside `vocabRange` give zero rows (a vocab-parallel partial).
    public func embed(_ tokens: [Int]) throws -> Matrix {
        guard !tokens.isEmpty else { throw ModelError.badInput("forward: no tokens") }
        let table = try weights.matrix(.embedding)
        var x = Matrix(rows: tokens.count, cols: config.hiddenSize)
        for (i, id) in tokens.enumerated() {
            guard id >= 0 && id < config.vocabSize else {
                throw ModelError.badInput("token id \(id) is outside the vocabulary (0..<\(config.vocabSize))")
            }
            guard vocabRange.contains(id) else { continue }
            let row = table.rowSlice(id - vocabRange.lowerBound, 1).toF32()
            for c in 0..<config.hiddenSize { x.data[i * config.hiddenSize + c] = row[c] }
        }
        return x
    }

    /// o_proj(MLA(RMSNorm(x))) of one layer; appends the layer's latents to the cache.
    public func attention(layer l: Int, _ x: Matrix, start: Int, cache: KVCache, path: AttentionPath = .auto) throws -> Matrix {
        let xn = Ops.rmsNorm(x, weight: try weights.vector(.inputNorm(layer: l)), eps: Float(config.rmsNormEps))
        return try MLA(config: config, layer: l, rope: rope, threads: threads, observer: linearObserver, backend: backend).forward(xn, start: start, cache: cache, weights: weights, path: path)
    }

    /// The MLP or MoE of one layer over RMSNorm(x).
    public func feedForward(layer l: Int, _ x: Matrix, observer: ForwardObserver? = nil) throws -> Matrix {
        let hn = Ops.rmsNorm(x, weight: try weights.vector(.postAttentionNorm(layer: l)), eps: Float(config.rmsNormEps))
        if config.isMoELayer(l) {
            let moe = MoELayer(config: config, layer: l, threads: threads, localExperts: localExperts, observer: linearObserver,
                               backend: backend, allTokensThroughExperts: allTokensThroughExperts)
            let (out, logits, routing) = try moe.forward(hn, weights: weights)
            observer?.record("layers.\(l).router_logits", logits)
            observer?.routed(layer: l, routing)
            return out
        }
        return try projector.mlp(hn) { .denseMLP(layer: l, $0) }
    }

    /// Calibration: the router and this model's routed experts (`localExperts`) over `hn`, the MoE
    /// input of layer `l` (RMSNorm(post_attention_layernorm) of the residual), for the linear
    /// observer to see each expert's inputs; the shared experts do not run. Lets a calibration
    /// visit a layer's experts group by group over stored inputs instead of all at once.
    public func observeRoutedExperts(layer l: Int, normalizedInput hn: Matrix) throws {
        guard config.isMoELayer(l) else { return }
        var moe = MoELayer(config: config, layer: l, threads: threads, localExperts: localExperts, observer: linearObserver,
                           backend: backend, allTokensThroughExperts: allTokensThroughExperts)
        moe.includeSharedExperts = false
        _ = try moe.forward(hn, weights: weights)
    }

    /// One whole decoder layer over a sequence starting at position 0, with a cache of its own
    /// (calibration walks the model layer by layer): x + attn(x), then + mlp of that.
    public func decoderLayer(_ l: Int, _ x: Matrix, observer: ForwardObserver? = nil) throws -> Matrix {
        try decoderLayer(l, windows: [x], observer: observer)[0]
    }

    /// Rows the batched layer (`decoderLayer(_:windows:)`) gives its MLP or MoE at once: at V2.5's
    /// routing (6 of 160 experts) about 150 rows per expert, where one 256-token window gives 10.
    public static let feedForwardBatchRows = 4096

    /// One decoder layer over independent sequences (calibration windows), each from position 0:
    /// attention window by window, then the MLP or MoE over the windows' tokens together, in
    /// batches of whole windows up to `feedForwardBatchRows` rows. The MLP and MoE act on each
    /// token alone, so each row's result is `decoderLayer`'s up to summation order; what changes
    /// is that each expert multiplies many rows at once (the GEMM's rate, not a few-row kernel's)
    /// and reads its weights once per batch instead of once per window.
    public func decoderLayer(_ l: Int, windows: [Matrix], observer: ForwardObserver? = nil) throws -> [Matrix] {
        var out = try windows.map { x -> Matrix in
            var h = x
            h += try attention(layer: l, x, start: 0, cache: KVCache(config: config), path: .naive)
            return h
        }
        var first = 0
        while first < out.count {
            var last = first + 1, rows = out[first].rows
            while last < out.count && rows + out[last].rows <= Self.feedForwardBatchRows {
                rows += out[last].rows
                last += 1
            }
            let batch = Matrix(concatenatingRows: Array(out[first..<last]))
            let m = try feedForward(layer: l, batch, observer: observer)
            var row = 0
            for w in first..<last {
                let n = out[w].rows * out[w].cols
                out[w].data.withUnsafeMutableBufferPointer { o in
                    m.data.withUnsafeBufferPointer { src in
                        for i in 0..<n { o[i] += src[row * m.cols + i] }
                    }
                }
                row += out[w].rows
            }
            first = last
        }
        return out
    }

    /// Final norm and lm_head: logits over `vocabRange` for the last position (or all).
    public func logits(_ x: Matrix, allPositions: Bool, observer: ForwardObserver? = nil) throws -> Matrix {
        var final = Ops.rmsNorm(x, weight: try weights.vector(.finalNorm), eps: Float(config.rmsNormEps))
        observer?.record("final_norm", final)
        if !allPositions { final = final.gatherRows([final.rows - 1]) }
        return try projector(config.tieWordEmbeddings ? .embedding : .lmHead, final)
    }
}
