import Foundation
import Kernels

/// How the next token is picked.
public enum Sampling: Sendable, Equatable {
    case greedy
    /// Temperature, nucleus mass, seed.
    case random(temperature: Float, topP: Float, seed: UInt64)
}

/// What a generation produced, with timings.
public struct GenerationResult: Sendable {
    public var tokens: [Int]
    public var stoppedAtEOS: Bool
    /// Logits at the last prompt position (before any generated token).
    public var promptLastLogits: [Float]
    public var prefillSeconds: Double
    public var decodeSeconds: Double

    public init(tokens: [Int], stoppedAtEOS: Bool, promptLastLogits: [Float], prefillSeconds: Double, decodeSeconds: Double) {
        self.tokens = tokens
        self.stoppedAtEOS = stoppedAtEOS
        self.promptLastLogits = promptLastLogits
        self.prefillSeconds = prefillSeconds
        self.decodeSeconds = decodeSeconds
    }
}

/// What generation and evaluation run: one model, or a tensor-parallel set of ranks whose
/// partial results are reduced. Each keeps its latent KV cache(s) in the caches it makes.
public protocol LanguageModel: AnyObject {
    var config: ModelConfig { get }
    func makeCaches() -> [KVCache]
    /// Runs `tokens` after what the caches hold; logits [T, vocab] when `allLogits`, else [1, vocab].
    func forward(_ tokens: [Int], caches: [KVCache], allLogits: Bool) throws -> Matrix
}

extension LanguageModel {
    /// Logits at every position of a sequence, from empty caches (evaluation, reference checks).
    public func allLogits(_ sequence: [Int]) throws -> Matrix {
        try forward(sequence, caches: makeCaches(), allLogits: true)
    }

    /// Logits at every position, one token at a time through the caches (the decode path).
    public func stepwiseLogits(_ sequence: [Int]) throws -> Matrix {
        let caches = makeCaches()
        var rows: [Float] = []
        var cols = 0
        for token in sequence {
            let l = try forward([token], caches: caches, allLogits: false)
            rows += l.data
            cols = l.cols
        }
        return Matrix(rows: sequence.count, cols: cols, data: rows)
    }
}

extension Transformer: LanguageModel {
    public func makeCaches() -> [KVCache] { [KVCache(config: config)] }

    public func forward(_ tokens: [Int], caches: [KVCache], allLogits: Bool) throws -> Matrix {
        try forward(tokens, cache: caches[0], allLogits: allLogits)
    }
}

/// Prefill then token-by-token decode with the latent KV cache: the one generation loop, for a
/// single model and a tensor-parallel one alike.
public final class Generator {
    public let model: any LanguageModel

    public init(model: any LanguageModel) { self.model = model }

    public func generate(prompt: [Int], maxNewTokens: Int, sampling: Sampling, stopAtEOS: Bool = true,
                         eos: Set<Int>? = nil) throws -> GenerationResult {
        let cache = model.makeCaches()
        let stops = eos ?? Set([model.config.eosTokenId].compactMap { $0 })
        var rng = SplitMix(seed: { if case .random(_, _, let s) = sampling { return s }; return 0 }())
        let t0 = Date()
        var logits = try model.forward(prompt, caches: cache, allLogits: false).data
        let promptLogits = logits
        let prefill = Date().timeIntervalSince(t0)
        var out: [Int] = []
        var stopped = false
        let t1 = Date()
        while out.count < maxNewTokens {
            let next = pick(logits, sampling, &rng)
            out.append(next)
            if stopAtEOS && stops.contains(next) { stopped = true; break }
            if out.count == maxNewTokens { break }
            logits = try model.forward([next], caches: cache, allLogits: false).data
        }
        return GenerationResult(tokens: out, stoppedAtEOS: stopped, promptLastLogits: promptLogits,
                                prefillSeconds: prefill, decodeSeconds: Date().timeIntervalSince(t1))
    }

    func pick(_ logits: [Float], _ sampling: Sampling, _ rng: inout SplitMix) -> Int {
        switch sampling {
        case .greedy:
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return best
        case .random(let temperature, let topP, _):
            guard temperature > 0 else { return pick(logits, .greedy, &rng) }
            let m = logits.max() ?? 0
            var probs = logits.map { expf(($0 - m) / temperature) }
            let sum = probs.reduce(0, +)
            probs = probs.map { $0 / sum }
            let order = probs.indices.sorted { probs[$0] > probs[$1] }
            var kept: [Int] = []
            var mass: Float = 0
            for i in order {
                kept.append(i)
                mass += probs[i]
                if mass >= topP { break }
            }
            var u = Float(rng.nextDouble()) * mass
            for i in kept {
                u -= probs[i]
                if u <= 0 { return i }
            }
            return kept.last ?? order[0]
        }
    }
}

/// A small deterministic PRNG for sampling (generation, AWQ's calibration samples).
public struct SplitMix: Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func nextDouble() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
