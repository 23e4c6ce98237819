import DeepSeek
import Foundation
import Kernels
import Quantization
import SafeTensors

/// Weights of a layer replaced by their quantized (dequantized BF16) versions; the rest read
/// from the base source. Runs a layer as the engine will, to calibrate the next one on it.
final class OverlayWeights: WeightSource, @unchecked Sendable {
    let base: WeightSource
    var overrides: [TensorRole: (bytes: OwnedBytes, rows: Int, cols: Int)] = [:]

    init(base: WeightSource) { self.base = base }

    func matrix(_ role: TensorRole) throws -> WeightMatrix {
        guard let o = overrides[role] else { return try base.matrix(role) }
        return WeightMatrix(bytes: o.bytes.bytes, format: .bf16, rows: o.rows, cols: o.cols, owner: o.bytes)
    }

    func setBF16(_ role: TensorRole, _ bits: [UInt16], rows: Int, cols: Int) {
        let b = OwnedBytes(byteCount: bits.count * 2)
        bits.withUnsafeBytes { b.mutableBytes.copyMemory(from: $0) }
        overrides[role] = (b, rows, cols)
    }

    func set(_ role: TensorRole, _ t: QuantizedTensor) {
        let b = OwnedBytes(byteCount: t.rows * t.cols * 2)
        t.dequantize(into: b.mutableBytes.baseAddress!.assumingMemoryBound(to: UInt16.self))
        overrides[role] = (b, t.rows, t.cols)
    }
}

/// Accumulates H = 2·XᵀX / tokens per projection input of one layer. Projections that read the
/// same input share one Hessian: q_a with kv_a, gate with up.
final class HessianCollector: LinearObserver {
    let wanted: Set<TensorRole>
    private(set) var sums: [TensorRole: [Float]] = [:]
    private(set) var tokens: [TensorRole: Int] = [:]

    init(wanted: Set<TensorRole>) { self.wanted = wanted }

    static func key(_ role: TensorRole) -> TensorRole {
        switch role {
        case .kvA(let l): return .qA(layer: l)
        case .denseMLP(let l, .up): return .denseMLP(layer: l, .gate)
        case .routedExpert(let l, let e, .up): return .routedExpert(layer: l, expert: e, .gate)
        case .sharedExpert(let l, .up): return .sharedExpert(layer: l, .gate)
        default: return role
        }
    }

    func linearInput(_ role: TensorRole, _ x: Matrix) {
        guard wanted.contains(role) else { return }
        let k = Self.key(role)
        if k != role && wanted.contains(k) { return }  // the shared input is collected once, under its key
        var h = sums[k] ?? [Float](repeating: 0, count: x.cols * x.cols)
        x.data.withUnsafeBufferPointer { xb in
            h.withUnsafeMutableBufferPointer { hb in
                Linear.syrkUpperAccumulate(xb.baseAddress!, rows: x.rows, cols: x.cols, into: hb.baseAddress!)
            }
        }
        sums[k] = h
        tokens[k, default: 0] += x.rows
    }

    /// The Hessian of `role`'s input, symmetric, or nil if it never saw a token.
    func hessian(_ role: TensorRole) -> [Float]? {
        let k = wanted.contains(Self.key(role)) ? Self.key(role) : role
        guard var h = sums[k], let n = tokens[k], n > 0 else { return nil }
        let cols = Int(Double(h.count).squareRoot())
        let scale = 2 / Float(n)
        for i in 0..<cols {
            for j in i..<cols {
                let v = h[i * cols + j] * scale
                h[i * cols + j] = v
                h[j * cols + i] = v
            }
        }
        return h
    }

    func tokenCount(_ role: TensorRole) -> Int { tokens[wanted.contains(Self.key(role)) ? Self.key(role) : role] ?? 0 }
}

/// Calibration one decoder layer at a time, as the writer walks the checkpoint: the first weight
/// (or folded norm) of layer l asked for runs `calibrate(layer:)` for every layer up to l, each on
/// the outputs of the already-quantized layers before it. Memory: the calibration hidden states
/// plus one layer's statistics and results.
public class LayerwiseCalibration: QuantizedWeightProvider {
    let source: Checkpoint
    let plan: QuantizePlan
    let threads: Int
    let log: ((String) -> Void)?
    /// The next layer's input, one matrix per calibration window.
    var hidden: [Matrix]
    private var nextLayer = 0
    /// The current layer's quantized weights.
    var results: [TensorRole: QuantizedTensor] = [:]
    /// Unquantized tensors the calibration changed (AWQ's folded norms and router), bf16.
    var replaced: [TensorRole: [UInt16]] = [:]
    /// Calibration passes send every token through every routed expert (llm-compressor's
    /// `moe_calibrate_all_experts`); the layer output still takes only the routed ones.
    public var allTokensThroughExperts = false

    init(source: Checkpoint, plan: QuantizePlan, sequences: [[Int]], threads: Int, log: ((String) -> Void)?) throws {
        guard !sequences.isEmpty else { throw ModelError.badInput("calibration: no token windows (the text is too short?)") }
        self.source = source
        self.plan = plan
        self.threads = threads
        self.log = log
        let model = Transformer(checkpoint: source, threads: threads)
        hidden = try sequences.map { try model.embed($0) }
    }

    /// Without calibration windows: a provider that works from statistics alone (no hidden
    /// states are carried; every layer pass runs over nothing).
    init(source: Checkpoint, plan: QuantizePlan, threads: Int, log: ((String) -> Void)?) {
        self.source = source
        self.plan = plan
        self.threads = threads
        self.log = log
        hidden = []
    }

    /// Quantizes layer `l`'s projections into `results` and advances `hidden` through it.
    func calibrate(layer l: Int) throws { fatalError("subclass") }

    private func reach(_ layer: Int) throws {
        while nextLayer <= layer {
            results = [:]
            replaced = [:]
            try calibrate(layer: nextLayer)
            nextLayer += 1
        }
    }

    /// Calibrates every layer before `l` (tests).
    func calibrateLayers(before l: Int) throws { try reach(l - 1) }

    public func quantized(_ role: TensorRole, scheme: QuantScheme) throws -> QuantizedTensor {
        guard let layer = role.layer else {
            return try ParallelQuantize.rtn(try source.matrix(role), scheme: scheme, threads: threads, name: role.name)
        }
        try reach(layer)
        guard let t = results[role] else { throw ModelError.unsupported("internal: \(role.name) was not quantized with its layer") }
        return t
    }

    public func replacement(_ role: TensorRole) throws -> [UInt16]? {
        guard let layer = role.layer else { return nil }
        try reach(layer)
        return replaced[role]
    }

    /// The projections of layer `l` the plan quantizes.
    func quantizedRoles(layer l: Int) -> [TensorRole] {
        source.schema.tensors.filter { $0.role.layer == l && plan.scheme($0.role) != nil }.map(\.role)
    }

    /// Runs layer `l` over every window with `model` (its observer sees the projections' inputs).
    func runLayer(_ model: Transformer, layer l: Int) throws -> [Matrix] {
        try hidden.map { try model.decoderLayer(l, $0) }
    }
}

/// GPTQ, sequential over layers: two passes per layer, Hessians with the original weights, then
/// the quantized layer's outputs for the next one.
public final class GPTQProvider: LayerwiseCalibration {
    let actOrder: Bool
    /// Per role: GPTQ loss and calibration tokens, or why it fell back to RTN.
    public private(set) var notes: [TensorRole: String] = [:]

    public init(source: Checkpoint, plan: QuantizePlan, sequences: [[Int]], threads: Int, actOrder: Bool = true,
                log: ((String) -> Void)? = nil) throws {
        self.actOrder = actOrder
        try super.init(source: source, plan: plan, sequences: sequences, threads: threads, log: log)
    }

    override func calibrate(layer l: Int) throws {
        let roles = quantizedRoles(layer: l)
        let collector = HessianCollector(wanted: Set(roles))
        let model = Transformer(checkpoint: source, threads: threads)
        model.linearObserver = collector
        model.allTokensThroughExperts = allTokensThroughExperts
        let start = Date()
        _ = try runLayer(model, layer: l)
        let overlay = OverlayWeights(base: source)
        for role in roles {
            guard let scheme = plan.scheme(role) else { continue }
            let w = try source.matrix(role)
            let base = w.bytes.baseAddress!.assumingMemoryBound(to: UInt16.self)
            if let h = collector.hessian(role) {
                do {
                    let r = try GPTQ.quantize(base, rows: w.rows, cols: w.cols, hessian: h, scheme: scheme, actOrder: actOrder)
                    results[role] = r.tensor
                    notes[role] = String(format: "GPTQ loss %.3g over %d tokens", r.loss, collector.tokenCount(role))
                } catch {
                    results[role] = try ParallelQuantize.rtn(w, scheme: scheme, threads: threads, name: role.name)
                    notes[role] = "RTN: \(error)"
                }
            } else {
                results[role] = try ParallelQuantize.rtn(w, scheme: scheme, threads: threads, name: role.name)
                notes[role] = "RTN: no calibration token reached it"
            }
            overlay.set(role, results[role]!)
        }
        hidden = try runLayer(Transformer(config: source.config, weights: overlay, threads: threads), layer: l)
        log?(String(format: "calibrated layer %d: %d projections in %.1f s", l, roles.count, Date().timeIntervalSince(start)))
    }
}
