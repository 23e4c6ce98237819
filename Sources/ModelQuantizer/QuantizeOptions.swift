import Foundation
import Quantization

/// What `dsconv quantize` was asked for.
public struct QuantizeOptions: Sendable {
    public enum Method: String, Sendable, CaseIterable { case rtn, gptq, awq }
    /// A width the group size does not divide: keep BF16 (default), use the largest power-of-two
    /// group that divides it, or refuse.
    public enum GroupMismatch: String, Sendable { case keep, fallback, refuse }

    public var bits = 4
    /// nil: per output channel (the int8 default).
    public var groupSize: Int? = 128
    public var symmetric = true
    public var method = Method.rtn
    /// Extra module-name regexes to keep in BF16.
    public var ignore: [String] = []
    /// Quantize kv_b_proj too (kept BF16 by default).
    public var quantizeKvB = false
    public var groupMismatch = GroupMismatch.keep
    public var threads = 1
    public var maxShardSize = 5_000_000_000

    public init() {}

    public var scheme: QuantScheme { QuantScheme(bits: bits, groupSize: groupSize, symmetric: symmetric) }
}
