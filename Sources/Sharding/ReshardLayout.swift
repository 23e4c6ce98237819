import DeepSeek
import JSON
import SafeTensors

/// What a reshard output looks like on disk, apart from which slices each rank holds (that is
/// the `ShardPlan`): where each rank's files go, what its tensors are called, how they are cut
/// into files, and which files go beside them. `Resharder` streams any layout; the manifest
/// records the layout's name so that readers (verify, merge, the tensor-parallel engine) find
/// the tensors again.
public protocol ReshardLayout: Sendable {
    /// Recorded as the manifest's `layout`.
    var name: String { get }
    /// A rank's directory inside the output (a plain name, or "." for the output itself).
    func rankDirectory(_ rank: Int, tp: Int) -> String
    /// How the rank files name tensors.
    var naming: any TensorNaming { get }
    /// How a rank's tensors are cut into files.
    func shardLayout(rank: Int, tp: Int, tensors: [TensorSpec], maxShardSize: Int) -> ShardLayout
    /// The config.json written into a rank's directory, from the source's (nil: none).
    func rankConfig(_ source: JSONObject, rank: Int, plan: ShardPlan) -> JSONObject?
    /// Why this layout cannot hold a plan (or a packed output): nil when it can.
    func refusal(plan: ShardPlan, compressed: Bool) -> String?
    /// Files this layout writes beside the ranks' (name → text), derived from the source config;
    /// recorded in the manifest with the side files of the first rank's directory. Throws where
    /// the config cannot be expressed, before anything is written.
    func generatedFiles(config: ModelConfig) throws(ModelError) -> [(name: String, text: String)]
}

extension ReshardLayout {
    public func generatedFiles(config: ModelConfig) throws(ModelError) -> [(name: String, text: String)] { [] }
}

/// The layouts dsconv writes and reads, by the name the manifest records.
public enum ReshardLayouts {
    public static let all: [any ReshardLayout] = [HuggingFaceRankLayout(), DeepSeekLayout()]

    public static func named(_ name: String) -> (any ReshardLayout)? { all.first { $0.name == name } }

    public static var names: [String] { all.map(\.name) }
}

/// `rank-NN/` directories, each a Hugging Face checkpoint of its own: config.json with a
/// `tensor_parallel` entry, `model-…-of-….safetensors` shards and their index, the side files.
public struct HuggingFaceRankLayout: ReshardLayout {
    public init() {}

    public var name: String { ReshardManifest.layout }

    public func rankDirectory(_ rank: Int, tp: Int) -> String { ReshardManifest.rankDirectory(rank) }

    public var naming: any TensorNaming { HuggingFaceNaming() }

    public func shardLayout(rank: Int, tp: Int, tensors: [TensorSpec], maxShardSize: Int) -> ShardLayout {
        ShardLayout(tensors: tensors, maxShardSize: maxShardSize)
    }

    public func rankConfig(_ source: JSONObject, rank: Int, plan: ShardPlan) -> JSONObject? {
        var config = source
        config["tensor_parallel"] = ["size": JSONValue(plan.tp), "rank": JSONValue(rank), "experts": .string(plan.experts.rawValue),
                                     "local_experts": JSONValue(plan.localExperts[rank])]
        return config
    }

    public func refusal(plan: ShardPlan, compressed: Bool) -> String? { nil }
}

/// What DeepSeek's own distributed inference loads (`inference/generate.py --ckpt-path OUT` of
/// DeepSeek-V3, whose `config_236B.json` / `config_16B.json` describe V2.5 / V2-Lite): one file per
/// rank, `OUT/model{r}-mp{N}.safetensors`, DeepSeek's tensor names (`DeepSeekNaming`), routed
/// experts whole on their rank (E/N each), every other tensor split or replicated by the same rules
/// as the default layout; the tokenizer files copied, as its `convert.py` does. config.json (the
/// source's, unchanged) is kept beside them for dsconv's readers; DeepSeek's code takes its own
/// `--config`.
public struct DeepSeekLayout: ReshardLayout {
    public init() {}

    public var name: String { "deepseek" }

    public func rankDirectory(_ rank: Int, tp: Int) -> String { "." }

    public var naming: any TensorNaming { DeepSeekNaming() }

    public static func fileName(rank: Int, tp: Int) -> String { "model\(rank)-mp\(tp).safetensors" }

    public func shardLayout(rank: Int, tp: Int, tensors: [TensorSpec], maxShardSize: Int) -> ShardLayout {
        ShardLayout(tensors: tensors, singleFile: Self.fileName(rank: rank, tp: tp))
    }

    public func rankConfig(_ source: JSONObject, rank: Int, plan: ShardPlan) -> JSONObject? { source }


    public func refusal(plan: ShardPlan, compressed: Bool) -> String? {
        if plan.config.quantization != nil {
            return "--layout deepseek: DeepSeek's loader reads BF16 (or its own FP8) weights, not compressed-tensors int4/int8; reshard the BF16 source, or serve the quantized directory with vLLM --tensor-parallel-size N"
        }
        if compressed { return "--layout deepseek cannot be --compress'ed: DeepSeek's loader reads plain safetensors files (pack the output afterwards with dsconv pack if you only need to store it)" }
        if plan.experts != .ep { return "--layout deepseek keeps routed experts whole on their rank (as DeepSeek's convert.py): use --experts ep" }
        return nil
    }

    /// `generate-config.json`: the ModelArgs `generate.py --config` takes for this model
    /// (DeepSeek's shipped config_236B.json lacks V2.5's mscale).
    public func generatedFiles(config: ModelConfig) throws(ModelError) -> [(name: String, text: String)] {
        [(DeepSeekModelArgs.fileName, try DeepSeekModelArgs(config: config).text)]
    }
}
