import DeepSeek
import HDF5
import SafeTensors

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
        // A FIFO or device would block in open (or feed endless bytes): regular files only.
        guard isRegularFile(path) else { throw bad("not a regular file") }
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
            let tokenCounts = try f.readInt64s(g + "/tokens")
            let width = t.shape[1]
            guard meanAbs.count == width else {
                throw bad("\(g)/mean_abs has \(meanAbs.count) values, \(t.name) takes \(width) inputs: statistics from another model")
            }
            guard sumSq.count == width else {
                throw bad("\(g)/sum_sq has \(sumSq.count) values, \(t.name) takes \(width) inputs: statistics from another model")
            }
            // Every value is checked: NaN/Inf, negative magnitudes or sums of squares, or a token
            // count that is not positive (or overflows) would steer the search silently.
            guard tokenCounts.count == 1, let count = tokenCounts.first, count > 0, count < Int64(1) << 53 else {
                throw bad("\(g)/tokens is \(tokenCounts.map(String.init).joined(separator: ", ")): one positive token count expected")
            }
            if let i = meanAbs.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
                throw bad("\(g)/mean_abs[\(i)] is \(meanAbs[i]): a finite, non-negative mean |x| expected")
            }
            if let i = sumSq.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
                throw bad("\(g)/sum_sq[\(i)] is \(sumSq[i]): a finite, non-negative sum of squares expected")
            }
            let tokens = Int(count)
            let n = Double(tokens)
            let meanSquare = sumSq.map { Float($0 / n) }
            if let i = meanSquare.firstIndex(where: { !$0.isFinite }) {
                throw bad("\(g)/sum_sq[\(i)] is \(sumSq[i]) over \(tokens) tokens: a mean square beyond float range")
            }
            modules[t.role] = Channels(meanAbs: meanAbs, meanSquare: meanSquare, tokens: tokens)
        }
        guard !modules.isEmpty else { throw bad("holds no statistics for this model's Linear layers") }
        return CalibrationMoments(modules: modules)
    }
}
