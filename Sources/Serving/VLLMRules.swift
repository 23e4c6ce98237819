import DeepSeek
import Quantization

/// The GPU generations vLLM chooses kernels for by compute capability.
public enum GPUGeneration: String, CaseIterable, Sendable, Comparable {
    /// Capability 8.0: A100 (and the Ampere/Ada cards that take the same kernels).
    case ampere = "8.0"
    /// Capability 9.0: H100, H200.
    case hopper = "9.0"

    public var cards: String { self == .ampere ? "A100" : "H100/H200" }
    public var capability: String { rawValue }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    public init?(argument: String) {
        switch argument.lowercased() {
        case "8.0", "a100", "ampere": self = .ampere
        case "9.0", "h100", "h200", "hopper": self = .hopper
        default: return nil
        }
    }
}

/// One way vLLM may be asked to serve a checkpoint.
public struct VLLMTarget: Hashable, Sendable, Comparable {
    public let tp: Int
    public let gpu: GPUGeneration
    /// `--enable-expert-parallel`: routed experts whole on their rank, not split by TP.
    public let expertParallel: Bool

    public init(tp: Int, gpu: GPUGeneration, expertParallel: Bool) {
        self.tp = tp
        self.gpu = gpu
        self.expertParallel = expertParallel
    }

    public static let tensorParallelSizes = [1, 2, 4, 8]

    /// The command line that serves `directory` this way (`remoteCode`: config.json has an
    /// `auto_map`, whose Python files vLLM imports only when trusted).
    public func command(_ directory: String, remoteCode: Bool) -> String {
        "vllm serve \(directory) --tensor-parallel-size \(tp)" + (expertParallel ? " --enable-expert-parallel" : "")
            + (remoteCode ? " --trust-remote-code" : "")
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.tp, a.gpu, a.expertParallel ? 1 : 0) < (b.tp, b.gpu, b.expertParallel ? 1 : 0)
    }
}

/// What vLLM (0.34.0) does with a DeepSeek-V2 checkpoint at a target: the rules of its
/// compressed-tensors W4A16/W8A16 path, module by module in the order its
/// `DeepseekV2ForCausalLM` builds them, and the first refusal, as vLLM reports it. Each rule
/// cites the vLLM code it mirrors (Formats/serving.md); `Scripts/serving-check` runs vLLM's own
/// code over real-width checkpoints and asserts these verdicts cell by cell.
public enum VLLMRules {
    public struct Refusal: Sendable, Equatable, CustomStringConvertible {
        /// The module (or "engine") vLLM refuses.
        public let module: String
        public let rule: String
        public var description: String { "\(module): \(rule)" }
    }

    /// How vLLM's DeepseekV2 builds a Linear: which dimension TP splits.
    enum LinearKind {
        /// Whole on every rank (`fused_qkv_a_proj`, `kv_a_proj_with_mqa`).
        case replicated
        /// Output split (`q_b_proj`, `q_proj`, `kv_b_proj`, the gate_up merges).
        case column
        /// Input split (`o_proj`, `down_proj`).
        case row
    }

    // MARK: Linear layers: CompressedTensorsWNA16.create_weights

    /// A quantized Linear (vLLM's `CompressedTensorsWNA16`), `nil` when vLLM takes it.
    /// `inputs`/`outputs` are the full weight's; `parts` the output partition sizes at this TP.
    static func linearRefusal(_ s: QuantScheme, kind: LinearKind, inputs: Int, outputs: [Int], target: VLLMTarget) -> String? {
        let tp = target.tp
        let inPart = kind == .row ? inputs / tp : inputs
        if kind == .row, inputs % tp != 0 { return "input width \(inputs) does not split \(tp) ways" }
        if kind == .column, outputs.contains(where: { $0 % tp != 0 }) { return "output width \(outputs) does not split \(tp) ways" }
        // choose_mp_linear_kernel (kernels/linear/__init__.py) never refuses here: Humming, a vLLM
        // 0.34 requirement, implements every 16-bit-activation int4/int8 layer (Machete and Marlin,
        // when their conditions hold, only make it faster).
        // create_weights: scales are cut with the weight unless a per-channel layer is row-parallel
        // (marlin_repeat_scales_on_all_ranks); then verify_group_size_divides_partition.
        let rowParallel = inputs != inPart
        let group = s.groupSize ?? inputs
        if !(s.groupSize == nil && rowParallel), inPart % group != 0 {
            return "input_size_per_partition \(inPart) is not divisible by group_size \(group)"
        }
        return nil
    }

    // MARK: Routed experts: CompressedTensorsWNA16MoEMethod

    /// A layer's routed experts, all with scheme `s` (vLLM reads expert 0's gate, up and down and
    /// refuses a layer whose three differ).
    static func expertsRefusal(_ s: QuantScheme, hidden: Int, intermediate: Int, experts: Int, target: VLLMTarget) -> String? {
        let tp = target.tp
        let interPart = target.expertParallel ? intermediate : intermediate / tp
        if !target.expertParallel, intermediate % tp != 0 { return "expert width \(intermediate) does not split \(tp) ways" }
        let group = s.groupSize ?? -1
        // select_wna16_moe_backend (fused_moe/oracle/int_wna16.py): no backend takes uint8 with zero points.
        if !s.symmetric && s.bits == 8 {
            return "no WNA16 MoE backend takes int8 with zero points (uint8); use symmetric int8, or --bits 4 --asymmetric"
        }
        // Backends in priority order: on 8.0 Marlin, Triton, Humming; on 9.0 Humming moves ahead
        // of Marlin (humming/priority.py) and takes every symmetric layer and asymmetric int4 in
        // groups of 32. Marlin takes groups of 32/64/128 or per channel (int4 with or without zero
        // points, symmetric int8) when the hidden size is a multiple of 128 and each rank's expert
        // width holds whole groups (check_moe_marlin_supports_config, tile padding allowed).
        // Every other backend runs the path that asserts group scales.
        let humming = target.gpu == .hopper && (s.symmetric || (s.bits == 4 && s.groupSize == 32))
        let marlin = !humming && Self.marlinMoETakes(s, hidden: hidden, interPart: interPart)
        if !marlin && s.groupSize == nil {
            return "per-channel scales on routed experts: \(humming ? "on 9.0 the Humming MoE backend is chosen before Marlin and" : "Marlin cannot take this layer and") the WNA16 MoE method then needs group scales (assert weight_quant.strategy == \"group\")"
        }
        if s.groupSize != nil {
            if hidden % group != 0 { return "hidden_size \(hidden) is not divisible by group_size \(group)" }
            if interPart % group != 0 {
                return "MoE intermediate size per partition \(interPart) is not divisible by group_size \(group)"
            }
        }
        if !s.symmetric {
            let packFactor = 32 / s.bits
            if (2 * interPart) % packFactor != 0 { return "gate+up output channels per rank \(2 * interPart) are not divisible by \(packFactor) (packed zero points)" }
            if hidden % packFactor != 0 { return "hidden_size \(hidden) is not divisible by \(packFactor) (packed zero points)" }
        }
        return nil
    }

    // MARK: The model

    /// The first refusal vLLM meets building and loading the model at `target`, in its order:
    /// engine checks, then each layer's attention, shared experts and routed experts.
    public static func firstRefusal(config c: ModelConfig, scheme: (TensorRole) -> QuantScheme?, target: VLLMTarget) -> Refusal? {
        refusals(config: c, scheme: scheme, target: target, firstOnly: true).first
    }

    /// Every refusal, in vLLM's construction order (vLLM itself reports the first only).
    public static func refusals(config c: ModelConfig, scheme: (TensorRole) -> QuantScheme?, target: VLLMTarget,
                                firstOnly: Bool = false) -> [Refusal] {
        var out: [Refusal] = []
        if let why = engineRefusal(config: c, tp: target.tp) { return [why] }
        // ParallelLMHead is not matched by the "Linear" target (its class name lacks "linear"):
        // vLLM's head stays BF16 and a packed lm_head fails in load_weights.
        if scheme(.lmHead) != nil {
            out.append(Refusal(module: "lm_head", rule: "quantized, but vLLM's ParallelLMHead stays BF16 (no parameter named lm_head.weight_packed)"))
            if firstOnly { return out }
        }
        for l in 0..<c.numHiddenLayers {
            for group in moduleGroups(config: c, layer: l) {
                // vLLM reads expert 0's scheme and loads every expert's tensors into parameters
                // shaped by it: an expert with another scheme fails in load_weights.
                if group.isRoutedExperts, let e0 = group.roles.first.map(scheme),
                   let other = group.roles.first(where: { scheme($0) != e0 }) {
                    out.append(Refusal(module: group.vllmName, rule: "\(other.moduleName) has another scheme than expert 0 (vLLM loads every expert with expert 0's)"))
                    if firstOnly { return out }
                    continue
                }
                if let why = refusal(group, config: c, scheme: scheme, target: target) {
                    out.append(Refusal(module: group.vllmName, rule: why))
                    if firstOnly { return out }
                }
            }
        }
        return out
    }

    /// What refuses the model before any quantization matters: the parallel config's head split
    /// (`num_attention_heads % tensor_parallel_size`) and the MLA attention backends, built for
    /// DeepSeek's own head dimensions (latent 512 + rope 64, q/k 128 + 64, v 128): vLLM finds no
    /// MLA prefill backend for other widths (tiny test models).
    public static func engineRefusal(config c: ModelConfig, tp: Int) -> Refusal? {
        if c.numAttentionHeads % tp != 0 {
            return Refusal(module: "engine", rule: "\(c.numAttentionHeads) attention heads are not divisible by tensor parallel size \(tp)")
        }
        if c.kvLoraRank != 512 || c.qkRopeHeadDim != 64 || c.qkNopeHeadDim != 128 || c.vHeadDim != 128 {
            return Refusal(module: "attention", rule: "no MLA attention backend for kv_lora_rank \(c.kvLoraRank), qk_rope_head_dim \(c.qkRopeHeadDim), qk_nope_head_dim \(c.qkNopeHeadDim), v_head_dim \(c.vHeadDim) (vLLM's MLA kernels take DeepSeek's 512/64/128/128)")
        }
        return nil
    }

    /// The modules vLLM builds as one layer (and so with one scheme): a fused projection, a
    /// Linear, or a layer's routed experts.
    public struct ModuleGroup: Sendable {
        public let roles: [TensorRole]
        /// vLLM's name of the module.
        public let vllmName: String
        let kind: Kind
        enum Kind { case linear(LinearKind, inputs: Int, outputs: [Int]), experts(hidden: Int, intermediate: Int, count: Int) }

        public var isRoutedExperts: Bool { if case .experts = kind { return true }; return false }
    }

    /// How vLLM builds a Linear of this role, from the one tensor-parallel rule the role carries
    /// (`TensorRole.tensorParallelSplit`): replicated, column (output) split, row (input) split.
    static func linearKind(_ role: TensorRole, _ c: ModelConfig) -> LinearKind {
        switch role.tensorParallelSplit(c) {
        case .replicated: return .replicated
        case .split(let dim, _, _), .routedExpert(let dim): return dim == 0 ? .column : .row
        }
    }

    /// The quantizable module groups of layer `l` in vLLM's construction order.
    public static func moduleGroups(config c: ModelConfig, layer l: Int) -> [ModuleGroup] {
        let p = "model.layers.\(l)"
        var g: [ModuleGroup] = []
        let kvA = c.kvLoraRank + c.qkRopeHeadDim
        if let q = c.qLoraRank {
            g.append(ModuleGroup(roles: [.qA(layer: l), .kvA(layer: l)], vllmName: "\(p).self_attn.fused_qkv_a_proj",
                                 kind: .linear(linearKind(.qA(layer: l), c), inputs: c.hiddenSize, outputs: [q, kvA])))
            g.append(ModuleGroup(roles: [.qB(layer: l)], vllmName: "\(p).self_attn.q_b_proj",
                                 kind: .linear(linearKind(.qB(layer: l), c), inputs: q, outputs: [c.numAttentionHeads * c.qHeadDim])))
        } else {
            g.append(ModuleGroup(roles: [.q(layer: l)], vllmName: "\(p).self_attn.q_proj",
                                 kind: .linear(linearKind(.q(layer: l), c), inputs: c.hiddenSize, outputs: [c.numAttentionHeads * c.qHeadDim])))
            g.append(ModuleGroup(roles: [.kvA(layer: l)], vllmName: "\(p).self_attn.kv_a_proj_with_mqa",
                                 kind: .linear(linearKind(.kvA(layer: l), c), inputs: c.hiddenSize, outputs: [kvA])))
        }
        g.append(ModuleGroup(roles: [.kvB(layer: l)], vllmName: "\(p).self_attn.kv_b_proj",
                             kind: .linear(linearKind(.kvB(layer: l), c), inputs: c.kvLoraRank, outputs: [c.numAttentionHeads * (c.qkNopeHeadDim + c.vHeadDim)])))
        g.append(ModuleGroup(roles: [.o(layer: l)], vllmName: "\(p).self_attn.o_proj",
                             kind: .linear(linearKind(.o(layer: l), c), inputs: c.numAttentionHeads * c.vHeadDim, outputs: [c.hiddenSize])))
        if c.isMoELayer(l) {
            let w = c.sharedExpertWidth
            if w > 0 {
                g.append(ModuleGroup(roles: [.sharedExpert(layer: l, .gate), .sharedExpert(layer: l, .up)], vllmName: "\(p).mlp.shared_experts.gate_up_proj",
                                     kind: .linear(linearKind(.sharedExpert(layer: l, .gate), c), inputs: c.hiddenSize, outputs: [w, w])))
                g.append(ModuleGroup(roles: [.sharedExpert(layer: l, .down)], vllmName: "\(p).mlp.shared_experts.down_proj",
                                     kind: .linear(linearKind(.sharedExpert(layer: l, .down), c), inputs: w, outputs: [c.hiddenSize])))
            }
            let n = c.nRoutedExperts ?? 0
            let roles = (0..<n).flatMap { e in MLPProjection.allCases.map { TensorRole.routedExpert(layer: l, expert: e, $0) } }
            g.append(ModuleGroup(roles: roles, vllmName: "\(p).mlp.experts",
                                 kind: .experts(hidden: c.hiddenSize, intermediate: c.moeIntermediateSize, count: n)))
        } else {
            let w = c.intermediateSize
            g.append(ModuleGroup(roles: [.denseMLP(layer: l, .gate), .denseMLP(layer: l, .up)], vllmName: "\(p).mlp.gate_up_proj",
                                 kind: .linear(linearKind(.denseMLP(layer: l, .gate), c), inputs: c.hiddenSize, outputs: [w, w])))
            g.append(ModuleGroup(roles: [.denseMLP(layer: l, .down)], vllmName: "\(p).mlp.down_proj",
                                 kind: .linear(linearKind(.denseMLP(layer: l, .down), c), inputs: w, outputs: [c.hiddenSize])))
        }
        return g
    }

    /// Whether vLLM takes a module group with the schemes `scheme` gives its roles.
    public static func refusal(_ group: ModuleGroup, config c: ModelConfig, scheme: (TensorRole) -> QuantScheme?, target: VLLMTarget) -> String? {
        switch group.kind {
        case .linear(let kind, let inputs, let outputs):
            let schemes = group.roles.map(scheme)
            guard let first = schemes.first else { return nil }
            if schemes.contains(where: { $0 != first }) {
                return "its fused parts (\(group.roles.map(\.moduleName).joined(separator: ", "))) have different schemes"
            }
            guard let s = first else { return nil }
            return linearRefusal(s, kind: kind, inputs: inputs, outputs: outputs, target: target)
        case .experts(let hidden, let intermediate, let count):
            guard let e0 = group.roles.first(where: { $0.expert == 0 }) else { return nil }
            let layer = e0.layer ?? 0
            let e0Schemes = MLPProjection.allCases.map { scheme(.routedExpert(layer: layer, expert: 0, $0)) }
            if e0Schemes.contains(where: { $0 != e0Schemes[0] }) {
                return "All MoE projections need to have same quantization scheme (expert 0's gate, up and down differ)"
            }
            guard let s = e0Schemes[0] else { return nil }
            return expertsRefusal(s, hidden: hidden, intermediate: intermediate, experts: count, target: target)
        }
    }

    /// `check_moe_marlin_supports_config(…, allow_tile_padding=True)` and Marlin MoE's weight keys
    /// (int4 with or without zero points, symmetric int8).
    static func marlinMoETakes(_ s: QuantScheme, hidden: Int, interPart: Int) -> Bool {
        let g = s.groupSize ?? -1
        guard [-1, 32, 64, 128].contains(g), hidden % 128 == 0 else { return false }
        guard s.symmetric || s.bits == 4 else { return false }
        return g <= 0 || interPart % g == 0
    }
}
