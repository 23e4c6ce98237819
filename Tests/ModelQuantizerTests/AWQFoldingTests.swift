import DeepSeek
import Kernels
import Quantization
import TestSupport
import Testing

@testable import ModelQuantizer

/// AWQ's folding is an identity of the unquantized model: the scales divided out of the norms are
/// multiplied into the projections — and into the router, or routing moves (a known bug elsewhere).
@Suite struct AWQFoldingTests {
    final class RoutingRecorder: ForwardObserver {
        var experts: [[Int]] = []
        func routed(layer: Int, _ routing: Routing) { experts += routing.experts.map { $0.sorted() } }
    }

    func routing(_ model: Transformer, layer: Int, _ inputs: [Matrix]) throws -> [[Int]] {
        let recorder = RoutingRecorder()
        for x in inputs { _ = try model.decoderLayer(layer, x, observer: recorder) }
        return recorder.experts
    }

    @Test func foldingKeepsRoutingAndTheUnscaledRouterDoesNot() throws {
        let source = try Checkpoint(directory: Fixtures.root + "/trained-dsv2.5")
        var options = QuantizeOptions()
        options.bits = 4
        options.groupSize = 32
        options.method = .awq
        let plan = try QuantizePlan(schema: source.schema, options: options)
        // Two windows of the calibration text's first tokens (any text works: the check is an identity).
        let ids = (0..<2).map { w in [100000] + (0..<127).map { 1000 + (w * 127 + $0) * 37 % 30000 } }
        let awq = try AWQProvider(source: source, plan: plan, sequences: ids, threads: 2)
        try awq.calibrateLayers(before: 1)
        let inputs = awq.currentHidden
        let layer = 1
        let original = try routing(Transformer(checkpoint: source, threads: 2), layer: layer, inputs)
        // The searched folding routes as the source does (the search may also pick the identity).
        let searched = try routing(Transformer(config: source.config, weights: try awq.foldedWeights(layer: layer), threads: 2), layer: layer, inputs)
        let sameSearched = zip(original, searched).filter { $0 == $1 }.count
        #expect(Double(sameSearched) >= 0.97 * Double(original.count), "searched folding routes \(sameSearched) of \(original.count) tokens as the source")
        // A scale far from the identity, folded into the norm, the experts' gate/up and the router.
        let c = source.config
        let balance = (0..<(c.nRoutedExperts ?? 0)).flatMap { e in
            [TensorRole.routedExpert(layer: layer, expert: e, .gate), .routedExpert(layer: layer, expert: e, .up)]
        } + [.sharedExpert(layer: layer, .gate), .sharedExpert(layer: layer, .up)]
        let scale = (0..<c.hiddenSize).map { Float(0.25 + 1.5 * Double(($0 * 37) % 17) / 16) }
        try awq.fold(scale, smooth: .postAttentionNorm(layer: layer), balance: balance, alsoScaled: [.router(layer: layer)])
        let folded = awq.takeFolded()
        let withRouter = try routing(Transformer(config: source.config, weights: folded, threads: 2), layer: layer, inputs)
        // The bug: norms folded, router left as it was.
        folded.overrides[.router(layer: layer)] = nil
        let withoutRouter = try routing(Transformer(config: source.config, weights: folded, threads: 2), layer: layer, inputs)
        let same = zip(original, withRouter).filter { $0 == $1 }.count
        let sameBug = zip(original, withoutRouter).filter { $0 == $1 }.count
        #expect(original.count == 256)
        #expect(Double(same) >= 0.97 * Double(original.count), "folded model routes \(same) of \(original.count) tokens as the source")
        #expect(sameBug < same, "without scaling the router, \(sameBug) of \(original.count) tokens keep their experts")
    }
}
