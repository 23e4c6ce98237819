import ArgumentParser
import Checkpoints
import DeepSeek
import Foundation
import JSON
import Kernels
import SafeTensors

struct Dequantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a quantized (compressed-tensors) checkpoint back as BF16, each weight exactly as compressed-tensors decompresses it.")

    @Argument(help: "Quantized checkpoint directory.")
    var source: String

    @Option(help: "Output directory.")
    var out: String

    @OptionGroup var shardSize: ShardSizeOption
    var maxShardSize: String { shardSize.maxShardSize }

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    func validate() throws {
    }

    func run() throws {
        try runCommand {
            let ckpt = try OpenedCheckpoint.open(source, threads: 1).plain(for: "dequantize")
            guard ckpt.config.quantization != nil else {
                throw ModelError.badInput("\(source): not quantized (config.json has no quantization_config)")
            }
            guard case .object(var object) = try JSONParser.parse(try readWholeFile(source + "/config.json")) else {
                throw ModelError.invalidConfig(file: source + "/config.json", field: "", message: "not a JSON object")
            }
            object["quantization_config"] = nil
            var plain = ckpt.config
            plain.quantization = nil
            let schema = TensorSchema(config: plain)
            let specs = try schema.tensors.map { t -> TensorSpec in
                if ckpt.schema.quantizedRoles[t.role] != nil { return TensorSpec(name: t.name, dtype: .bf16, shape: t.shape) }
                let loc = try ckpt.tensor(t.role)
                return TensorSpec(name: t.name, dtype: loc.info.dtype, shape: loc.info.shape)
            }
            let progress = Progress("dequantize")
            try OutputDirectory.write(out, force: force, inputs: [source], producer: "dsconv dequantize") { output in
                try writeFileAtomically(output.path("config.json"), JSONValue.object(object).serialized(pretty: true) + "\n")
                for f in Checkpoint.sideFiles(in: source) {
                    try copyFile(from: source + "/" + f, to: output.path(f))
                }
                let writer = ShardedWriter(directory: output.partialPath, tensors: specs, maxShardSize: parseSize(maxShardSize) ?? 5_000_000_000,
                                           metadata: ["format": "pt", "producer": "dsconv dequantize"])
                do {
                    for (i, t) in schema.tensors.enumerated() {
                        if ckpt.schema.quantizedRoles[t.role] != nil {
                            // The packed weight's values are bf16 numbers: the f32 conversion is exact.
                            let bits = try ckpt.matrix(t.role).toF32().map { UInt16($0.bitPattern >> 16) }
                            try bits.withUnsafeBytes { try writer.write(t.name, from: .bytes($0)) }
                        } else {
                            try writer.write(t.name, from: .bytes(try ckpt.tensor(t.role).data))
                        }
                        progress.update(done: i + 1, total: schema.tensors.count)
                    }
                    try writer.finish()
                } catch {
                    writer.abort()
                    throw error
                }
            }
            note("wrote \(out): \(schema.tensors.count) tensors, BF16")
            return Exit.ok
        }
    }
}
