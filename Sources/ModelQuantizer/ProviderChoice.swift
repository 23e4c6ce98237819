import DeepSeek
import Kernels

/// Where the quantized weights come from, by method: round to nearest, or calibrated layer by
/// layer through the CPU forward pass (GPTQ, AWQ), or AWQ searched on a statistics file.
public enum ProviderChoice {
    /// The calibration a method needs.
    public enum Calibration {
        /// None (RTN).
        case none
        /// AWQ on `dsconv calibrate` moments.
        case statistics(CalibrationMoments)
        /// Windows of token ids run through the model.
        case windows([[Int]], allTokensThroughExperts: Bool, backend: LinearBackend)
    }

    public static func make(source: Checkpoint, plan: QuantizePlan, calibration: Calibration, actOrder: Bool,
                            hessianMemory: Int, log: @escaping @Sendable (String) -> Void) throws -> QuantizedWeightProvider {
        let threads = plan.options.threads
        switch (plan.options.method, calibration) {
        case (.rtn, _):
            return RTNProvider(source: source, threads: threads)
        case (.awq, .statistics(let moments)):
            log("awq: scales and clips searched on per-channel moments (\(moments.modules.count) modules)")
            return AWQProvider(source: source, plan: plan, moments: moments, threads: threads, log: log)
        case (.gptq, .windows(let windows, let allTokens, let backend)), (.awq, .windows(let windows, let allTokens, let backend)):
            // Calibration reads the weights before the writer's own NaN/Inf check: refuse
            // damaged ones as they are read (GPTQ would otherwise meet NaN in its Cholesky).
            source.source.refusesNonFinite = true
            let layerwise: LayerwiseCalibration = plan.options.method == .gptq
                ? try GPTQProvider(source: source, plan: plan, sequences: windows, threads: threads, actOrder: actOrder,
                                   hessianMemory: hessianMemory, log: log)
                : try AWQProvider(source: source, plan: plan, sequences: windows, threads: threads, log: log)
            layerwise.allTokensThroughExperts = allTokens
            layerwise.forwardBackend = backend
            return layerwise
        case (.gptq, _), (.awq, .none):
            throw ModelError.badInput("--method \(plan.options.method.rawValue) needs calibration windows (--text, or the builtin set)")
        case (.gptq, .statistics):
            throw ModelError.badInput("--stats with --method gptq: GPTQ needs each input's full second-moment matrix (its Hessian), which a statistics file does not hold")
        }
    }
}
