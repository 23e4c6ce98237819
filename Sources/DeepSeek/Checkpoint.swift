import Foundation
import JSON
import Kernels
import SafeTensors

/// A model directory: config.json, the safetensors shards (and index), the tokenizer files.
/// Opening it validates every header and the index; tensor data stays mapped, untouched.
public final class Checkpoint: WeightSource, @unchecked Sendable {
    public static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json"]
    /// Side files every engine reads beside the weights, whatever else the directory holds.
    static let knownSideFiles: Set<String> = ["generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                              "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                                              "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model"]

    /// The files of a model directory that every derived output (quantize, reshard ranks, merge,
    /// dequantize, pack, synth) copies byte for byte beside its weights, config.json excepted
    /// (each writer writes its own): the generation and tokenizer files (and, as DeepSeek's
    /// convert.py, any file whose name contains "token"), every `*.py` (the remote code that
    /// `config.json`'s `auto_map` names for `--trust-remote-code`), LICENSE, README, NOTICE and
    /// other `*.md`. Weights, indexes, dsconv's manifests and generated files are never among them.
    public static func sideFiles(in directory: String) -> [String] {
        guard let names = try? listDirectory(directory) else { return [] }
        return names.filter { n in
            guard FileRecord.isPlainName(n), !n.hasPrefix("."), !n.hasPrefix("dsconv-"), n != "config.json",
                  isRegularFile(directory + "/" + n) else { return false }
            let lower = n.lowercased()
            for weightSuffix in [".safetensors", ".safetensors.index.json", ".zst", ".bin", ".bin.index.json", ".pt", ".pth", ".gguf", ".ckpt", ".h5"]
            where lower.hasSuffix(weightSuffix) { return false }
            if knownSideFiles.contains(n) || lower.contains("token") || lower.hasSuffix(".py") || lower.hasSuffix(".md") { return true }
            return ["LICENSE", "README", "NOTICE", "COPYING"].contains { n.uppercased().hasPrefix($0) }
        }.sorted()
    }

    /// The Python files `config.json`'s `auto_map` names (`"AutoModelForCausalLM":
    /// "modeling_deepseek.DeepseekV2ForCausalLM"` → modeling_deepseek.py); entries that name
    /// another repository (`repo--module.Class`) are skipped.
    public static func autoMapFiles(configText: [UInt8]) -> [String] {
        guard let map = (try? JSONParser.parse(configText))?["auto_map"]?.objectValue else { return [] }
        var files = Set<String>()
        for (_, v) in map.pairs {
            let refs: [String] = v.stringValue.map { [$0] } ?? (v.arrayValue ?? []).compactMap(\.stringValue)
            for r in refs where !r.contains("--") {
                // "module.Class" → module.py; dotted (package) modules are not files beside the weights.
                let parts = r.split(separator: ".")
                if parts.count == 2 { files.insert(parts[0] + ".py") }
            }
        }
        return files.sorted()
    }

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
