import ArgumentParser
import Checkpoints
import DeepSeek
import JSON
import SafeTensors

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarize a checkpoint (plain, packed, or a reshard output): architecture, parameters, tensors, shards, memory per GPU.")

    @Argument(help: "Checkpoint directory (config.json + safetensors), a dsconv pack output, or a dsconv reshard output.")
    var directory: String

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    func run() throws {
        try runCommand(json: json) {
            let checkpoint = try OpenedCheckpoint.open(directory, threads: 1)
            let config = checkpoint.config
            let tensors = checkpoint.tensors.map { (dtype: $0.dtype, bytes: $0.byteCount) }
            let shards = checkpoint.files.map { ($0.name, $0.size) }
            let layout = checkpoint.layout
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
