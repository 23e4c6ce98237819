import CKernels
import DeepSeek
import Foundation
import HDF5
import SafeTensors
import Kernels

/// Per-input-channel activation statistics of every Linear, and how many tokens each routed
/// expert received: what `dsconv calibrate` measures, layer by layer, and writes as HDF5
/// (Formats/calibration-h5.md).
public final class CalibrationStatistics: LinearObserver {
    public struct Channels: Sendable {
        public var absSum: [Double]
        public var maxAbs: [Float]
        public var sumSquares: [Double]
        public var tokens: Int
    }

    public private(set) var modules: [TensorRole: Channels] = [:]
    /// Per MoE layer, the routed tokens of each expert.
    public private(set) var routed: [Int: [Int]] = [:]
    public private(set) var tokens = 0

    public init() {}

    public func linearInput(_ role: TensorRole, _ x: Matrix) {
        guard role.isLinear else { return }
        var c = modules[role] ?? Channels(absSum: [Double](repeating: 0, count: x.cols), maxAbs: [Float](repeating: 0, count: x.cols),
                                          sumSquares: [Double](repeating: 0, count: x.cols), tokens: 0)
        modules[role] = nil  // the arrays uniquely held while the kernel adds to them
        if x.rows > 0 && x.cols > 0 {
            x.data.withUnsafeBufferPointer { b in
                c.absSum.withUnsafeMutableBufferPointer { s in
                    c.sumSquares.withUnsafeMutableBufferPointer { q in
                        c.maxAbs.withUnsafeMutableBufferPointer { m in
                            dsk_channel_stats(b.baseAddress!, x.rows, x.cols, s.baseAddress!, q.baseAddress!, m.baseAddress!)
                        }
                    }
                }
            }
        }
        c.tokens += x.rows
        modules[role] = c
    }

    /// Runs the calibration windows through the model one layer at a time (one layer's weights
    /// touched at a time; the windows' hidden states held), recording every projection's inputs.
    public static func collect(source: Checkpoint, windows: [[Int]], threads: Int, allTokensThroughExperts: Bool,
                               backend: LinearBackend = .fast, log: ((String) -> Void)? = nil) throws -> CalibrationStatistics {
        let stats = CalibrationStatistics()
        let model = Transformer(checkpoint: source, threads: threads)
        model.backend = backend
        model.linearObserver = stats
        model.allTokensThroughExperts = allTokensThroughExperts
        var hidden = try windows.map { try model.embed($0) }
        stats.tokens = windows.reduce(0) { $0 + $1.count }
        let routing = RoutingCounter(config: source.config)
        for l in 0..<source.config.numHiddenLayers {
            let start = Date()
            hidden = try model.decoderLayer(l, windows: hidden, observer: routing)
            log?(String(format: "layer %d: %d tokens in %.1f s", l, stats.tokens, Date().timeIntervalSince(start)))
        }
        stats.routed = routing.counts
        return stats
    }

    final class RoutingCounter: ForwardObserver {
        let experts: Int
        var counts: [Int: [Int]] = [:]
        init(config: ModelConfig) { experts = config.nRoutedExperts ?? 0 }
        func routed(layer: Int, _ routing: Routing) {
            var c = counts[layer] ?? [Int](repeating: 0, count: experts)
            for t in routing.experts { for e in t where e < experts { c[e] += 1 } }
            counts[layer] = c
        }
    }

    public static let format = "dsconv-calibration"

    /// Writes the statistics (Formats/calibration-h5.md).
    public func write(to path: String, config: ModelConfig, attributes: [String: String], numbers: [String: Int]) throws {
        // Built in memory, then written by dsconv's own file writer: a full disk is an I/O error
        // (exit 3) with nothing left behind, never a crash inside libhdf5.
        let f = try HDF5File(creatingInMemory: path)
        try f.setAttribute("format", Self.format)
        try f.setAttribute("version", 1)
        try f.setAttribute("model_type", config.modelType)
        try f.setAttribute("hidden_size", Int64(config.hiddenSize))
        try f.setAttribute("num_hidden_layers", Int64(config.numHiddenLayers))
        try f.setAttribute("n_routed_experts", Int64(config.nRoutedExperts ?? 0))
        try f.setAttribute("tokens", Int64(tokens))
        for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try f.setAttribute(k, v) }
        for (k, v) in numbers.sorted(by: { $0.key < $1.key }) { try f.setAttribute(k, Int64(v)) }
        for (role, c) in modules.sorted(by: { $0.key.name < $1.key.name }) {
            let g = "/" + role.moduleName
            try f.createGroup(g)
            let n = Double(max(c.tokens, 1))
            try f.write(g + "/mean_abs", c.absSum.map { Float($0 / n) })
            try f.write(g + "/max_abs", c.maxAbs)
            try f.write(g + "/sum_sq", c.sumSquares)
            try f.write(g + "/tokens", [Int64(c.tokens)])
        }
        if !routed.isEmpty {
            try f.createGroup("/routing")
            for (l, counts) in routed.sorted(by: { $0.key < $1.key }) {
                try f.write("/routing/layer_\(l)", counts.map(Int64.init))
            }
        }
        try writeFileAtomically(path, try f.image())
    }

    /// Whether a file is a dsconv calibration file (for `--force`).
    public static func isCalibrationFile(_ path: String) -> Bool {
        guard let f = try? HDF5File(reading: path) else { return false }
        return (try? f.stringAttribute("format")) == format
    }
}
