import DeepSeek
import Foundation
import Kernels
import Quantization
import SafeTensors

/// Weights of a layer replaced by their quantized versions; the rest read from the base source.
/// Runs a layer as the engine will, to calibrate the next one on it. Quantized weights stay
/// packed (the kernels read them as stored: exactly the dequantized values), so a layer's
/// overlay costs its int4/int8 size, not BF16's.
final class OverlayWeights: WeightSource, @unchecked Sendable {
    let base: WeightSource
    var overrides: [TensorRole: WeightMatrix] = [:]

    init(base: WeightSource) { self.base = base }

    func matrix(_ role: TensorRole) throws -> WeightMatrix {
        try overrides[role] ?? base.matrix(role)
    }

    func setBF16(_ role: TensorRole, _ bits: [UInt16], rows: Int, cols: Int) {
        let b = OwnedBytes(byteCount: bits.count * 2)
        bits.withUnsafeBytes { b.mutableBytes.copyMemory(from: $0) }
        overrides[role] = WeightMatrix(bytes: b.bytes, format: .bf16, rows: rows, cols: cols, owner: b)
    }

    func set(_ role: TensorRole, _ t: QuantizedTensor) {
        let storage = PackedCopy(t)
        let layout = PackedLayout(bits: t.scheme.bits, groupSize: t.scheme.groupWidth(cols: t.cols),
                                  scale: storage.scale.bytes.baseAddress!.assumingMemoryBound(to: UInt16.self),
                                  zeroPoint: storage.zeroPoint.map { $0.bytes.baseAddress!.assumingMemoryBound(to: Int8.self) })
        overrides[role] = WeightMatrix(bytes: storage.packed.bytes, format: .packed, rows: t.rows, cols: t.cols, owner: storage, packing: layout)
    }

    /// A quantized tensor's arrays at stable addresses, owned by the matrix that views them.
    private final class PackedCopy {
        let packed: OwnedBytes, scale: OwnedBytes, zeroPoint: OwnedBytes?
        init(_ t: QuantizedTensor) {
            packed = t.packed.withUnsafeBytes { OwnedBytes(copying: $0) }
            scale = t.scale.withUnsafeBytes { OwnedBytes(copying: $0) }
            zeroPoint = t.zeroPoint.map { z in z.withUnsafeBytes { OwnedBytes(copying: $0) } }
        }
    }
}

/// Accumulates H = 2·XᵀX / tokens per projection input of one layer. Projections that read the
/// same input share one Hessian: q_a with kv_a, gate with up.
final class HessianCollector: LinearObserver {
    let wanted: Set<TensorRole>
    private(set) var sums: [TensorRole: [Float]] = [:]
    private(set) var tokens: [TensorRole: Int] = [:]

    /// Keeps the router's input (the MoE input) of every call, for passes over expert groups.
    var keepsRouterInput = false
    private(set) var routerInputs: [Matrix] = []

    init(wanted: Set<TensorRole>) { self.wanted = wanted }

    /// Bytes a Hessian of `role`'s input takes (f32, cols²).
    static func hessianBytes(inputWidth cols: Int) -> Int { cols * cols * 4 }

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
        if keepsRouterInput, case .router = role { routerInputs.append(x) }
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

    /// Frees the accumulated Hessians (the kept router inputs stay).
    func dropHessians() {
        sums = [:]
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
    /// The kernels of the calibration passes (`bf16Activations`: faster, inputs rounded to bf16;
    /// the observed inputs stay f32).
    public var forwardBackend: LinearBackend = .fast

    /// A model for a calibration pass over `weights` (default: the source), on `forwardBackend`.
    func passModel(_ weights: WeightSource? = nil, localExperts: Set<Int>? = nil) -> Transformer {
        let model = Transformer(config: source.config, weights: weights ?? source, threads: threads, localExperts: localExperts)
        model.backend = forwardBackend
        return model
    }

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
        guard let t = results[role] else { preconditionFailure("\(role.name) was not quantized with its layer") }
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
        try model.decoderLayer(l, windows: hidden)
    }
}

/// GPTQ, sequential over layers: two passes per layer, Hessians with the original weights, then
/// the quantized layer's outputs for the next one.
public final class GPTQProvider: LayerwiseCalibration {
    let actOrder: Bool
    /// Most bytes of routed-expert Hessians held at once (experts are calibrated in groups).
    let hessianMemory: Int
    /// Per role: GPTQ loss and calibration tokens, or why it fell back to RTN.
    public private(set) var notes: [TensorRole: String] = [:]

    public init(source: Checkpoint, plan: QuantizePlan, sequences: [[Int]], threads: Int, actOrder: Bool = true,
                hessianMemory: Int = 1 << 30, log: ((String) -> Void)? = nil) throws {
        self.actOrder = actOrder
        self.hessianMemory = hessianMemory
        try super.init(source: source, plan: plan, sequences: sequences, threads: threads, log: log)
    }

    override func calibrate(layer l: Int) throws {
        let roles = quantizedRoles(layer: l)
        let routed = roles.filter(\.isRoutedExpert)
        let others = roles.filter { !$0.isRoutedExpert }
        let start = Date()
        let overlay = OverlayWeights(base: source)
        // Pass 1: attention, shared experts and dense MLP, with the routed experts left out; the
        // MoE input of every window is kept for the expert groups.
        let collector = HessianCollector(wanted: Set(others))
        collector.keepsRouterInput = !routed.isEmpty
        let model = passModel(localExperts: routed.isEmpty ? nil : [])
        model.linearObserver = collector
        _ = try runLayer(model, layer: l)
        try quantize(others, collector: collector, overlay: overlay)
        collector.dropHessians()
        // Routed experts, a group at a time: the group's Hessians from the stored MoE inputs, then
        // GPTQ, then the Hessians go. Peak memory: one group's Hessians, not the layer's.
        let groups = expertGroups(routed)
        for group in groups {
            let experts = Set(group.compactMap(\.expert))
            let groupCollector = HessianCollector(wanted: Set(group))
            let expertModel = passModel(localExperts: experts)
            expertModel.linearObserver = groupCollector
            expertModel.allTokensThroughExperts = allTokensThroughExperts
            for hn in collector.routerInputs { try expertModel.observeRoutedExperts(layer: l, normalizedInput: hn) }
            try quantize(group, collector: groupCollector, overlay: overlay)
        }
        if !routed.isEmpty {
            log?(String(format: "layer %d: routed experts in %d group(s) of at most %d (Hessians ≤ %.2f GB at once)", l, groups.count,
                        groups.map { Set($0.compactMap(\.expert)).count }.max() ?? 0, Double(groups.map(groupHessianBytes).max() ?? 0) / 1e9))
        }
        hidden = try runLayer(passModel(overlay), layer: l)
        log?(String(format: "calibrated layer %d: %d projections in %.1f s", l, roles.count, Date().timeIntervalSince(start)))
    }

    /// GPTQ for `roles` on the collector's Hessians (RTN where none formed), into `results` and the overlay.
    private func quantize(_ roles: [TensorRole], collector: HessianCollector, overlay: OverlayWeights) throws {
        for role in roles {
            guard let scheme = plan.scheme(role) else { continue }
            let w = try source.matrix(role)
            let base = w.bytes.baseAddress!.assumingMemoryBound(to: UInt16.self)
            let t: QuantizedTensor
            if let h = collector.hessian(role) {
                do {
                    let r = try GPTQ.quantize(base, rows: w.rows, cols: w.cols, hessian: h, scheme: scheme, actOrder: actOrder)
                    t = r.tensor
                    notes[role] = String(format: "GPTQ loss %.3g over %d tokens", r.loss, collector.tokenCount(role))
                } catch {
                    t = try ParallelQuantize.rtn(w, scheme: scheme, threads: threads, name: role.name)
                    notes[role] = "RTN: \(error)"
                }
            } else {
                t = try ParallelQuantize.rtn(w, scheme: scheme, threads: threads, name: role.name)
                notes[role] = "RTN: no calibration token reached it"
            }
            results[role] = t
            overlay.set(role, t)
        }
    }

    /// Bytes of the Hessians one group of expert projections accumulates: one per distinct
    /// collector key (gate and up share one).
    private func groupHessianBytes(_ group: [TensorRole]) -> Int {
        Set(group.map(HessianCollector.key)).reduce(0) { sum, key in
            guard let w = try? source.tensor(key).info.shape.last else { return sum }
            return sum + HessianCollector.hessianBytes(inputWidth: w)
        }
    }

    /// The routed experts' projections cut into groups of whole experts whose Hessians fit
    /// `hessianMemory` (at least one expert per group).
    private func expertGroups(_ routed: [TensorRole]) -> [[TensorRole]] {
        var byExpert: [(expert: Int, roles: [TensorRole])] = []
        for role in routed {
            guard let e = role.expert else { continue }
            if byExpert.last?.expert == e { byExpert[byExpert.count - 1].roles.append(role) } else { byExpert.append((e, [role])) }
        }
        var groups: [[TensorRole]] = [], current: [TensorRole] = [], bytes = 0
        for (_, roles) in byExpert {
            let b = groupHessianBytes(roles)
            if !current.isEmpty && bytes + b > hessianMemory {
                groups.append(current)
                current = []
                bytes = 0
            }
            current += roles
            bytes += b
        }
        if !current.isEmpty { groups.append(current) }
        return groups
    }
}
