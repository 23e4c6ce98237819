import Foundation

/// Published configurations of the family, for `synth` and parameter-count checks.
public enum ModelPreset: String, Sendable, CaseIterable {
    case deepseekV25 = "deepseek-v2.5"
    case deepseekV2Lite = "deepseek-v2-lite"

    public var config: ModelConfig {
        let json: String
        switch self {
        case .deepseekV25:
            json = """
            {"model_type":"deepseek_v2","vocab_size":102400,"hidden_size":5120,"intermediate_size":12288,
             "moe_intermediate_size":1536,"num_hidden_layers":60,"num_attention_heads":128,"num_key_value_heads":128,
             "n_shared_experts":2,"n_routed_experts":160,"routed_scaling_factor":16.0,"kv_lora_rank":512,
             "q_lora_rank":1536,"qk_rope_head_dim":64,"v_head_dim":128,"qk_nope_head_dim":128,
             "topk_method":"group_limited_greedy","n_group":8,"topk_group":3,"num_experts_per_tok":6,
             "moe_layer_freq":1,"first_k_dense_replace":1,"norm_topk_prob":false,"scoring_func":"softmax",
             "hidden_act":"silu","max_position_embeddings":163840,"rms_norm_eps":1e-06,"rope_theta":10000,
             "rope_scaling":{"beta_fast":32,"beta_slow":1,"factor":40,"mscale":0.707,"mscale_all_dim":0.707,
                             "original_max_position_embeddings":4096,"type":"yarn"},
             "attention_bias":false,"tie_word_embeddings":false,"bos_token_id":100000,"eos_token_id":100001,
             "torch_dtype":"bfloat16"}
            """
        case .deepseekV2Lite:
            json = """
            {"model_type":"deepseek_v2","vocab_size":102400,"hidden_size":2048,"intermediate_size":10944,
             "moe_intermediate_size":1408,"num_hidden_layers":27,"num_attention_heads":16,"num_key_value_heads":16,
             "n_shared_experts":2,"n_routed_experts":64,"routed_scaling_factor":1.0,"kv_lora_rank":512,
             "q_lora_rank":null,"qk_rope_head_dim":64,"v_head_dim":128,"qk_nope_head_dim":128,
             "topk_method":"greedy","n_group":1,"topk_group":1,"num_experts_per_tok":6,
             "moe_layer_freq":1,"first_k_dense_replace":1,"norm_topk_prob":false,"scoring_func":"softmax",
             "hidden_act":"silu","max_position_embeddings":163840,"rms_norm_eps":1e-06,"rope_theta":10000,
             "rope_scaling":{"beta_fast":32,"beta_slow":1,"factor":40,"mscale":0.707,"mscale_all_dim":0.707,
                             "original_max_position_embeddings":4096,"type":"yarn"},
             "attention_bias":false,"tie_word_embeddings":false,"bos_token_id":100000,"eos_token_id":100001,
             "torch_dtype":"bfloat16"}
            """
        }
        // The literals above are fixed and valid; a failure here is a programming error.
        return try! ModelConfig.decode(Data(json.utf8), path: rawValue)
    }
}
