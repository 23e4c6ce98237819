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
    /// A rank's directory inside the output (a plain name).
    func rankDirectory(_ rank: Int, tp: Int) -> String
    /// How the rank files name tensors.
    var naming: any TensorNaming { get }
    /// How a rank's tensors are cut into files.
    func shardLayout(rank: Int, tp: Int, tensors: [TensorSpec], maxShardSize: Int) -> ShardLayout
    /// The config.json written into a rank's directory, from the source's (nil: none).
    func rankConfig(_ source: JSONObject, rank: Int, plan: ShardPlan) -> JSONObject?
    /// Files of the source copied as they are into every rank's directory.
    var copiedFiles: [String] { get }
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

    public var copiedFiles: [String] { Checkpoint.sideFiles.filter { $0 != "config.json" } }
}
