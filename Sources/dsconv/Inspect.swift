import ArgumentParser
import Compression
import DeepSeek
import JSON
import SafeTensors
import Sharding

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarize a checkpoint (plain, packed, or a reshard output): architecture, parameters, tensors, shards, memory per GPU.")

    @Argument(help: "Checkpoint directory (config.json + safetensors), a dsconv pack output, or a dsconv reshard output.")
    var directory: String

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    func run() throws {
        try runCommand(json: json) {
            // The model's tensors (dtype, bytes) and the files that hold them, whatever the layout.
            let config: ModelConfig
            var tensors: [(dtype: DType, bytes: Int)] = []
            let shards: [(String, Int)]
            var layout = "safetensors"
            if ReshardManifest.isReshardOutput(directory) {
                let manifest = try ReshardManifest(directory: directory)
                config = try ModelConfig.load(path: directory + "/" + manifest.ranks[0].directory + "/config.json")
                tensors = manifest.tensors.map { ($0.dtype, $0.shape.reduce($0.dtype.size, *)) }
                shards = manifest.ranks.flatMap { r in r.files.filter { $0.name.hasSuffix(".safetensors") || $0.name.hasSuffix(".safetensors.zst") }.map { (r.directory + "/" + $0.name, $0.size) } }
                layout = "reshard tp \(manifest.tp), experts \(manifest.experts.rawValue)"
            } else if PackManifest.isPacked(directory) {
                let packed = try PackedCheckpoint(directory: directory, threads: 1)
                config = packed.config
                tensors = packed.tensorEntries.map { ($0.info.dtype, $0.info.byteCount) }
                shards = packed.manifest.files.map { ($0.packed, $0.packedSize) }
                layout = "packed (\(packed.manifest.transform.rawValue))"
            } else {
                let ckpt = try Checkpoint(directory: directory)
                config = ckpt.config
                tensors = ckpt.weights.tensors.map { ($0.info.dtype, $0.info.byteCount) }
                shards = ckpt.weights.files.map { ($0.path.split(separator: "/").last.map(String.init) ?? $0.path, $0.fileSize) }
            }
            let c = config
            let schema = TensorSchema(config: c)
            var dtypes: [String: Int] = [:]
            var bytes = 0
            for t in tensors {
                dtypes[t.dtype.rawValue, default: 0] += t.bytes
                bytes += t.bytes
            }
            let elementBytes = c.expectedDType.size
            let perGPU = [1, 2, 4, 8].map { ($0, schema.weightBytesPerGPU(tp: $0, bytesPerElement: elementBytes)) }
            if json {
                var dt = JSONObject()
                for k in dtypes.keys.sorted() { dt[k] = JSONValue(dtypes[k]!) }
                var gpu = JSONObject()
                for (tp, b) in perGPU { gpu[String(tp)] = JSONValue(b) }
                printJSON([
                    "model_type": .string(c.modelType),
                    "num_hidden_layers": JSONValue(c.numHiddenLayers),
                    "parameters_total": JSONValue(schema.totalParameters),
                    "parameters_active": JSONValue(schema.activeParameters),
                    "tensors": JSONValue(tensors.count),
                    "bytes": JSONValue(bytes),
                    "dtypes": .object(dt),
                    "shards": JSONValue(shards.map(\.0)),
                    "weight_bytes_per_gpu": .object(gpu),
                    "layout": .string(layout),
                ])
                return Exit.ok
            }
            let moeLayers = (0..<c.numHiddenLayers).filter(c.isMoELayer).count
            print("\(directory): \(c.modelType) (\(layout))")
            print("  layers            \(c.numHiddenLayers) (\(c.numHiddenLayers - moeLayers) dense, \(moeLayers) MoE)")
            print("  hidden            \(c.hiddenSize), vocab \(c.vocabSize)")
            print("  attention (MLA)   \(c.numAttentionHeads) heads, q_lora_rank \(c.qLoraRank.map(String.init) ?? "null (q_proj)"), kv_lora_rank \(c.kvLoraRank), qk nope/rope \(c.qkNopeHeadDim)/\(c.qkRopeHeadDim), v \(c.vHeadDim)")
            if let e = c.nRoutedExperts {
                print("  MoE               \(e) routed + \(c.nSharedExperts ?? 0) shared experts of width \(c.moeIntermediateSize), top-\(c.numExpertsPerTok ?? 0) by \(c.topkMethod.rawValue) (groups \(c.nGroup ?? 1), keep \(c.topkGroup ?? 1)), scaling \(c.routedScalingFactor)")
            }
            print("  dense MLP width   \(c.intermediateSize)")
            if let r = c.ropeScaling {
                print("  rope              \(r.type) factor \(r.factor), theta \(c.ropeTheta), mscale \(r.mscale)/\(r.mscaleAllDim)")
            }
            print("  parameters        \(formatCount(schema.totalParameters)) total, \(formatCount(schema.activeParameters)) active per token")
            print("  tensors           \(tensors.count) (\(schema.tensors.count) expected), \(formatBytes(bytes))")
            for k in dtypes.keys.sorted() { print("    \(k): \(formatBytes(dtypes[k]!))") }
            print("  shards            \(shards.count)")
            for (name, size) in shards { print("    \(name)  \(formatBytes(size))") }
            print("  weights per GPU   " + perGPU.map { "tp\($0.0): \(formatBytes($0.1))" }.joined(separator: ", "))
            return Exit.ok
        }
    }
}
