import Quantization
import SafeTensors

/// The projections of an MLP: down(silu(gate(x)) · up(x)).
public enum MLPProjection: String, Sendable, CaseIterable {
    case gate, up, down
}

/// What a tensor is in the model. HF tensor names are derived from roles here and nowhere else.
public enum TensorRole: Hashable, Sendable {
    case embedding
    case finalNorm
    case lmHead
    case inputNorm(layer: Int)
    case postAttentionNorm(layer: Int)
    /// q_lora_rank set: q_a_proj → q_a_layernorm → q_b_proj.
    case qA(layer: Int)
    case qANorm(layer: Int)
    case qB(layer: Int)
    /// q_lora_rank null (V2-Lite): one q_proj.
    case q(layer: Int)
    case kvA(layer: Int)
    case kvANorm(layer: Int)
    case kvB(layer: Int)
    case o(layer: Int)
    case denseMLP(layer: Int, MLPProjection)
    case router(layer: Int)
    case routedExpert(layer: Int, expert: Int, MLPProjection)
    case sharedExpert(layer: Int, MLPProjection)

    /// The Hugging Face name of the weight (`HuggingFaceNaming`; other namings go through a schema).
    public var name: String {
        switch self {
        case .embedding: return "model.embed_tokens.weight"
        case .finalNorm: return "model.norm.weight"
        case .lmHead: return "lm_head.weight"
        case .inputNorm(let l): return "model.layers.\(l).input_layernorm.weight"
        case .postAttentionNorm(let l): return "model.layers.\(l).post_attention_layernorm.weight"
        case .qA(let l): return "model.layers.\(l).self_attn.q_a_proj.weight"
        case .qANorm(let l): return "model.layers.\(l).self_attn.q_a_layernorm.weight"
        case .qB(let l): return "model.layers.\(l).self_attn.q_b_proj.weight"
        case .q(let l): return "model.layers.\(l).self_attn.q_proj.weight"
        case .kvA(let l): return "model.layers.\(l).self_attn.kv_a_proj_with_mqa.weight"
        case .kvANorm(let l): return "model.layers.\(l).self_attn.kv_a_layernorm.weight"
        case .kvB(let l): return "model.layers.\(l).self_attn.kv_b_proj.weight"
        case .o(let l): return "model.layers.\(l).self_attn.o_proj.weight"
        case .denseMLP(let l, let p): return "model.layers.\(l).mlp.\(p.rawValue)_proj.weight"
        case .router(let l): return "model.layers.\(l).mlp.gate.weight"
        case .routedExpert(let l, let e, let p): return "model.layers.\(l).mlp.experts.\(e).\(p.rawValue)_proj.weight"
        case .sharedExpert(let l, let p): return "model.layers.\(l).mlp.shared_experts.\(p.rawValue)_proj.weight"
        }
    }

    /// The module the tensor belongs to: the name without its `.weight`.
    public var moduleName: String { String(name.dropLast(".weight".count)) }

    /// Whether the module is an `nn.Linear` in transformers' model (what compressed-tensors'
    /// "Linear" target matches). The router (`MoEGate`) and the embedding are not.
    public var isLinear: Bool {
        switch self {
        case .lmHead, .qA, .qB, .q, .kvA, .kvB, .o, .denseMLP, .routedExpert, .sharedExpert: return true
        default: return false
        }
    }

    /// The decoder layer the tensor belongs to, if any.
    public var layer: Int? {
        switch self {
        case .embedding, .finalNorm, .lmHead: return nil
        case .inputNorm(let l), .postAttentionNorm(let l), .qA(let l), .qANorm(let l), .qB(let l), .q(let l),
            .kvA(let l), .kvANorm(let l), .kvB(let l), .o(let l), .denseMLP(let l, _), .router(let l),
            .routedExpert(let l, _, _), .sharedExpert(let l, _):
            return l
        }
    }

    public var isRoutedExpert: Bool {
        if case .routedExpert = self { return true }
        return false
    }

    /// The routed expert the tensor belongs to, if any.
    public var expert: Int? {
        if case .routedExpert(_, let e, _) = self { return e }
        return nil
    }

    public var isNorm: Bool {
        switch self {
        case .finalNorm, .inputNorm, .postAttentionNorm, .qANorm, .kvANorm: return true
        default: return false
        }
    }

    /// A short kind, for grouping in reports.
    public var kind: String {
        switch self {
        case .embedding: return "embedding"
        case .lmHead: return "head"
        case .finalNorm, .inputNorm, .postAttentionNorm, .qANorm, .kvANorm: return "norm"
        case .qA, .qB, .q, .kvA, .kvB, .o: return "attention"
        case .denseMLP: return "dense_mlp"
        case .router: return "router"
        case .routedExpert: return "routed_expert"
        case .sharedExpert: return "shared_expert"
        }
    }
}

/// How tensor parallelism cuts a tensor: one rule per role, read by the reshard plan, the
/// per-GPU memory figures and the serving rules (the engines split the same way).
public enum TensorParallelSplit: Sendable, Equatable {
    case replicated
    /// Cut along `dim` into whole `unit`s (vocabulary rows, heads, features): dim 0 is a
    /// column-parallel (output) split, dim 1 a row-parallel (input) split.
    case split(dim: Int, unit: Int, what: String)
    /// A routed expert's projection: split along `dim` when experts are cut by tensor
    /// parallelism, whole on its owning rank under expert parallelism.
    case routedExpert(dim: Int)
}

extension TensorRole {
    public func tensorParallelSplit(_ c: ModelConfig) -> TensorParallelSplit {
        switch self {
        case .embedding, .lmHead: return .split(dim: 0, unit: 1, what: "vocabulary rows")
        case .qA, .kvA, .router, .finalNorm, .inputNorm, .postAttentionNorm, .qANorm, .kvANorm: return .replicated
        case .qB, .q: return .split(dim: 0, unit: c.qHeadDim, what: "heads")
        case .kvB: return .split(dim: 0, unit: c.qkNopeHeadDim + c.vHeadDim, what: "heads")
        case .o: return .split(dim: 1, unit: c.vHeadDim, what: "heads")
        case .denseMLP(_, let p), .sharedExpert(_, let p): return .split(dim: p == .down ? 1 : 0, unit: 1, what: "features")
        case .routedExpert(_, _, let p): return .routedExpert(dim: p == .down ? 1 : 0)
        }
    }
}

/// Which stored tensor of a module: its weight, or one of the tensors a quantized weight is
/// stored as (compressed-tensors names).
public enum TensorComponent: String, Sendable, Hashable {
    case weight
    case weightPacked = "weight_packed"
    case weightScale = "weight_scale"
    case weightShape = "weight_shape"
    case weightZeroPoint = "weight_zero_point"
}

/// How a checkpoint names its tensors: (role, component) → name. The schema names every tensor
/// through one of these; nothing else spells tensor names.
public protocol TensorNaming: Sendable {
    func name(_ role: TensorRole, _ component: TensorComponent) -> String
}

/// Hugging Face transformers' names, with compressed-tensors' component suffixes
/// (`….weight_packed`, `….weight_scale`, …).
public struct HuggingFaceNaming: TensorNaming {
    public init() {}

    public func name(_ role: TensorRole, _ component: TensorComponent) -> String {
        component == .weight ? role.name : role.moduleName + "." + component.rawValue
    }
}

/// The names DeepSeek's own inference code (`inference/model.py` of DeepSeek-V3, which loads V2 and
/// V2.5 through its `config_236B.json` / `config_16B.json`) gives the same tensors: what its
/// `convert.py` derives from the Hugging Face names. `model.` dropped, `self_attn` → `attn`,
/// `mlp` → `ffn`, and the module's own name through `DeepSeekNaming.moduleNames`.
public struct DeepSeekNaming: TensorNaming {
    /// Hugging Face module name → DeepSeek's (convert.py's `mapping`, names only; how each is
    /// split is the `ShardPlan`'s rule for its role).
    public static let moduleNames: [String: String] = [
        "embed_tokens": "embed", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
        "q_proj": "wq", "q_a_proj": "wq_a", "q_a_layernorm": "q_norm", "q_b_proj": "wq_b",
        "kv_a_proj_with_mqa": "wkv_a", "kv_a_layernorm": "kv_norm", "kv_b_proj": "wkv_b", "o_proj": "wo",
        "gate": "gate", "gate_proj": "w1", "down_proj": "w2", "up_proj": "w3", "norm": "norm", "lm_head": "head",
    ]

    public init() {}

    public func name(_ role: TensorRole, _ component: TensorComponent) -> String {
        var parts = role.moduleName.split(separator: ".").map(String.init)
        if parts.first == "model" { parts.removeFirst() }
        parts = parts.map { $0 == "self_attn" ? "attn" : $0 == "mlp" ? "ffn" : $0 }
        if let last = parts.last, let renamed = Self.moduleNames[last] { parts[parts.count - 1] = renamed }
        return parts.joined(separator: ".") + "." + component.rawValue
    }
}

/// A tensor the config says the checkpoint must hold.
public struct ExpectedTensor: Sendable, Equatable {
    public let role: TensorRole
    /// Its name in the checkpoint (the schema's naming).
    public internal(set) var name: String
    public let shape: [Int]
    public var component: TensorComponent = .weight
    /// The dtype it must have; nil: the checkpoint's dtype (`torch_dtype`).
    public var dtype: DType? = nil
    /// The weight's logical [out, in] (its shape, for an unquantized weight).
    public var logicalShape: [Int]? = nil
    /// The quantization scheme of a quantized weight's components.
    public var scheme: QuantScheme? = nil

    public init(role: TensorRole, shape: [Int], component: TensorComponent = .weight, dtype: DType? = nil,
                logicalShape: [Int]? = nil, scheme: QuantScheme? = nil) {
        self.role = role
        self.name = HuggingFaceNaming().name(role, component)
        self.shape = shape
        self.component = component
        self.dtype = dtype
        self.logicalShape = logicalShape
        self.scheme = scheme
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Parameters the tensor stands for: the logical weight for the packed component, none for
    /// the other quantization components.
    public var parameterCount: Int {
        switch component {
        case .weight: return elementCount
        case .weightPacked: return (logicalShape ?? shape).reduce(1, *)
        default: return 0
        }
    }
}

/// Every tensor a DeepSeek-V2-family checkpoint holds, derived from its config, in checkpoint
/// order (embedding, layers, final norm, head). Linear weights are [out_features, in_features].
public struct TensorSchema: Sendable {
    public let config: ModelConfig
    public let naming: any TensorNaming
    public let tensors: [ExpectedTensor]
    private let byName: [String: Int]

    public init(config c: ModelConfig, naming: any TensorNaming = HuggingFaceNaming()) {
        var t: [ExpectedTensor] = []
        let h = c.hiddenSize
        let heads = c.numAttentionHeads
        t.append(.init(role: .embedding, shape: [c.vocabSize, h]))
        for l in 0..<c.numHiddenLayers {
            t.append(.init(role: .inputNorm(layer: l), shape: [h]))
            if let q = c.qLoraRank {
                t.append(.init(role: .qA(layer: l), shape: [q, h]))
                t.append(.init(role: .qANorm(layer: l), shape: [q]))
                t.append(.init(role: .qB(layer: l), shape: [heads * c.qHeadDim, q]))
            } else {
                t.append(.init(role: .q(layer: l), shape: [heads * c.qHeadDim, h]))
            }
            t.append(.init(role: .kvA(layer: l), shape: [c.kvLoraRank + c.qkRopeHeadDim, h]))
            t.append(.init(role: .kvANorm(layer: l), shape: [c.kvLoraRank]))
            t.append(.init(role: .kvB(layer: l), shape: [heads * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank]))
            t.append(.init(role: .o(layer: l), shape: [h, heads * c.vHeadDim]))
            t.append(.init(role: .postAttentionNorm(layer: l), shape: [h]))
            if c.isMoELayer(l), let experts = c.nRoutedExperts {
                let m = c.moeIntermediateSize
                t.append(.init(role: .router(layer: l), shape: [experts, h]))
                for e in 0..<experts {
                    t.append(.init(role: .routedExpert(layer: l, expert: e, .gate), shape: [m, h]))
                    t.append(.init(role: .routedExpert(layer: l, expert: e, .up), shape: [m, h]))
                    t.append(.init(role: .routedExpert(layer: l, expert: e, .down), shape: [h, m]))
                }
                if c.sharedExpertWidth > 0 {
                    let s = c.sharedExpertWidth
                    t.append(.init(role: .sharedExpert(layer: l, .gate), shape: [s, h]))
                    t.append(.init(role: .sharedExpert(layer: l, .up), shape: [s, h]))
                    t.append(.init(role: .sharedExpert(layer: l, .down), shape: [h, s]))
                }
            } else {
                let i = c.intermediateSize
                t.append(.init(role: .denseMLP(layer: l, .gate), shape: [i, h]))
                t.append(.init(role: .denseMLP(layer: l, .up), shape: [i, h]))
                t.append(.init(role: .denseMLP(layer: l, .down), shape: [h, i]))
            }
        }
        t.append(.init(role: .finalNorm, shape: [h]))
        if !c.tieWordEmbeddings { t.append(.init(role: .lmHead, shape: [c.vocabSize, h])) }
        if let q = c.quantization {
            let resolver = q.resolver
            t = t.flatMap { Self.components(of: $0, quantization: resolver) }
        }
        for i in t.indices { t[i].name = naming.name(t[i].role, t[i].component) }
        config = c
        self.naming = naming
        tensors = t
        byName = Dictionary(uniqueKeysWithValues: t.enumerated().map { ($1.name, $0) })
        var quantized: [TensorRole: QuantScheme] = [:]
        for e in t where e.component == .weightPacked { quantized[e.role] = e.scheme }
        quantizedRoles = quantized
    }

    /// A Linear weight as compressed-tensors stores it when its module is quantized: packed
    /// integers, scales in the checkpoint dtype, the logical shape, and zero points if asymmetric.
    static func components(of t: ExpectedTensor, quantization q: WeightQuantization.Resolver) -> [ExpectedTensor] {
        guard t.role.isLinear, t.shape.count == 2, let s = q.scheme(forModule: t.role.moduleName) else { return [t] }
        let (rows, cols) = (t.shape[0], t.shape[1])
        let groups = s.groups(cols: max(cols, 1))
        var out: [ExpectedTensor] = [
            .init(role: t.role, shape: [rows, s.packedWords(cols: cols)], component: .weightPacked, dtype: .i32, logicalShape: t.shape, scheme: s),
            .init(role: t.role, shape: [rows, groups], component: .weightScale, logicalShape: t.shape, scheme: s),
            .init(role: t.role, shape: [2], component: .weightShape, dtype: .i64, logicalShape: t.shape, scheme: s),
        ]
        if !s.symmetric {
            out.append(.init(role: t.role, shape: [(rows * s.bits + 31) / 32, groups], component: .weightZeroPoint, dtype: .i32,
                             logicalShape: t.shape, scheme: s))
        }
        return out
    }

    public subscript(name: String) -> ExpectedTensor? { byName[name].map { tensors[$0] } }

    /// Roles stored quantized, and their schemes.
    public let quantizedRoles: [TensorRole: QuantScheme]

    /// The expected tensor of a role's component.
    public func tensor(_ role: TensorRole, _ component: TensorComponent = .weight) -> ExpectedTensor? {
        self[name(role, component)]
    }

    /// The checkpoint name of a role's component.
    public func name(_ role: TensorRole, _ component: TensorComponent = .weight) -> String {
        naming.name(role, component)
    }

    // MARK: Parameter counts

    /// All parameters.
    public var totalParameters: Int { tensors.reduce(0) { $0 + $1.parameterCount } }

    /// Parameters one token touches: everything except the routed experts it is not sent to
    /// (num_experts_per_tok of n_routed_experts per MoE layer). Embedding and head included, as
    /// DeepSeek counts its "21B activated".
    public var activeParameters: Int {
        tensors.reduce(0) { $0 + (isActive($1) ? $1.parameterCount : 0) }
    }

    /// Stored bytes of the tensors `activeParameters` counts (packed words, scales and zero points
    /// in their dtypes): what a decoded token reads, the embedding's one row apart.
    public var activeWeightBytes: Int {
        tensors.reduce(0) { $0 + (isActive($1) ? storedBytes($1) : 0) }
    }

    /// Stored bytes of a role's tensors (all its components).
    public func storedBytes(of role: TensorRole) -> Int {
        tensors.reduce(0) { $0 + ($1.role == role ? storedBytes($1) : 0) }
    }

    /// Whether one token touches the tensor: k routed experts' worth (all experts have equal
    /// size, so the first k stand for any k), everything else.
    private func isActive(_ t: ExpectedTensor) -> Bool {
        if case .routedExpert(_, let e, _) = t.role { return e < (config.numExpertsPerTok ?? 0) }
        return true
    }

    /// A tensor's stored bytes: its own dtype, else `bytesPerElement`, else the config's `torch_dtype`.
    private func storedBytes(_ t: ExpectedTensor, bytesPerElement: Int? = nil) -> Int {
        t.elementCount * (t.dtype?.size ?? bytesPerElement ?? config.expectedDType.size)
    }

    /// Weight bytes each GPU holds under `tp`-way tensor parallelism, as an engine splits them
    /// (`TensorRole.tensorParallelSplit`): replicated tensors whole, split ones 1/tp (rounded up;
    /// routed experts 1/tp of their bytes whether split per expert or spread whole). Every tensor
    /// counts its own stored bytes: packed int32 words, scales and zero points in their dtype,
    /// `weight_shape`. `bytesPerElement` overrides the dtype of tensors without one of their own
    /// (nil: the config's `torch_dtype`).
    public func weightBytesPerGPU(tp: Int, bytesPerElement: Int? = nil) -> Int {
        var n = 0
        for t in tensors {
            let bytes = storedBytes(t, bytesPerElement: bytesPerElement)
            if case .replicated = t.role.tensorParallelSplit(config) { n += bytes } else { n += (bytes + tp - 1) / tp }
        }
        return n
    }
}
