import DeepSeek
import JSON
import SafeTensors

/// A quantized (compressed-tensors) checkpoint written back as BF16: every quantized weight
/// exactly as compressed-tensors decompresses it (its values are bf16 numbers, so the f32
/// conversion is exact), every other tensor byte for byte, config.json without its
/// `quantization_config`, the side files carried (`DerivedCheckpoint`).
public struct Dequantizer {
    public let source: Checkpoint
    /// The BF16 model's schema.
    public let schema: TensorSchema
    let configText: String
    let specs: [TensorSpec]

    public init(source: Checkpoint) throws {
        guard source.config.quantization != nil else {
            throw ModelError.badInput("\(source.directory): not quantized (config.json has no quantization_config)")
        }
        let path = source.directory + "/config.json"
        guard case .object(var object) = try JSONParser.parse(try readWholeFile(path)) else {
            throw ModelError.invalidConfig(file: path, field: "", message: "not a JSON object")
        }
        object["quantization_config"] = nil
        configText = JSONValue.object(object).serialized(pretty: true) + "\n"
        var plain = source.config
        plain.quantization = nil
        schema = TensorSchema(config: plain)
        specs = try schema.tensors.map { t -> TensorSpec in
            if source.schema.quantizedRoles[t.role] != nil { return TensorSpec(name: t.name, dtype: .bf16, shape: t.shape) }
            let loc = try source.tensor(t.role)
            return TensorSpec(name: t.name, dtype: loc.info.dtype, shape: loc.info.shape)
        }
        self.source = source
    }

    public func write(into out: OutputDirectory, maxShardSize: Int, progress: ((Int, Int) -> Void)? = nil) throws {
        let writer = ShardedWriter(directory: out.partialPath, tensors: specs, maxShardSize: maxShardSize,
                                   metadata: ["format": "pt", "producer": "dsconv dequantize"])
        try DerivedCheckpoint.write(into: out, configText: configText, sideFilesFrom: source.directory, writer: writer) { writer in
            for (i, t) in schema.tensors.enumerated() {
                if source.schema.quantizedRoles[t.role] != nil {
                    let bits = try source.matrix(t.role).toF32().map { UInt16($0.bitPattern >> 16) }
                    try bits.withUnsafeBytes { try writer.write(t.name, from: .bytes($0)) }
                } else {
                    try writer.write(t.name, from: .bytes(try source.tensor(t.role).data))
                }
                progress?(i + 1, schema.tensors.count)
            }
        }
    }
}
