/// How one Linear's weight is quantized: integer width, group size (nil: one scale per output
/// channel), symmetric or with a zero point. compressed-tensors' `QuantizationArgs` for an int
/// weight with strategy `group` or `channel`.
public struct QuantScheme: Sendable, Hashable, CustomStringConvertible {
    public let bits: Int
    /// Columns per scale; nil: the whole row (strategy `channel`).
    public let groupSize: Int?
    public let symmetric: Bool

    public init(bits: Int, groupSize: Int?, symmetric: Bool) {
        self.bits = bits
        self.groupSize = groupSize
        self.symmetric = symmetric
    }

    public static let supportedBits = [4, 8]

    public var qmin: Int { -(1 << (bits - 1)) }
    public var qmax: Int { (1 << (bits - 1)) - 1 }

    /// Columns one scale covers for a weight `cols` wide.
    public func groupWidth(cols: Int) -> Int { groupSize ?? cols }
    /// Scales per row.
    public func groups(cols: Int) -> Int { cols / groupWidth(cols: cols) }
    /// Whether the scheme applies to an input width (groups must tile it exactly).
    public func fits(cols: Int) -> Bool { cols > 0 && cols % groupWidth(cols: cols) == 0 }
    /// int32 words per packed row.
    public func packedWords(cols: Int) -> Int { (cols * bits + 31) / 32 }

    public var strategy: String { groupSize == nil ? "channel" : "group" }

    public var description: String {
        "int\(bits) \(groupSize.map { "g\($0)" } ?? "per-channel") \(symmetric ? "sym" : "asym")"
    }
}
