import DeepSeek
import JSON
import Quantization

/// What a directory is, as far as the engines are concerned.
public enum ServedForm: Sendable, Equatable {
    /// Hugging Face safetensors (BF16 or compressed-tensors): what vLLM and transformers load.
    case checkpoint
    /// A `dsconv pack` output (zstd-framed shards): no engine reads it before `dsconv unpack`.
    case packed
    /// A `dsconv reshard` output; `deepseek`: DeepSeek's `model{r}-mp{N}.safetensors` layout.
    case reshard(tp: Int, deepseekLayout: Bool)
}

/// One engine's verdict on a directory: whether it loads, the rule that decides, and the
/// command that serves it (or the way to an output that loads).
public struct EngineStatement: Sendable {
    public enum Engine: String, Sendable { case vllm, transformers, deepseek }
    public let engine: Engine
    /// vLLM's target; nil for the other engines.
    public let target: VLLMTarget?
    public let loads: Bool
    public let rule: String
    public let command: String?

    public var json: JSONValue {
        var o = JSONObject()
        if let t = target {
            o["tp"] = JSONValue(t.tp)
            o["capability"] = .string(t.gpu.capability)
            o["gpus"] = .string(t.gpu.cards)
            o["expert_parallel"] = .bool(t.expertParallel)
        }
        o["loads"] = .bool(loads)
        o["rule"] = .string(rule)
        o["command"] = command.map { .string($0) } ?? .null
        return .object(o)
    }
}

/// What each engine does with a directory dsconv reads or writes: vLLM 0.34 at TP 1/2/4/8 on
/// A100 and H100/H200, with and without expert parallelism (`VLLMRules`); transformers 5.24 with
/// compressed-tensors 0.20; DeepSeek's `inference/generate.py`. `inspect` prints it and
/// `quantize` ends with it; `Scripts/serving-check` holds the vLLM verdicts against vLLM's code.
public enum EngineReport {
    /// `remoteCode`: the Python files `config.json`'s `auto_map` names; `missingRemoteCode`: those
    /// the directory lacks.
    public static func statements(config c: ModelConfig, form: ServedForm, directory: String,
                                  remoteCode: [String] = [], missingRemoteCode: [String] = []) -> [EngineStatement] {
        var out: [EngineStatement] = []
        let resolver = c.quantization?.resolver
        let scheme: (TensorRole) -> QuantScheme? = { resolver?.scheme(forModule: $0.moduleName) }
        for tp in VLLMTarget.tensorParallelSizes {
            for gpu in GPUGeneration.allCases {
                for ep in [false, true] {
                    let t = VLLMTarget(tp: tp, gpu: gpu, expertParallel: ep)
                    switch form {
                    case .packed:
                        out.append(.init(engine: .vllm, target: t, loads: false, rule: "a packed directory: vLLM reads plain safetensors (dsconv unpack first)", command: nil))
                    case .reshard:
                        out.append(.init(engine: .vllm, target: t, loads: false, rule: "a reshard output: vLLM cuts the whole checkpoint itself at load (serve the source, or dsconv merge this)", command: nil))
                    case .checkpoint:
                        if let g = c.quantization?.groups.first(where: { ["group", "dynamic"].contains($0.actorder ?? "") }) {
                            out.append(.init(engine: .vllm, target: t, loads: false,
                                             rule: "quantization_config \(g.name): actorder \"\(g.actorder ?? "")\" is no longer supported by vLLM's compressed-tensors config", command: nil))
                        } else if let r = VLLMRules.firstRefusal(config: c, scheme: scheme, target: t) {
                            out.append(.init(engine: .vllm, target: t, loads: false, rule: r.description, command: nil))
                        } else {
                            out.append(.init(engine: .vllm, target: t, loads: true, rule: acceptance(c, target: t), command: t.command(directory, remoteCode: !remoteCode.isEmpty)))
                        }
                    }
                }
            }
        }
        out.append(transformers(c, form: form, directory: directory, remoteCode: !remoteCode.isEmpty, missingRemoteCode: missingRemoteCode))
        out.append(deepseek(c, form: form, directory: directory))
        return out
    }

    static func acceptance(_ c: ModelConfig, target t: VLLMTarget) -> String {
        guard let q = c.quantization else { return "BF16: every layer split by vLLM's tensor-parallel rules" }
        let schemes = Set(q.groups.map(\.scheme.description)).sorted().joined(separator: ", ")
        return "compressed-tensors WNA16 (\(schemes)): every layer's groups whole on each rank at tp \(t.tp)"
            + (t.expertParallel ? ", routed experts whole on their rank" : "")
    }

    static func transformers(_ c: ModelConfig, form: ServedForm, directory: String, remoteCode: Bool, missingRemoteCode: [String]) -> EngineStatement {
        let command = "AutoModelForCausalLM.from_pretrained(\"\(directory)\"" + (remoteCode ? ", trust_remote_code=True)" : ")")
        switch form {
        case .packed: return .init(engine: .transformers, target: nil, loads: false, rule: "a packed directory (dsconv unpack first)", command: nil)
        case .reshard: return .init(engine: .transformers, target: nil, loads: false, rule: "a reshard output holds slices (dsconv merge first)", command: nil)
        case .checkpoint: break
        }
        if !missingRemoteCode.isEmpty {
            return .init(engine: .transformers, target: nil, loads: false,
                         rule: "config.json's auto_map names \(missingRemoteCode.joined(separator: ", ")), missing here: trust_remote_code fails (copy them from the source model)", command: nil)
        }
        if let q = c.quantization, let asym = q.groups.first(where: { !$0.scheme.symmetric }) {
            return .init(engine: .transformers, target: nil, loads: false,
                         rule: "\(asym.scheme): transformers 5.24's compressed-tensors loading drops zero points of fused MoE experts (\"Asymmetric quant requires zero-point values\"); quantize symmetric for transformers", command: nil)
        }
        return .init(engine: .transformers, target: nil, loads: true,
                     rule: c.quantization == nil ? "BF16 DeepseekV2ForCausalLM" : "compressed-tensors pack-quantized, decompressed on load", command: command)
    }

    static func deepseek(_ c: ModelConfig, form: ServedForm, directory: String) -> EngineStatement {
        guard case .reshard(let tp, true) = form else {
            let why = c.quantization != nil
                ? "DeepSeek's inference/model.py reads BF16 (or its own FP8) weights, not compressed-tensors"
                : "DeepSeek's generate.py reads model{rank}-mp{N}.safetensors: dsconv reshard SRC --tp N --experts ep --layout deepseek"
            return .init(engine: .deepseek, target: nil, loads: false, rule: why, command: nil)
        }
        do {
            _ = try DeepSeekModelArgs(config: c)
        } catch {
            return .init(engine: .deepseek, target: nil, loads: false, rule: "\(error)", command: nil)
        }
        return .init(engine: .deepseek, target: nil, loads: true,
                     rule: "model{rank}-mp\(tp).safetensors with \(DeepSeekModelArgs.fileName) (ModelArgs derived from config.json)",
                     command: "torchrun --nproc-per-node \(tp) generate.py --ckpt-path \(directory) --config \(directory)/\(DeepSeekModelArgs.fileName) --interactive")
    }
}
