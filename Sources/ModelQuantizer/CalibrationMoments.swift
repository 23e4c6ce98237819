import DeepSeek
import HDF5

/// Per-input-channel moments of every Linear's input, read back from a `dsconv calibrate` file
/// (Formats/calibration-h5.md): what `quantize --stats` searches AWQ's scales and clips on,
/// instead of running the calibration text through the model again.
public struct CalibrationMoments: Sendable {
    public struct Channels: Sendable {
        /// E|x| per input channel.
        public let meanAbs: [Float]
        /// E[x²] per input channel: the diagonal of the input's second moment (of GPTQ's Hessian).
        public let meanSquare: [Float]
        public let tokens: Int
    }

    public let modules: [TensorRole: Channels]

    /// Reads `path` and checks that it describes `schema`'s model: format, architecture numbers,
    /// and every quantizable Linear's width. Errors name the file and what differs.
    public static func read(path: String, schema: TensorSchema) throws -> CalibrationMoments {
        func bad(_ m: String) -> ModelError { .badInput("--stats \(path): \(m)") }
        let f: HDF5File
        do { f = try HDF5File(reading: path) } catch { throw bad("not an HDF5 file dsconv can read (\(error))") }
        guard (try? f.stringAttribute("format")) == CalibrationStatistics.format else {
            throw bad("not a dsconv calibration file (its \"format\" attribute is not \(CalibrationStatistics.format))")
        }
        guard let version = try? f.intAttribute("version"), version == 1 else { throw bad("version is not 1") }
        let c = schema.config
        let expected: [(String, Int64)] = [("hidden_size", Int64(c.hiddenSize)), ("num_hidden_layers", Int64(c.numHiddenLayers)),
                                           ("n_routed_experts", Int64(c.nRoutedExperts ?? 0))]
        for (name, value) in expected {
            let found = try? f.intAttribute(name)
            guard found == value else {
                throw bad("\(name) is \(found.map(String.init) ?? "missing"), the model has \(value): statistics from another model")
            }
        }
        var modules: [TensorRole: Channels] = [:]
        for t in schema.tensors where t.role.isLinear && t.component == .weight && t.role.layer != nil {
            let g = "/" + t.role.moduleName
            guard f.exists(g) else { continue }
            let meanAbs = try f.readFloats(g + "/mean_abs")
            let sumSq = try f.readDoubles(g + "/sum_sq")
            let tokens = Int(try f.readInt64s(g + "/tokens").first ?? 0)
            let width = t.shape[1]
            guard meanAbs.count == width, sumSq.count == width else {
                throw bad("\(g) has \(meanAbs.count) channels, \(t.name) takes \(width) inputs: statistics from another model")
            }
            let n = Double(max(tokens, 1))
            modules[t.role] = Channels(meanAbs: meanAbs, meanSquare: sumSq.map { Float($0 / n) }, tokens: tokens)
        }
        guard !modules.isEmpty else { throw bad("holds no statistics for this model's Linear layers") }
        return CalibrationMoments(modules: modules)
    }
}
