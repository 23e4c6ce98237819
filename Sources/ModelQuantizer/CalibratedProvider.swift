import DeepSeek
import Foundation
import Kernels
import Quantization

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
                cblas_ssyrk_wrapper(n: x.cols, k: x.rows, x: xb.baseAddress!, h: hb.baseAddress!)
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

/// H (upper triangle, row-major) += XᵀX.
func cblas_ssyrk_wrapper(n: Int, k: Int, x: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>) {
    Linear.syrkUpperAccumulate(x, rows: k, cols: n, into: h)
}

/// GPTQ, sequential over layers: layer l is calibrated on the outputs of the already-quantized
/// layers before it. The writer asks for weights in checkpoint order; the first weight of a layer
/// runs that layer's calibration (two passes: Hessians with the original weights, then the
/// quantized layer's outputs for the next one). Memory: the calibration hidden states plus one
/// layer's Hessians and results.
public final class GPTQProvider: QuantizedWeightProvider {
    let source: Checkpoint
    let plan: QuantizePlan
    let threads: Int
    let actOrder: Bool
    private var hidden: [Matrix]
    private var nextLayer = 0
    private var results: [TensorRole: QuantizedTensor] = [:]
    /// Per role: GPTQ loss, calibration tokens, or why it fell back to RTN.
    public private(set) var notes: [TensorRole: String] = [:]
    let log: ((String) -> Void)?

    public init(source: Checkpoint, plan: QuantizePlan, sequences: [[Int]], threads: Int, actOrder: Bool = true,
                log: ((String) -> Void)? = nil) throws {
        guard !sequences.isEmpty else { throw ModelError.badInput("calibration: no token windows (the text is too short?)") }
        self.source = source
        self.plan = plan
        self.threads = threads
        self.actOrder = actOrder
        self.log = log
        let model = Transformer(checkpoint: source, threads: threads)
        hidden = try sequences.map { try model.embed($0) }
    }

    public func quantized(_ role: TensorRole, scheme: QuantScheme) throws -> QuantizedTensor {
        guard let layer = role.layer else {
            return try ParallelQuantize.rtn(try source.matrix(role), scheme: scheme, threads: threads, name: role.name)
        }
        while nextLayer <= layer { try calibrate(layer: nextLayer) }
        guard let t = results[role] else { throw ModelError.unsupported("internal: \(role.name) was not quantized with its layer") }
        return t
    }

    func calibrate(layer l: Int) throws {
        let config = source.config
        let roles = source.schema.tensors.filter { $0.role.layer == l && plan.scheme($0.role) != nil }.map(\.role)
        let collector = HessianCollector(wanted: Set(roles))
        let model = Transformer(checkpoint: source, threads: threads)
        model.linearObserver = collector
        let start = Date()
        for x in hidden { _ = try layerForward(model, layer: l, x) }
        results = [:]
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
        let quantizedModel = Transformer(config: config, weights: overlay, threads: threads)
        hidden = try hidden.map { try layerForward(quantizedModel, layer: l, $0) }
        log?(String(format: "calibrated layer %d: %d projections in %.1f s", l, roles.count, Date().timeIntervalSince(start)))
        nextLayer = l + 1
    }

    /// One decoder layer over a whole sequence (prefill from position 0).
    func layerForward(_ model: Transformer, layer l: Int, _ x: Matrix) throws -> Matrix {
        let cache = KVCache(config: model.config)
        var h = x
        h += try model.attention(layer: l, x, start: 0, cache: cache, path: .naive)
        h += try model.feedForward(layer: l, h)
        return h
    }
}
