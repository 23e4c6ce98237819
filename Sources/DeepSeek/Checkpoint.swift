import Kernels
import SafeTensors

/// A model directory: config.json, the safetensors shards (and index), the tokenizer files.
/// Opening it validates every header and the index; tensor data stays mapped, untouched.
public final class Checkpoint: WeightSource, @unchecked Sendable {
    public static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json"]
    /// Files copied as they are into every output directory (reshard ranks, packed output, ...).
    public static let sideFiles = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                   "special_tokens_map.json", "README.md", "LICENSE"]

    public let directory: String
    public let config: ModelConfig
    public let schema: TensorSchema
    public let weights: ShardedCheckpoint
    /// The forward pass's view of the weights.
    public let source: StoreWeights

    public init(directory: String) throws {
        self.directory = directory
        config = try ModelConfig.load(path: directory + "/config.json")
        schema = TensorSchema(config: config)
        weights = try ShardedCheckpoint(directory: directory)
        source = StoreWeights(store: weights, schema: schema)
    }

    /// The dtype the config's `torch_dtype` calls for.
    public var expectedDType: DType { config.expectedDType }

    public func tensor(_ role: TensorRole) throws -> TensorLocation {
        let name = schema.name(role)
        guard let t = weights[name] else {
            throw ModelError.badTensor(file: directory, tensor: name, message: "missing from the checkpoint")
        }
        return t
    }

    public func matrix(_ role: TensorRole) throws -> WeightMatrix { try source.matrix(role) }
}
