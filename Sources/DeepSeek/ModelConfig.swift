import Foundation
import JSON
import SafeTensors

/// YaRN rope scaling, as `rope_scaling` in config.json.
public struct RopeScaling: Codable, Sendable, Equatable {
    public var type: String
    public var factor: Double
    public var originalMaxPositionEmbeddings: Int
    public var betaFast: Double
    public var betaSlow: Double
    public var mscale: Double
    public var mscaleAllDim: Double

    enum CodingKeys: String, CodingKey {
        case type, factor, mscale
        case ropeType = "rope_type"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case betaFast = "beta_fast"
        case betaSlow = "beta_slow"
        case mscaleAllDim = "mscale_all_dim"
    }

    public init(type: String, factor: Double, originalMaxPositionEmbeddings: Int, betaFast: Double,
                betaSlow: Double, mscale: Double, mscaleAllDim: Double) {
        self.type = type
        self.factor = factor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        self.betaFast = betaFast
        self.betaSlow = betaSlow
        self.mscale = mscale
        self.mscaleAllDim = mscaleAllDim
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // The original writes "type"; transformers ≥ 4.4x writes "rope_type".
        guard let t = try c.decodeIfPresent(String.self, forKey: .type) ?? c.decodeIfPresent(String.self, forKey: .ropeType) else {
            throw DecodingError.keyNotFound(CodingKeys.type, .init(codingPath: c.codingPath, debugDescription: "rope_scaling needs \"type\""))
        }
        type = t
        factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? 1
        originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings) ?? 4096
        betaFast = try c.decodeIfPresent(Double.self, forKey: .betaFast) ?? 32
        betaSlow = try c.decodeIfPresent(Double.self, forKey: .betaSlow) ?? 1
        mscale = try c.decodeIfPresent(Double.self, forKey: .mscale) ?? 1
        mscaleAllDim = try c.decodeIfPresent(Double.self, forKey: .mscaleAllDim) ?? 0
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(betaFast, forKey: .betaFast)
        try c.encode(betaSlow, forKey: .betaSlow)
        try c.encode(factor, forKey: .factor)
        try c.encode(mscale, forKey: .mscale)
        try c.encode(mscaleAllDim, forKey: .mscaleAllDim)
        try c.encode(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
        try c.encode(type, forKey: .type)
    }
}

/// How the router picks experts.
public enum TopKMethod: String, Codable, Sendable {
    case greedy
    case groupLimitedGreedy = "group_limited_greedy"
}

/// `config.json` of the DeepSeek-V2 family (V2, V2-Lite, V2.5, V2-Chat), mirroring its keys.
/// Optional keys take the original `configuration_deepseek.py` defaults; the keys every real
/// checkpoint writes are required.
public struct ModelConfig: Codable, Sendable, Equatable {
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var moeIntermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var nSharedExperts: Int?
    public var nRoutedExperts: Int?
    public var routedScalingFactor: Double
    public var kvLoraRank: Int
    /// nil for V2-Lite, whose queries come from a single `q_proj`.
    public var qLoraRank: Int?
    public var qkRopeHeadDim: Int
    public var vHeadDim: Int
    public var qkNopeHeadDim: Int
    public var topkMethod: TopKMethod
    public var nGroup: Int?
    public var topkGroup: Int?
    public var numExpertsPerTok: Int?
    public var moeLayerFreq: Int
    public var firstKDenseReplace: Int
    public var normTopkProb: Bool
    public var scoringFunc: String
    public var hiddenAct: String
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var attentionBias: Bool
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var torchDtype: String
    /// `quantization_config` of a compressed-tensors checkpoint; nil for a plain one.
    public var quantization: WeightQuantization? = nil

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case moeIntermediateSize = "moe_intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case nSharedExperts = "n_shared_experts"
        case nRoutedExperts = "n_routed_experts"
        case routedScalingFactor = "routed_scaling_factor"
        case kvLoraRank = "kv_lora_rank"
        case qLoraRank = "q_lora_rank"
        case qkRopeHeadDim = "qk_rope_head_dim"
        case vHeadDim = "v_head_dim"
        case qkNopeHeadDim = "qk_nope_head_dim"
        case topkMethod = "topk_method"
        case nGroup = "n_group"
        case topkGroup = "topk_group"
        case numExpertsPerTok = "num_experts_per_tok"
        case moeLayerFreq = "moe_layer_freq"
        case firstKDenseReplace = "first_k_dense_replace"
        case normTopkProb = "norm_topk_prob"
        case scoringFunc = "scoring_func"
        case hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling"
        case ropeParameters = "rope_parameters"
        case attentionBias = "attention_bias"
        case tieWordEmbeddings = "tie_word_embeddings"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
        case torchDtype = "torch_dtype"
        case dtype
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "deepseek_v2"
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        kvLoraRank = try c.decode(Int.self, forKey: .kvLoraRank)
        // Present in every real config; null means "no q LoRA" (V2-Lite), so absence is an error.
        guard c.contains(.qLoraRank) else {
            throw DecodingError.keyNotFound(CodingKeys.qLoraRank, .init(codingPath: [], debugDescription: "q_lora_rank (a number, or null for V2-Lite)"))
        }
        qLoraRank = try c.decodeIfPresent(Int.self, forKey: .qLoraRank)
        qkRopeHeadDim = try c.decode(Int.self, forKey: .qkRopeHeadDim)
        qkNopeHeadDim = try c.decode(Int.self, forKey: .qkNopeHeadDim)
        vHeadDim = try c.decode(Int.self, forKey: .vHeadDim)
        nRoutedExperts = try c.decodeIfPresent(Int.self, forKey: .nRoutedExperts)
        nSharedExperts = try c.decodeIfPresent(Int.self, forKey: .nSharedExperts)
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 1407
        routedScalingFactor = try c.decodeIfPresent(Double.self, forKey: .routedScalingFactor) ?? 1
        let method = try c.decodeIfPresent(String.self, forKey: .topkMethod) ?? "greedy"
        switch method {
        case "greedy", "gready": topkMethod = .greedy  // "gready" is the original default's spelling
        case "group_limited_greedy": topkMethod = .groupLimitedGreedy
        default:
            throw DecodingError.dataCorrupted(.init(codingPath: [CodingKeys.topkMethod], debugDescription: "topk_method \"\(method)\" is not greedy or group_limited_greedy"))
        }
        nGroup = try c.decodeIfPresent(Int.self, forKey: .nGroup)
        topkGroup = try c.decodeIfPresent(Int.self, forKey: .topkGroup)
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok)
        moeLayerFreq = try c.decodeIfPresent(Int.self, forKey: .moeLayerFreq) ?? 1
        firstKDenseReplace = try c.decodeIfPresent(Int.self, forKey: .firstKDenseReplace) ?? 0
        normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? false
        scoringFunc = try c.decodeIfPresent(String.self, forKey: .scoringFunc) ?? "softmax"
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        if let scaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling) {
            ropeScaling = scaling
            ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10000
        } else if let params = try? c.decodeIfPresent(RopeParametersKey.self, forKey: .ropeParameters) {
            // transformers ≥ 5 layout: rope_theta inside rope_parameters.
            let topLevelTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
            ropeTheta = params.ropeTheta ?? topLevelTheta ?? 10000
            ropeScaling = params.scaling
        } else {
            ropeScaling = nil
            ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10000
        }
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        eosTokenId = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId)
        torchDtype = try c.decodeIfPresent(String.self, forKey: .torchDtype)
            ?? c.decodeIfPresent(String.self, forKey: .dtype) ?? "bfloat16"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(moeIntermediateSize, forKey: .moeIntermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(nSharedExperts, forKey: .nSharedExperts)
        try c.encode(nRoutedExperts, forKey: .nRoutedExperts)
        try c.encode(routedScalingFactor, forKey: .routedScalingFactor)
        try c.encode(kvLoraRank, forKey: .kvLoraRank)
        try c.encode(qLoraRank, forKey: .qLoraRank)
        try c.encode(qkRopeHeadDim, forKey: .qkRopeHeadDim)
        try c.encode(vHeadDim, forKey: .vHeadDim)
        try c.encode(qkNopeHeadDim, forKey: .qkNopeHeadDim)
        try c.encode(topkMethod, forKey: .topkMethod)
        try c.encode(nGroup, forKey: .nGroup)
        try c.encode(topkGroup, forKey: .topkGroup)
        try c.encode(numExpertsPerTok, forKey: .numExpertsPerTok)
        try c.encode(moeLayerFreq, forKey: .moeLayerFreq)
        try c.encode(firstKDenseReplace, forKey: .firstKDenseReplace)
        try c.encode(normTopkProb, forKey: .normTopkProb)
        try c.encode(scoringFunc, forKey: .scoringFunc)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(ropeScaling, forKey: .ropeScaling)
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(bosTokenId, forKey: .bosTokenId)
        try c.encode(eosTokenId, forKey: .eosTokenId)
        try c.encode(torchDtype, forKey: .torchDtype)
    }

    // MARK: Derived facts

    public var qHeadDim: Int { qkNopeHeadDim + qkRopeHeadDim }

    /// The safetensors dtype `torch_dtype` calls for.
    public var expectedDType: DType {
        switch torchDtype {
        case "float16": return .f16
        case "float32": return .f32
        default: return .bf16
        }
    }
    public var isMoE: Bool { nRoutedExperts != nil }

    /// A layer is MoE iff n_routed_experts is set, i ≥ first_k_dense_replace and i % moe_layer_freq == 0.
    public func isMoELayer(_ i: Int) -> Bool {
        guard nRoutedExperts != nil else { return false }
        return i >= firstKDenseReplace && i % max(moeLayerFreq, 1) == 0
    }

    /// Width of the shared-experts MLP.
    public var sharedExpertWidth: Int { moeIntermediateSize * (nSharedExperts ?? 0) }

    /// Checks the relations the forward pass and schema rely on.
    public func validate() throws(ModelError) {
        func need(_ ok: Bool, _ field: String, _ message: String) throws(ModelError) {
            if !ok { throw .invalidConfig(file: "config.json", field: field, message: message) }
        }
        for (v, n) in [(vocabSize, "vocab_size"), (hiddenSize, "hidden_size"), (numHiddenLayers, "num_hidden_layers"),
                       (numAttentionHeads, "num_attention_heads"), (kvLoraRank, "kv_lora_rank"),
                       (qkRopeHeadDim, "qk_rope_head_dim"), (vHeadDim, "v_head_dim"), (intermediateSize, "intermediate_size")] {
            try need(v > 0, n, "must be positive, got \(v)")
        }
        // Sizes drive allocations (the schema, plans, caches) before any file is read: each must be
        // far beyond any real model yet small enough that products of them cannot overflow.
        let limits: [(Int?, String, Int)] = [
            (vocabSize, "vocab_size", 1 << 24), (hiddenSize, "hidden_size", 1 << 20), (numHiddenLayers, "num_hidden_layers", 1 << 12),
            (numAttentionHeads, "num_attention_heads", 1 << 14), (kvLoraRank, "kv_lora_rank", 1 << 20), (qkRopeHeadDim, "qk_rope_head_dim", 1 << 16),
            (qkNopeHeadDim, "qk_nope_head_dim", 1 << 16), (vHeadDim, "v_head_dim", 1 << 16), (intermediateSize, "intermediate_size", 1 << 22),
            (moeIntermediateSize, "moe_intermediate_size", 1 << 22), (qLoraRank, "q_lora_rank", 1 << 20),
            (nRoutedExperts, "n_routed_experts", 1 << 16), (nSharedExperts, "n_shared_experts", 1 << 10),
        ]
        for (v, n, limit) in limits {
            if let v { try need(v <= limit, n, "\(v) is beyond any model dsconv can handle (at most \(limit))") }
        }
        // The parameter count, in floating point: a config whose tensors could not exist is refused here.
        let h = Double(hiddenSize), layers = Double(numHiddenLayers)
        let perLayer = Double(numAttentionHeads) * Double(qkNopeHeadDim + qkRopeHeadDim + vHeadDim) * (h + Double(kvLoraRank + (qLoraRank ?? 0)))
            + 3 * h * Double(max(intermediateSize, moeIntermediateSize * ((nRoutedExperts ?? 0) + (nSharedExperts ?? 0))))
        let total = 2 * Double(vocabSize) * h + layers * perLayer
        try need(total < 1e14, "num_hidden_layers", "the config describes \(String(format: "%.3g", total)) parameters: beyond any model dsconv can handle")
        try need(qkNopeHeadDim >= 0, "qk_nope_head_dim", "must not be negative")
        try need(qkRopeHeadDim % 2 == 0, "qk_rope_head_dim", "must be even (rope rotates pairs), got \(qkRopeHeadDim)")
        if let q = qLoraRank { try need(q > 0, "q_lora_rank", "must be positive or null, got \(q)") }
        try need(moeLayerFreq > 0, "moe_layer_freq", "must be positive, got \(moeLayerFreq)")
        try need(scoringFunc == "softmax", "scoring_func", "only softmax is defined for DeepSeek-V2, got \(scoringFunc)")
        try need(hiddenAct == "silu", "hidden_act", "only silu is supported, got \(hiddenAct)")
        if let e = nRoutedExperts {
            try need(e > 0, "n_routed_experts", "must be positive or null, got \(e)")
            guard let k = numExpertsPerTok else { throw .invalidConfig(file: "config.json", field: "num_experts_per_tok", message: "required when n_routed_experts is set") }
            try need(k > 0 && k <= e, "num_experts_per_tok", "must be in 1...\(e), got \(k)")
            try need(moeIntermediateSize > 0, "moe_intermediate_size", "must be positive")
            if topkMethod == .groupLimitedGreedy {
                guard let g = nGroup, let tg = topkGroup else {
                    throw .invalidConfig(file: "config.json", field: "n_group", message: "n_group and topk_group are required for group_limited_greedy")
                }
                try need(g > 0 && e % g == 0, "n_group", "must divide n_routed_experts \(e), got \(g)")
                try need(tg > 0 && tg <= g, "topk_group", "must be in 1...\(g), got \(tg)")
                try need(k <= tg * (e / g), "num_experts_per_tok", "\(k) exceeds the \(tg * (e / g)) experts in the \(tg) kept groups")
            }
        }
        try need(ropeTheta.isFinite && ropeTheta > 0, "rope_theta", "must be a positive number, got \(ropeTheta)")
        try need(rmsNormEps.isFinite && rmsNormEps > 0 && rmsNormEps < 1, "rms_norm_eps", "must be in (0, 1), got \(rmsNormEps)")
        try need(routedScalingFactor.isFinite && routedScalingFactor > 0, "routed_scaling_factor", "must be a positive number, got \(routedScalingFactor)")
        if let s = ropeScaling {
            try need(s.type == "yarn" || s.type == "linear" || s.type == "default", "rope_scaling.type", "unsupported rope scaling \"\(s.type)\" (yarn, linear or default)")
            try need(s.factor > 0, "rope_scaling.factor", "must be positive")
        }
    }

    /// Decodes and validates config.json; errors name the file and the field.
    public static func load(path: String) throws(ModelError) -> ModelConfig {
        let bytes: [UInt8]
        do { bytes = try readWholeFile(path) } catch {
            if case .io(_, _, let e) = error, e == ENOENT { throw .missingFile(file: path, what: "the model configuration") }
            throw .unreadable(file: path, reason: error.description)
        }
        return try decode(Data(bytes), path: path)
    }

    public static func decode(_ data: Data, path: String) throws(ModelError) -> ModelConfig {
        // Strict JSON first: duplicate keys (which Python resolves to the last value and Foundation
        // to another) and malformed text are refused with their position.
        let root: JSONValue
        do { root = try JSONParser.parse([UInt8](data)) } catch {
            throw .invalidConfig(file: path, field: "", message: "not valid JSON: \(error)")
        }
        let decoded: ModelConfig
        do {
            decoded = try JSONDecoder().decode(ModelConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw .invalidConfig(file: path, field: key.stringValue, message: "required field is missing")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw .invalidConfig(file: path, field: ctx.codingPath.map(\.stringValue).joined(separator: "."), message: "wrong type: \(ctx.debugDescription)")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw .invalidConfig(file: path, field: ctx.codingPath.map(\.stringValue).joined(separator: "."), message: "is null but a value is required")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw .invalidConfig(file: path, field: ctx.codingPath.map(\.stringValue).joined(separator: "."), message: ctx.debugDescription)
        } catch {
            throw .invalidConfig(file: path, field: "", message: "\(error)")
        }
        var config = decoded
        if let q = root["quantization_config"], !q.isNull {
            config.quantization = try WeightQuantization.parse(q, file: path)
        }
        do { try config.validate() } catch {
            if case .invalidConfig(_, let f, let m) = error { throw .invalidConfig(file: path, field: f, message: m) }
            throw error
        }
        if let q = config.quantization {
            // Scales must cover each weight exactly: a group that does not divide a width would
            // make the kernels read the next row's scale, or past the tensor.
            var plain = config
            plain.quantization = nil
            let resolver = q.resolver
            for t in TensorSchema(config: plain).tensors where t.role.isLinear && t.shape.count == 2 {
                guard let g = resolver.scheme(forModule: t.role.moduleName)?.groupSize else { continue }
                let cols = t.shape[1]
                if cols % g != 0 {
                    throw .invalidConfig(file: path, field: "quantization_config",
                                         message: "group_size \(g) does not divide \(t.role.moduleName)'s input width \(cols): its scales cannot cover the weight")
                }
            }
        }
        return config
    }

    /// config.json text in the original DeepSeek layout, keys sorted. Number types follow the
    /// original files (and transformers' strict config validation): `routed_scaling_factor`,
    /// `rms_norm_eps` and the mscales are floats; sizes, `rope_theta` and YaRN's factor and betas
    /// are written as integers when integral.
    public func jsonText() -> String {
        func int(_ v: Int) -> JSONValue { .integer(Int64(v)) }
        func optInt(_ v: Int?) -> JSONValue { v.map(int) ?? .null }
        func flt(_ d: Double) -> JSONValue { .number(d) }
        func intIfIntegral(_ d: Double) -> JSONValue { d == d.rounded() && abs(d) < 1e15 ? .integer(Int64(d)) : .number(d) }
        var o: [(String, JSONValue)] = [
            ("architectures", ["DeepseekV2ForCausalLM"]),
            ("attention_bias", .bool(attentionBias)), ("bos_token_id", optInt(bosTokenId)), ("eos_token_id", optInt(eosTokenId)),
            ("first_k_dense_replace", int(firstKDenseReplace)), ("hidden_act", .string(hiddenAct)), ("hidden_size", int(hiddenSize)),
            ("intermediate_size", int(intermediateSize)), ("kv_lora_rank", int(kvLoraRank)),
            ("max_position_embeddings", int(maxPositionEmbeddings)), ("model_type", .string(modelType)),
            ("moe_intermediate_size", int(moeIntermediateSize)), ("moe_layer_freq", int(moeLayerFreq)), ("n_group", optInt(nGroup)),
            ("n_routed_experts", optInt(nRoutedExperts)), ("n_shared_experts", optInt(nSharedExperts)),
            ("norm_topk_prob", .bool(normTopkProb)), ("num_attention_heads", int(numAttentionHeads)),
            ("num_experts_per_tok", optInt(numExpertsPerTok)), ("num_hidden_layers", int(numHiddenLayers)),
            ("num_key_value_heads", int(numKeyValueHeads)), ("q_lora_rank", optInt(qLoraRank)),
            ("qk_nope_head_dim", int(qkNopeHeadDim)), ("qk_rope_head_dim", int(qkRopeHeadDim)),
            ("rms_norm_eps", flt(rmsNormEps)), ("rope_theta", intIfIntegral(ropeTheta)),
            ("routed_scaling_factor", flt(routedScalingFactor)), ("scoring_func", .string(scoringFunc)),
            ("tie_word_embeddings", .bool(tieWordEmbeddings)), ("topk_group", optInt(topkGroup)),
            ("topk_method", .string(topkMethod.rawValue)), ("torch_dtype", .string(torchDtype)), ("use_cache", .bool(true)),
            ("v_head_dim", int(vHeadDim)), ("vocab_size", int(vocabSize)),
        ]
        if let r = ropeScaling {
            o.append(("rope_scaling", ["beta_fast": intIfIntegral(r.betaFast), "beta_slow": intIfIntegral(r.betaSlow),
                                       "factor": intIfIntegral(r.factor), "mscale": flt(r.mscale), "mscale_all_dim": flt(r.mscaleAllDim),
                                       "original_max_position_embeddings": int(r.originalMaxPositionEmbeddings), "type": .string(r.type)]))
        } else {
            o.append(("rope_scaling", .null))
        }
        var object = JSONObject()
        for (k, v) in o.sorted(by: { $0.0 < $1.0 }) { object[k] = v }
        return JSONValue.object(object).serialized(pretty: true) + "\n"
    }
}

/// transformers ≥ 5 writes `rope_parameters` (rope_theta inside) instead of `rope_scaling`.
struct RopeParametersKey: Decodable {
    var ropeTheta: Double?
    var scaling: RopeScaling?

    enum CodingKeys: String, CodingKey {
        case ropeTheta = "rope_theta"
        case ropeType = "rope_type"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        let type = try c.decodeIfPresent(String.self, forKey: .ropeType)
        scaling = (type == nil || type == "default") ? nil : try RopeScaling(from: decoder)
    }
}
