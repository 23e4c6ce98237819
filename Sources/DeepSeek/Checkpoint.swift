import SafeTensors

/// A model directory: config.json, the safetensors shards (and index), the tokenizer files.
/// Opening it validates every header and the index; tensor data stays mapped, untouched.
public final class Checkpoint: @unchecked Sendable {
    public static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json"]
    /// Files copied as they are into every output directory (reshard ranks, packed output, ...).
    public static let sideFiles = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                   "special_tokens_map.json", "README.md", "LICENSE"]

    public let directory: String
    public let config: ModelConfig
    public let schema: TensorSchema
    public let weights: ShardedCheckpoint
    /// Packed weight views (and their small copies) of a quantized checkpoint.
    let packedWeights = WeightCache()

    public init(directory: String) throws {
        self.directory = directory
        config = try ModelConfig.load(path: directory + "/config.json")
        schema = TensorSchema(config: config)
        weights = try ShardedCheckpoint(directory: directory)
    }

    /// The dtype the config's `torch_dtype` calls for.
    public var expectedDType: DType { config.expectedDType }

    public func tensor(_ role: TensorRole) throws -> TensorLocation {
        guard let t = weights[role.name] else {
            throw ModelError.badTensor(file: directory, tensor: role.name, message: "missing from the checkpoint")
        }
        return t
    }
}
