import DeepSeek
import Quantization
import Serving
import Testing

@testable import ModelQuantizer

/// `VLLMRules` against vLLM 0.34.0's own verdicts, and the quantize plan's choice against the
/// rules. The reference verdicts were taken by `Scripts/serving-check` / the vLLM harness
/// (Scripts/vllm-oracle: vLLM's engine checks, model construction and load_weights) on
/// V2.5-width and V2-Lite-width synths quantized with one scheme for every Linear whose width the
/// group divides (the default of earlier releases: others, kv_b_proj and lm_head BF16).
@Suite struct VLLMRulesTests {
    static func uniform(_ c: ModelConfig, _ s: QuantScheme) -> (TensorRole) -> QuantScheme? {
        let schema = TensorSchema(config: c)
        return { role in
            guard role.isLinear, role != .lmHead else { return nil }
            if case .kvB = role { return nil }
            let cols = schema[schema.name(role)]?.shape.last ?? 0
            return s.fits(cols: cols) ? s : nil
        }
    }

    static func small(_ p: ModelPreset) -> ModelConfig {
        var c = p.config
        c.numHiddenLayers = 2
        c.nRoutedExperts = 8
        return c
    }

    /// "loads" or "refused" per TP 1, 2, 4, 8 (no expert parallelism), one capability.
    func row(_ c: ModelConfig, _ s: QuantScheme, _ gpu: GPUGeneration, expertParallel: Bool = false) -> [String] {
        VLLMTarget.tensorParallelSizes.map { tp in
            VLLMRules.firstRefusal(config: c, scheme: Self.uniform(c, s), target: VLLMTarget(tp: tp, gpu: gpu, expertParallel: expertParallel)) == nil
                ? "loads" : "refused"
        }
    }

    @Test func theMeasuredMatrixOfUniformSchemes() {
        let v25 = Self.small(.deepseekV25), lite = Self.small(.deepseekV2Lite)
        let int4g128 = QuantScheme(bits: 4, groupSize: 128, symmetric: true)
        let int4g64 = QuantScheme(bits: 4, groupSize: 64, symmetric: true)
        let int4g32 = QuantScheme(bits: 4, groupSize: 32, symmetric: true)
        let int8ch = QuantScheme(bits: 8, groupSize: nil, symmetric: true)
        let int8g128 = QuantScheme(bits: 8, groupSize: 128, symmetric: true)
        let int8asym = QuantScheme(bits: 8, groupSize: nil, symmetric: false)
        let all = ["loads", "loads", "loads", "loads"], none = ["refused", "refused", "refused", "refused"]
        for gpu in GPUGeneration.allCases {
            #expect(row(v25, int4g128, gpu) == ["loads", "loads", "loads", "refused"], "\(gpu)")
            #expect(row(v25, int4g128, gpu, expertParallel: true) == all, "\(gpu)")
            #expect(row(v25, int4g64, gpu) == all && row(v25, int4g32, gpu) == all, "\(gpu)")
            #expect(row(v25, int8g128, gpu) == ["loads", "loads", "loads", "refused"], "\(gpu)")
            #expect(row(v25, int8g128, gpu, expertParallel: true) == all, "\(gpu)")
            #expect(row(v25, int8asym, gpu) == none, "\(gpu)")
            #expect(row(lite, int4g32, gpu) == ["loads", "loads", "refused", "refused"], "\(gpu)")
            #expect(row(lite, int4g32, gpu, expertParallel: true) == ["loads", "loads", "refused", "refused"], "\(gpu)")
        }
        #expect(row(v25, int8ch, .ampere) == all)
        #expect(row(v25, int8ch, .hopper) == none)
        #expect(row(lite, int8ch, .ampere) == all)
        #expect(row(lite, int8ch, .hopper) == none)
        // The rule vLLM states for the refusals above.
        let tp8 = VLLMRules.firstRefusal(config: v25, scheme: Self.uniform(v25, int4g128), target: VLLMTarget(tp: 8, gpu: .hopper, expertParallel: false))
        #expect(tp8?.module == "model.layers.1.mlp.experts" && tp8?.rule.contains("192") == true, "\(String(describing: tp8))")
        let dense = VLLMRules.firstRefusal(config: lite, scheme: Self.uniform(lite, int4g32), target: VLLMTarget(tp: 4, gpu: .ampere, expertParallel: false))
        #expect(dense?.module == "model.layers.0.mlp.down_proj" && dense?.rule.contains("2736") == true, "\(String(describing: dense))")
        // Tiny models: no MLA backend for their head widths, whatever the scheme.
        var tiny = v25
        tiny.kvLoraRank = 32
        #expect(VLLMRules.engineRefusal(config: tiny, tp: 1)?.module == "attention")
    }

    func plan(_ c: ModelConfig, bits: Int, group: Int?, tps: [Int] = [1, 2, 4, 8]) throws -> QuantizePlan {
        var o = QuantizeOptions()
        o.bits = bits
        o.groupSize = group
        o.servingTPs = tps
        return try QuantizePlan(schema: TensorSchema(config: c), options: o)
    }

    func loadsEverywhere(_ c: ModelConfig, _ p: QuantizePlan, expertParallelAt: Set<Int> = []) -> Bool {
        VLLMTarget.tensorParallelSizes.allSatisfy { tp in
            GPUGeneration.allCases.allSatisfy { gpu in
                VLLMRules.firstRefusal(config: c, scheme: p.scheme, target: VLLMTarget(tp: tp, gpu: gpu, expertParallel: expertParallelAt.contains(tp))) == nil
            }
        }
    }

    /// The full-size V2.5: int4 keeps g128 wherever vLLM takes it and gives the routed experts
    /// (192 columns per rank at TP 8) groups of 64; int8 keeps per-channel scales except on the
    /// routed experts (group scales on H100). Both load at every TP on both generations.
    @Test func defaultSchemesLoadEverywhereOnV25() throws {
        let c = ModelPreset.deepseekV25.config
        let int4 = try plan(c, bits: 4, group: 128)
        #expect(int4.scheme(.routedExpert(layer: 5, expert: 159, .down)) == QuantScheme(bits: 4, groupSize: 64, symmetric: true))
        #expect(int4.scheme(.o(layer: 5)) == QuantScheme(bits: 4, groupSize: 128, symmetric: true))
        #expect(int4.scheme(.sharedExpert(layer: 5, .down)) == QuantScheme(bits: 4, groupSize: 128, symmetric: true))
        #expect(int4.scheme(.kvB(layer: 5)) == nil && int4.scheme(.lmHead) == nil)
        #expect(loadsEverywhere(c, int4))
        let int8 = try plan(c, bits: 8, group: nil)
        #expect(int8.scheme(.routedExpert(layer: 5, expert: 0, .gate)) == QuantScheme(bits: 8, groupSize: 64, symmetric: true))
        #expect(int8.scheme(.denseMLP(layer: 0, .down)) == QuantScheme(bits: 8, groupSize: nil, symmetric: true))
        #expect(loadsEverywhere(c, int8))
        // Served at TP 4 at most: the experts keep g128.
        let upTo4 = try plan(c, bits: 4, group: 128, tps: [1, 2, 4])
        #expect(upTo4.scheme(.routedExpert(layer: 5, expert: 0, .up)) == QuantScheme(bits: 4, groupSize: 128, symmetric: true))
        // The config groups say so: one group per scheme, the experts' listed by name.
        let groups = int4.quantization.groups
        #expect(groups.count == 2 && groups[0].targets == ["Linear"] && groups[1].scheme.groupSize == 64)
        #expect(groups[1].targets.contains("model.layers.59.mlp.experts.159.down_proj"))
    }

    /// V2-Lite: the 10944-wide dense down_proj takes per-channel scales (no group of 32/64/128
    /// leaves whole groups per rank at TP 2/4/8); the 1408-wide experts take g32 and load at TP 8
    /// only with expert parallelism (176 columns per rank), which the plan's note says.
    @Test func v2LiteLoadsWhereAnySchemeCanAndNamesExpertParallelism() throws {
        let c = ModelPreset.deepseekV2Lite.config
        let int4 = try plan(c, bits: 4, group: 128)
        #expect(int4.scheme(.denseMLP(layer: 0, .down)) == QuantScheme(bits: 4, groupSize: nil, symmetric: true))
        #expect(int4.scheme(.routedExpert(layer: 3, expert: 63, .down)) == QuantScheme(bits: 4, groupSize: 32, symmetric: true))
        #expect(int4.scheme(.sharedExpert(layer: 3, .down)) == QuantScheme(bits: 4, groupSize: 32, symmetric: true))
        #expect(!loadsEverywhere(c, int4))
        #expect(loadsEverywhere(c, int4, expertParallelAt: [8]))
        #expect(int4.servingNotes.contains { $0.contains("mlp.experts") && $0.contains("tp 8") && $0.contains("--enable-expert-parallel") }, "\(int4.servingNotes)")
    }
}

/// Per-GPU weight bytes count what is stored (packed words, scales, zero points, shapes), split
/// as the engine splits; the KV plan uses MLA's latent cache.
@Suite struct MemoryPlanTests {
    @Test func quantizedBytesPerGPUAreTheStoredBytes() throws {
        var c = ModelPreset.deepseekV25.config
        var o = QuantizeOptions()
        o.bits = 4
        o.groupSize = 64
        let plan = try QuantizePlan(schema: TensorSchema(config: c), options: o)
        c.quantization = plan.quantization
        let q = TensorSchema(config: c)
        let stored = q.tensors.reduce(0) { $0 + $1.elementCount * ($1.dtype?.size ?? 2) }
        #expect(q.weightBytesPerGPU(tp: 1) == stored)
        // int4 g64: about 4.5 bits per weight for the quantized Linears; the BF16 head, embedding,
        // kv_b_proj and norms keep 16: the whole model near 4.3-4.4 bits (measured 4.35).
        let bpw = 8 * Double(stored) / Double(q.totalParameters)
        #expect(bpw > 4.2 && bpw < 4.5, "\(bpw)")
        // TP 8: each rank an eighth of the split bytes plus every replicated tensor.
        let replicated = q.tensors.filter { $0.role.tensorParallelSplit(c) == .replicated }.reduce(0) { $0 + $1.elementCount * ($1.dtype?.size ?? 2) }
        let tp8 = q.weightBytesPerGPU(tp: 8)
        #expect(abs(Double(tp8) - Double(stored - replicated) / 8 - Double(replicated)) < 1e6, "\(tp8)")
        // A decoded token reads 6 of the 160 routed experts' stored bytes and every other tensor's.
        let routed = q.tensors.filter { if case .routedExpert = $0.role { return true }; return false }
            .reduce(0) { $0 + $1.elementCount * ($1.dtype?.size ?? 2) }
        #expect(q.activeWeightBytes == stored - routed + routed / 160 * 6)
        #expect(q.storedBytes(of: .embedding) == c.vocabSize * c.hiddenSize * 2)
        #expect(q.storedBytes(of: .routedExpert(layer: 1, expert: 0, .gate)) < 5120 * 1536 * 5 / 8, "int4 g64 codes and scales")
    }

    @Test func kvCacheAndWhatFits() {
        let c = ModelPreset.deepseekV25.config
        #expect(MemoryPlan.kvBytesPerToken(c) == 60 * 576 * 2)
        let m = MemoryPlan(schema: TensorSchema(config: c), gpuMemory: 80_000_000_000, utilization: 0.9, context: 32768)
        // BF16 V2.5 (471.5 GB): does not fit one or two 80 GB GPUs, fits eight.
        #expect(!m.rows[0].fits && !m.rows[1].fits)
        #expect(m.rows[3].fits && m.rows[3].tokens == m.rows[3].kvBudget / 69120)
    }
}
