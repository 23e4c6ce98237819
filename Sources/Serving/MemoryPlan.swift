import DeepSeek
import JSON

/// What fits on one GPU per tensor-parallel size: the weights each rank holds (as vLLM splits
/// them), and the room left for the KV cache under vLLM's `--gpu-memory-utilization`. MLA caches
/// one latent vector per token and layer (`kv_lora_rank + qk_rope_head_dim` values, the same on
/// every rank: the latent is not split by heads), so the cache grows by
/// `layers × (kv_lora_rank + qk_rope_head_dim) × 2` bytes per token in BF16 — 69,120 bytes for
/// V2.5, where standard attention would cache 128 heads × (192 + 128) values per layer.
/// An estimate: vLLM also subtracts the activation peak it profiles and CUDA graph memory.
public struct MemoryPlan: Sendable {
    public struct Row: Sendable {
        public let tp: Int
        public let weightBytes: Int
        /// gpuMemory × utilization − weights (negative: the weights alone do not fit).
        public let kvBudget: Int
        public let tokens: Int
        /// Whole sequences of `context` tokens.
        public let sequences: Int
        public var fits: Bool { sequences >= 1 }
    }

    public let gpuMemory: Int
    public let utilization: Double
    public let context: Int
    public let kvBytesPerToken: Int
    public let rows: [Row]

    public static func kvBytesPerToken(_ c: ModelConfig, bytesPerValue: Int = 2) -> Int {
        c.numHiddenLayers * (c.kvLoraRank + c.qkRopeHeadDim) * bytesPerValue
    }

    public init(schema: TensorSchema, gpuMemory: Int, utilization: Double, context: Int,
                tps: [Int] = VLLMTarget.tensorParallelSizes) {
        self.gpuMemory = gpuMemory
        self.utilization = utilization
        self.context = context
        let perToken = Self.kvBytesPerToken(schema.config)
        kvBytesPerToken = perToken
        rows = tps.map { tp in
            let w = schema.weightBytesPerGPU(tp: tp)
            let budget = Int(Double(gpuMemory) * utilization) - w
            let tokens = budget > 0 && perToken > 0 ? budget / perToken : 0
            return Row(tp: tp, weightBytes: w, kvBudget: budget, tokens: tokens, sequences: context > 0 ? tokens / context : 0)
        }
    }

    public var json: JSONValue {
        [
            "gpu_memory": JSONValue(gpuMemory), "gpu_memory_utilization": .number(utilization), "context": JSONValue(context),
            "kv_bytes_per_token": JSONValue(kvBytesPerToken),
            "estimate": .string("per rank: gpu_memory x utilization - weights = KV budget; tokens = budget / kv_bytes_per_token (MLA latent cache, BF16, on every rank); vLLM also subtracts its profiled activation peak and CUDA graphs"),
            "per_tp": .array(rows.map { r in
                ["tp": JSONValue(r.tp), "weight_bytes": JSONValue(r.weightBytes), "kv_budget_bytes": JSONValue(r.kvBudget),
                         "kv_tokens": JSONValue(r.tokens), "sequences": JSONValue(r.sequences), "fits": .bool(r.fits)] as JSONValue
            }),
        ]
    }
}
