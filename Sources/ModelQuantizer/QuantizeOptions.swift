import Foundation
import Quantization
import Serving

/// What `dsconv quantize` was asked for.
public struct QuantizeOptions: Sendable {
    public enum Method: String, Sendable, CaseIterable { case rtn, gptq, awq }
    /// How a module's scheme is chosen when the requested one does not fit it.
    /// `serve` (default): the requested scheme where vLLM takes it at every serving target, else
    /// the nearest one it takes (smaller groups of 64/32, per channel, group scales for experts on
    /// 9.0), else BF16; `keep`: BF16 wherever the group does not divide the width; `fallback`: the
    /// largest power-of-two group that divides it, engines aside; `refuse`: an error.
    public enum GroupMismatch: String, Sendable { case serve, keep, fallback, refuse }

    public var bits = 4
    /// nil: per output channel (the int8 default).
    public var groupSize: Int? = 128
    public var symmetric = true
    public var method = Method.rtn
    /// Extra module-name regexes to keep in BF16.
    public var ignore: [String] = []
    /// Quantize kv_b_proj too (kept BF16 by default).
    public var quantizeKvB = false
    public var groupMismatch = GroupMismatch.serve
    /// The tensor-parallel sizes the output is meant to be served at (vLLM); the model's heads
    /// may allow fewer.
    public var servingTPs = VLLMTarget.tensorParallelSizes
    /// The GPU generations it is meant to be served on.
    public var servingGPUs = GPUGeneration.allCases
    public var threads = 1
    public var maxShardSize = 5_000_000_000

    public init() {}

    public var scheme: QuantScheme { QuantScheme(bits: bits, groupSize: groupSize, symmetric: symmetric) }
}
