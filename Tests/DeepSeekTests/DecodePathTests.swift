import Foundation
import Kernels
import SafeTensors
import TestSupport
import Testing

@testable import DeepSeek

/// Scaled-down random models from `synth` exercise configurations the fixture does not:
/// V2-Lite's q_proj, greedy routing, norm_topk_prob, moe_layer_freq 2, f32 router weights.
@Suite(.serialized) struct DecodePathTests {
    static func model(like preset: ModelPreset, edit: (inout ModelConfig) -> Void = { _ in }) throws -> (Checkpoint, String) {
        let sizes = SynthSizes(layers: 3, experts: 8, hidden: 64, vocab: 300)
        var config = try Synth.config(like: preset, sizes: sizes)
        edit(&config)
        try config.validate()
        let dir = temporaryDirectory("decode-\(preset.rawValue)")
        let out = try OutputDirectory(dir + "/m", force: false)
        try Synth.write(config: config, seed: 11, out: out, maxShardSize: 1 << 30, tokenizerFrom: nil, threads: 2)
        try out.commit()
        return (try Checkpoint(directory: dir + "/m"), dir)
    }

    static let configs: [(ModelPreset, String, @Sendable (inout ModelConfig) -> Void)] = [
        (.deepseekV25, "v2.5 group-limited", { _ in }),
        (.deepseekV2Lite, "lite q_proj greedy", { _ in }),
        (.deepseekV25, "norm_topk moe_freq 2", { c in c.normTopkProb = true; c.moeLayerFreq = 2; c.firstKDenseReplace = 0 }),
    ]

    @Test(arguments: 0..<3) func absorbedMatchesNaive(_ which: Int) throws {
        let (preset, _, edit) = Self.configs[which]
        let (ckpt, dir) = try Self.model(like: preset, edit: edit)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = Transformer(checkpoint: ckpt, threads: 2)
        let prompt = [1, 5, 9, 200, 17, 3, 44, 120, 7]
        let next = [13, 250, 8]
        // Same prefill, then each decode step through both attention forms.
        let naiveCache = KVCache(config: ckpt.config), absorbedCache = KVCache(config: ckpt.config)
        _ = try model.forward(prompt, cache: naiveCache, path: .naive)
        _ = try model.forward(prompt, cache: absorbedCache, path: .naive)
        for token in next {
            let a = try model.forward([token], cache: naiveCache, path: .naive).data
            let b = try model.forward([token], cache: absorbedCache, path: .absorbed).data
            let err = relativeL2(b, a)
            #expect(err <= 1e-5, "\(Self.configs[which].1): absorbed vs naive relative L2 \(err)")
        }
        // A whole prompt through the absorbed form too.
        let full = try model.forward(prompt, cache: KVCache(config: ckpt.config), path: .absorbed, allLogits: true).data
        let ref = try model.forward(prompt, cache: KVCache(config: ckpt.config), path: .naive, allLogits: true).data
        #expect(relativeL2(full, ref) <= 1e-5)
    }

    @Test(arguments: 0..<3) func cachedDecodeMatchesRecompute(_ which: Int) throws {
        let (preset, _, edit) = Self.configs[which]
        let (ckpt, dir) = try Self.model(like: preset, edit: edit)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = Transformer(checkpoint: ckpt, threads: 2)
        var tokens = [2, 77, 31, 150, 9]
        let cache = KVCache(config: ckpt.config)
        var logits = try model.forward(tokens, cache: cache).data
        for step in 0..<4 {
            let recomputed = try model.forward(tokens, cache: KVCache(config: ckpt.config)).data
            let err = relativeL2(logits, recomputed)
            #expect(err <= 1e-5, "\(Self.configs[which].1) step \(step): cached vs recomputed relative L2 \(err)")
            let next = logits.indices.max { logits[$0] < logits[$1] }!
            tokens.append(next)
            logits = try model.forward([next], cache: cache).data
        }
        #expect(cache.bytesPerToken == ckpt.config.numHiddenLayers * (ckpt.config.kvLoraRank + ckpt.config.qkRopeHeadDim) * 4)
    }

    /// A prompt longer than the attention's query block (its scores are computed a block of rows
    /// at a time against the keys the block sees, so memory stays linear in the prompt and the
    /// causal mask's zeros are mostly skipped): the whole prompt at once and the same
    /// prompt in two pieces through the cache give the same logits.
    @Test func longPromptInQueryBlocksMatchesPiecewisePrefill() throws {
        let (ckpt, dir) = try Self.model(like: .deepseekV25)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = Transformer(checkpoint: ckpt, threads: 2)
        let vocab = min(ckpt.config.vocabSize, 1000)
        let tokens = (0..<(2 * MLA.queryBlock + 37)).map { ($0 * 7919 + 11) % vocab }
        let whole = try model.forward(tokens, cache: KVCache(config: ckpt.config), allLogits: true)
        let cache = KVCache(config: ckpt.config)
        // Split off a block boundary, so the second piece's blocks start part-way into the cache.
        let split = MLA.queryBlock + MLA.queryBlock / 2 + 3
        let first = try model.forward(Array(tokens.prefix(split)), cache: cache, allLogits: true)
        let second = try model.forward(Array(tokens.dropFirst(split)), cache: cache, allLogits: true)
        let err = relativeL2(first.data + second.data, whole.data)
        #expect(err <= 1e-5, "blocked vs piecewise prefill: relative L2 \(err)")
    }

    @Test func outOfVocabularyTokenIsAnError() throws {
        let (ckpt, dir) = try Self.model(like: .deepseekV25)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = Transformer(checkpoint: ckpt, threads: 1)
        #expect(throws: ModelError.self) { try model.forward([5, 100_000], cache: KVCache(config: ckpt.config)) }
    }
}
