import DeepSeek
import Kernels
import Quantization
import TestSupport
import Testing

@testable import ModelQuantizer

/// GPTQ visits a layer's routed experts in groups whose Hessians fit a memory bound, each group a
/// pass over the stored MoE inputs. The bound changes memory, never results.
@Suite struct GPTQExpertGroupTests {
    static let windows = (0..<2).map { w in [100000] + (0..<95).map { 1000 + (w * 95 + $0) * 37 % 30000 } }

    func plan(_ source: Checkpoint) throws -> QuantizePlan {
        var options = QuantizeOptions()
        options.bits = 4
        options.groupSize = 32
        options.method = .gptq
        return try QuantizePlan(schema: source.schema, options: options)
    }

    /// An expert's Hessian from the stored MoE input equals the one a whole-layer pass collects.
    @Test func expertHessiansFromStoredInputsEqualAWholeLayerPass() throws {
        let source = try Checkpoint(directory: Fixtures.root + "/trained-dsv2.5")
        let layer = 1
        let inputs = try Self.windows.map { try Transformer(checkpoint: source, threads: 2).embed($0) }
        let experts = [0, 3, 7]
        let roles = experts.flatMap { e in [MLPProjection.gate, .up, .down].map { TensorRole.routedExpert(layer: layer, expert: e, $0) } }
        for allTokens in [false, true] {
            let whole = HessianCollector(wanted: Set(roles))
            whole.keepsRouterInput = true
            let model = Transformer(checkpoint: source, threads: 2)
            model.linearObserver = whole
            model.allTokensThroughExperts = allTokens
            for x in inputs { _ = try model.decoderLayer(layer, x) }
            let grouped = HessianCollector(wanted: Set(roles))
            let expertModel = Transformer(config: source.config, weights: source, threads: 2, localExperts: Set(experts))
            expertModel.linearObserver = grouped
            expertModel.allTokensThroughExperts = allTokens
            #expect(whole.routerInputs.count == inputs.count)
            for hn in whole.routerInputs { try expertModel.observeRoutedExperts(layer: layer, normalizedInput: hn) }
            for role in roles {
                #expect(grouped.tokenCount(role) == whole.tokenCount(role), "\(role.name)")
                #expect(grouped.hessian(role) == whole.hessian(role), "\(role.name): Hessians differ (all tokens: \(allTokens))")
            }
            if allTokens { #expect(whole.tokenCount(roles[0]) == inputs.reduce(0) { $0 + $1.rows }) }
        }
    }

    /// One expert per group or all at once: identical quantized tensors.
    @Test func theMemoryBoundDoesNotChangeResults() throws {
        let source = try Checkpoint(directory: Fixtures.root + "/trained-dsv2.5")
        let plan = try plan(source)
        var logs: [String] = []
        let tight = try GPTQProvider(source: source, plan: plan, sequences: Self.windows, threads: 2, hessianMemory: 1) { logs.append($0) }
        let loose = try GPTQProvider(source: source, plan: plan, sequences: Self.windows, threads: 2, hessianMemory: 1 << 40)
        try tight.calibrateLayers(before: 2)
        try loose.calibrateLayers(before: 2)
        let experts = source.config.nRoutedExperts ?? 0
        #expect(experts > 1)
        #expect(logs.contains { $0.contains("layer 1: routed experts in \(experts) group(s) of at most 1") }, "\(logs)")
        #expect(!tight.results.isEmpty)
        #expect(Set(tight.results.keys) == Set(loose.results.keys))
        for (role, t) in tight.results {
            let u = try #require(loose.results[role])
            #expect(t.packed == u.packed && t.scale == u.scale, "\(role.name)")
        }
        #expect(tight.hidden.count == loose.hidden.count)
        for (a, b) in zip(tight.hidden, loose.hidden) { #expect(a.data == b.data) }
    }
}
