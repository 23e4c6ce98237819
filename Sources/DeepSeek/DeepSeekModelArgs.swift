import Foundation
import JSON

/// The `ModelArgs` of DeepSeek's own distributed inference (`inference/model.py` of the
/// DeepSeek-V3 repository, read by `generate.py --config FILE`), derived from a Hugging Face
/// `config.json`. Its shipped `configs/config_236B.json` omits `mscale` (default 1.0): for V2.5,
/// whose `rope_scaling.mscale_all_dim` is 0.707, that changes the attention softmax scale. This
/// derivation carries every value the Hugging Face model uses, and refuses what model.py cannot
/// express. `Formats/tensor-parallel-layout.md` lists the fields.
public struct DeepSeekModelArgs: Sendable {
    public static let fileName = "generate-config.json"
    /// model.py's own default (and what its caches are sized for); kept whenever YaRN needs
    /// `max_seq_len > original_seq_len`.
    public static let defaultMaxSeqLen = 16384
    /// model.py's RMSNorm epsilon, fixed in its code.
    public static let modelPyRMSNormEps = 1e-6

    public let json: JSONObject

    /// Throws `ModelError.badInput` naming the config.json field model.py has no way to express.
    public init(config c: ModelConfig) throws(ModelError) {
        func refuse(_ why: String) -> ModelError {
            .badInput("config.json: \(why); DeepSeek's inference/model.py cannot express it, so no \(Self.fileName) is written")
        }
        guard c.isMoE, let routed = c.nRoutedExperts, let topK = c.numExpertsPerTok else {
            throw refuse("no routed experts (n_routed_experts / num_experts_per_tok)")
        }
        guard c.moeLayerFreq == 1 else { throw refuse("moe_layer_freq \(c.moeLayerFreq) (model.py has MoE in every layer after n_dense_layers)") }
        guard c.scoringFunc == "softmax" else { throw refuse("scoring_func \(c.scoringFunc) (DeepSeek-V2 routes by softmax)") }
        guard !c.normTopkProb else { throw refuse("norm_topk_prob true (model.py renormalizes only sigmoid scores)") }
        guard c.hiddenAct == "silu" else { throw refuse("hidden_act \(c.hiddenAct) (model.py uses SiLU)") }
        guard !c.attentionBias else { throw refuse("attention_bias true (model.py's projections have no bias)") }
        guard !c.tieWordEmbeddings else { throw refuse("tie_word_embeddings true (model.py has its own head)") }
        guard abs(c.rmsNormEps - Self.modelPyRMSNormEps) <= 1e-12 else {
            throw refuse("rms_norm_eps \(c.rmsNormEps) (model.py's RMSNorm uses \(Self.modelPyRMSNormEps))")
        }
        var o = JSONObject()
        o["vocab_size"] = JSONValue(c.vocabSize)
        o["dim"] = JSONValue(c.hiddenSize)
        o["inter_dim"] = JSONValue(c.intermediateSize)
        o["moe_inter_dim"] = JSONValue(c.moeIntermediateSize)
        o["n_layers"] = JSONValue(c.numHiddenLayers)
        o["n_dense_layers"] = JSONValue(min(c.firstKDenseReplace, c.numHiddenLayers))
        o["n_heads"] = JSONValue(c.numAttentionHeads)
        o["n_routed_experts"] = JSONValue(routed)
        o["n_shared_experts"] = JSONValue(c.nSharedExperts ?? 0)
        o["n_activated_experts"] = JSONValue(topK)
        switch c.topkMethod {
        case .groupLimitedGreedy:
            o["n_expert_groups"] = JSONValue(c.nGroup ?? 1)
            o["n_limited_groups"] = JSONValue(c.topkGroup ?? 1)
        default:
            o["n_expert_groups"] = 1
            o["n_limited_groups"] = 1
        }
        o["score_func"] = "softmax"
        o["route_scale"] = .number(c.routedScalingFactor)
        // model.py: `q_lora_rank == 0` selects its plain wq projection (V2-Lite).
        o["q_lora_rank"] = JSONValue(c.qLoraRank ?? 0)
        o["kv_lora_rank"] = JSONValue(c.kvLoraRank)
        o["qk_nope_head_dim"] = JSONValue(c.qkNopeHeadDim)
        o["qk_rope_head_dim"] = JSONValue(c.qkRopeHeadDim)
        o["v_head_dim"] = JSONValue(c.vHeadDim)
        o["rope_theta"] = .number(c.ropeTheta)
        if let r = c.ropeScaling, r.type == "yarn" {
            // The Hugging Face model applies YaRN at every length; model.py only when
            // max_seq_len > original_seq_len, and then scales the softmax by
            // (0.1·mscale·ln(factor) + 1)², which is the Hugging Face mscale_all_dim. Its rotary
            // table has no cos/sin factor, so that factor (mscale / mscale_all_dim) must be 1.
            let cosSinFactor = Self.yarnMscale(r.factor, r.mscale) / Self.yarnMscale(r.factor, r.mscaleAllDim)
            guard abs(cosSinFactor - 1) <= 1e-9 else {
                throw refuse("rope_scaling mscale \(r.mscale) differs from mscale_all_dim \(r.mscaleAllDim) (a cos/sin factor model.py does not apply)")
            }
            o["max_seq_len"] = JSONValue(max(Self.defaultMaxSeqLen, 2 * r.originalMaxPositionEmbeddings))
            o["original_seq_len"] = JSONValue(r.originalMaxPositionEmbeddings)
            o["rope_factor"] = .number(r.factor)
            o["beta_fast"] = JSONValue(Int(r.betaFast.rounded()))
            o["beta_slow"] = JSONValue(Int(r.betaSlow.rounded()))
            guard Double(Int(r.betaFast.rounded())) == r.betaFast, Double(Int(r.betaSlow.rounded())) == r.betaSlow else {
                throw refuse("rope_scaling beta_fast/beta_slow \(r.betaFast)/\(r.betaSlow) (model.py takes integers)")
            }
            o["mscale"] = .number(r.mscaleAllDim)
        } else if let r = c.ropeScaling {
            throw refuse("rope_scaling type \(r.type) (model.py knows YaRN only)")
        } else {
            // No YaRN: model.py must not turn it on, so max_seq_len stays at original_seq_len.
            o["max_seq_len"] = JSONValue(min(Self.defaultMaxSeqLen, c.maxPositionEmbeddings))
            o["original_seq_len"] = JSONValue(c.maxPositionEmbeddings)
        }
        o["dtype"] = "bf16"
        json = o
    }

    /// YaRN's attention factor, as both the Hugging Face model and model.py compute it.
    static func yarnMscale(_ scale: Double, _ mscale: Double) -> Double {
        scale <= 1 ? 1 : 0.1 * mscale * log(scale) + 1
    }

    public var text: String { JSONValue.object(json).serialized(pretty: true) + "\n" }
}
