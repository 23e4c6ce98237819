import ArgumentParser
import Checkpoints
import DeepSeek
import JSON
import SafeTensors
import Serving
import Sharding

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarize a checkpoint (plain, packed, or a reshard output): architecture, parameters, tensors, shards, memory per GPU.")

    @Argument(help: "Checkpoint directory (config.json + safetensors), a dsconv pack output, or a dsconv reshard output.")
    var directory: String

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @Option(help: "Context length to plan for: per tensor-parallel size, the weights per GPU, the room left for the KV cache and how many tokens (and sequences of this length) fit. An estimate of what vLLM reserves.")
    var context: Int?

    @Option(name: .customLong("gpu-memory"), help: "Memory of one GPU, e.g. 80GB (default) or 141GB; torch's total for an H100 80GB is 79.2GiB.")
    var gpuMemory = "80GB"

    @Option(name: .customLong("gpu-memory-utilization"), help: "vLLM's --gpu-memory-utilization (default 0.9).")
    var gpuMemoryUtilization = 0.9

    func validate() throws {
        if let n = context, n < 1 || n > 1 << 30 { throw ValidationError("--context \(n): a token count from 1 to 2^30 expected") }
        guard let m = parseSize(gpuMemory), m > 0 else { throw ValidationError("--gpu-memory \(gpuMemory) is not a size such as 80GB") }
        _ = m
        guard gpuMemoryUtilization > 0, gpuMemoryUtilization <= 1 else {
            throw ValidationError("--gpu-memory-utilization \(gpuMemoryUtilization): a fraction in (0, 1] expected")
        }
    }

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
            let engines = try Self.engineStatements(checkpoint, directory: directory)
            let memory = context.map { MemoryPlan(schema: schema, gpuMemory: parseSize(gpuMemory) ?? 80_000_000_000,
                                                  utilization: gpuMemoryUtilization, context: $0) }
            let perGPU = [1, 2, 4, 8].map { ($0, schema.weightBytesPerGPU(tp: $0)) }
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
                    "serving": Self.servingJSON(engines),
                    "memory": memory?.json ?? .null,
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
            if let memory { Self.printMemory(memory) }
            Self.printServing(engines)
            return Exit.ok
        }
    }

    static func engineStatements(_ checkpoint: OpenedCheckpoint, directory: String) throws -> [EngineStatement] {
        let form: ServedForm
        switch checkpoint.kind {
        case .plain: form = .checkpoint
        case .packed: form = .packed
        case .reshard:
            let m = try checkpoint.reshardManifest(for: "inspect")
            form = .reshard(tp: m.tp, deepseekLayout: m.layout == DeepSeekLayout().name)
        }
        let configText = (try? readWholeFile(directory + "/config.json")) ?? []
        let remoteCode = Checkpoint.autoMapFiles(configText: configText)
        let missing = remoteCode.filter { !pathExists(directory + "/" + $0) }
        return EngineReport.statements(config: checkpoint.config, form: form, directory: directory, remoteCode: remoteCode, missingRemoteCode: missing)
    }

    static func servingJSON(_ s: [EngineStatement]) -> JSONValue {
        var o = JSONObject()
        o["vllm"] = .array(s.filter { $0.engine == .vllm }.map(\.json))
        for e in [EngineStatement.Engine.transformers, .deepseek] {
            if let st = s.first(where: { $0.engine == e }) { o[e.rawValue] = st.json }
        }
        return .object(o)
    }

    /// vLLM as a table (TP × GPU, "EP" where it loads only with expert parallelism), the first
    /// refusal of each kind, then the other engines; every loadable command once.
    static func printServing(_ s: [EngineStatement], to line: (String) -> Void = { print($0) }) {
        let vllm = s.filter { $0.engine == .vllm }
        line("  vLLM 0.34         " + VLLMTarget.tensorParallelSizes.map { "tp\($0)" }.joined(separator: "  "))
        for gpu in GPUGeneration.allCases {
            let cells = VLLMTarget.tensorParallelSizes.map { tp -> String in
                let plain = vllm.first { $0.target == VLLMTarget(tp: tp, gpu: gpu, expertParallel: false) }?.loads ?? false
                let ep = vllm.first { $0.target == VLLMTarget(tp: tp, gpu: gpu, expertParallel: true) }?.loads ?? false
                return plain ? "ok " : ep ? "EP " : "no "
            }
            line("    \(gpu.cards.padding(toLength: 15, withPad: " ", startingAt: 0))" + cells.joined(separator: "  "))
        }
        var said = Set<String>()
        for st in vllm where !st.loads && said.insert(st.rule).inserted {
            guard let t = st.target else { continue }
            line("    refused at tp \(t.tp) on \(t.gpu.cards)\(t.expertParallel ? " with expert parallelism" : ""): \(st.rule)")
        }
        if let best = vllm.filter({ $0.loads }).max(by: { ($0.target?.tp ?? 0, $0.target?.expertParallel == true ? 0 : 1) < ($1.target?.tp ?? 0, $1.target?.expertParallel == true ? 0 : 1) }),
           let cmd = best.command {
            line("    serve: \(cmd)")
        }
        for st in s where st.engine != .vllm {
            let name = st.engine == .transformers ? "transformers 5.24" : "DeepSeek generate"
            line("  \(name.padding(toLength: 18, withPad: " ", startingAt: 0))" + (st.loads ? "loads: " : "refused: ") + st.rule)
            if let cmd = st.command { line("    \(cmd)") }
        }
    }

    static func printMemory(_ m: MemoryPlan) {
        print("  memory plan       estimate per GPU of \(formatBytes(m.gpuMemory)) at utilization \(m.utilization), context \(m.context) tokens")
        print("    KV cache: \(m.kvBytesPerToken) bytes per token on every rank (MLA latent, BF16); room = memory × utilization − weights")
        for r in m.rows {
            let room = r.kvBudget > 0 ? formatBytes(r.kvBudget) : "none (weights exceed it by \(formatBytes(-r.kvBudget)))"
            print("    tp\(r.tp): weights \(formatBytes(r.weightBytes)), KV room \(room), \(r.tokens) tokens = \(r.sequences) sequences of \(m.context)" + (r.fits ? "" : "  (does not fit)"))
        }
    }
}
