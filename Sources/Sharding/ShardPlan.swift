import DeepSeek
import Failures

/// How routed experts are distributed.
public enum ExpertMode: String, Sendable, CaseIterable {
    /// Every expert split on its intermediate dim like a dense MLP (vLLM's default).
    case tp
    /// Whole experts, a contiguous block per rank.
    case ep
}

/// What one rank receives of one source tensor.
public struct PlannedSlice: Sendable, Equatable {
    /// Source (and output) tensor name.
    public let name: String
    public let role: TensorRole
    /// Which stored tensor of the role (a quantized weight's packed words, scales, …).
    public var component: TensorComponent = .weight
    /// nil: the whole tensor (replicated, or a whole expert); 0: rows; 1: columns.
    public let dim: Int?
    /// Element offset and length along `dim` (0 and the full size when `dim` is nil).
    public let offset: Int
    public let length: Int
    /// Shape of the source tensor and of the slice.
    public let sourceShape: [Int]
    /// A quantized weight's component: the rank's logical [out, in] of the weight it belongs to.
    public var logicalShape: [Int]? = nil
    /// Values the rank stores instead of a piece of the source: a quantized weight's
    /// `weight_shape`, which holds the rank's logical shape.
    public var contents: [Int64]? = nil
    public var shape: [Int] {
        guard let dim else { return sourceShape }
        var s = sourceShape
        s[dim] = length
        return s
    }
}

/// Why a split cannot be made, naming the tensor, the dim, the size and N.
public struct PlanError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The tensor-parallel layout of a checkpoint: for every rank, the slices it holds. A pure
/// function of (schema, tp, expert mode, group size): no I/O and no dtype, so packed quantized
/// layouts reuse it (a packed weight, its scales and zero points split along the same logical dim).
///
/// Rules (Formats/tp-layout.md, as DeepSeek's convert.py and vLLM): embedding and lm_head by vocab rows;
/// q_a, kv_a, norms and the router replicated; q_b / q_proj and kv_b by whole heads (rows);
/// o_proj by whole heads (columns); dense MLP and shared experts gate/up by rows and down by
/// columns; routed experts like a dense MLP (`tp`) or whole, a contiguous block per rank (`ep`).
public struct ShardPlan: Sendable {
    public let tp: Int
    public let experts: ExpertMode
    public let groupSize: Int?
    /// Per rank, slices in checkpoint order.
    public let ranks: [[PlannedSlice]]
    /// Per rank, the routed experts it holds whole (ep) or a slice of (tp: all of them).
    public let localExperts: [[Int]]
    public let config: ModelConfig

    public init(schema: TensorSchema, tp: Int, experts: ExpertMode, groupSize: Int? = nil) throws(PlanError) {
        let c = schema.config
        guard tp >= 1 else { throw PlanError(message: "--tp must be at least 1, got \(tp)") }
        if let g = groupSize, g < 1 { throw PlanError(message: "--group-size must be positive, got \(g)") }
        func need(_ size: Int, _ unit: Int, _ what: String, _ tensor: String, _ dim: Int) throws(PlanError) {
            guard size % (unit * tp) == 0 else {
                throw PlanError(message: "\(tensor): dim \(dim) of size \(size) (\(size / unit) \(what)) does not split \(tp) ways")
            }
        }
        let nExperts = c.nRoutedExperts ?? 0
        if experts == .ep && nExperts % tp != 0 {
            throw PlanError(message: "--experts ep: n_routed_experts \(nExperts) is not divisible by tp \(tp) (use --experts tp, or a tp that divides \(nExperts))")
        }
        var ranks = Array(repeating: [PlannedSlice](), count: tp)
        var rowParallelWidths: [(name: String, role: TensorRole, width: Int)] = []  // input columns per rank of dim-1 splits
        for t in schema.tensors {
            let name = t.name
            if t.component != .weight {
                try Self.planComponent(t, config: c, tp: tp, experts: experts, nExperts: nExperts, into: &ranks)
                continue
            }
            func split(_ dim: Int, unit: Int, what: String) throws(PlanError) {
                try need(t.shape[dim], unit, what, name, dim)
                let per = t.shape[dim] / tp
                if dim == 1 { rowParallelWidths.append((name, t.role, per)) }
                for r in 0..<tp {
                    ranks[r].append(PlannedSlice(name: name, role: t.role, component: t.component, dim: dim, offset: r * per, length: per,
                                                 sourceShape: t.shape))
                }
            }
            func replicate() {
                for r in 0..<tp {
                    ranks[r].append(PlannedSlice(name: name, role: t.role, component: t.component, dim: nil, offset: 0,
                                                 length: t.shape.first ?? 1, sourceShape: t.shape))
                }
            }
            switch Self.rule(t.role, config: c, tp: tp, experts: experts, nExperts: nExperts) {
            case .split(let dim, let unit, let what): try split(dim, unit: unit, what: what)
            case .replicate: replicate()
            case .owner(let r):
                ranks[r].append(PlannedSlice(name: name, role: t.role, component: t.component, dim: nil, offset: 0, length: t.shape[0],
                                             sourceShape: t.shape))
            }
        }
        if let g = groupSize {
            let bad = rowParallelWidths.filter { $0.width % g != 0 }
            if let first = bad.first {
                let widths = Set(rowParallelWidths.map(\.width))
                let common = widths.reduce(0) { ShardPlan.gcd($0, $1) }
                let workable = [32, 64, 128, 256].filter { common % $0 == 0 }
                var hint = workable.isEmpty ? "no power-of-two group size ≥ 32 divides every slice (\(widths.sorted()))"
                    : "group sizes that work at tp \(tp): \(workable.map(String.init).joined(separator: ", "))"
                if experts == .tp && nExperts > 0 && nExperts % tp == 0 && !bad.contains(where: { !$0.role.isRoutedExpert }) {
                    hint += "; or --experts ep keeps experts whole"
                }
                throw PlanError(message: "\(first.name): dim 1 splits \(tp) ways into \(first.width) input columns, not a multiple of --group-size \(g) (\(bad.count) tensor(s) affected); \(hint)")
            }
        }
        self.tp = tp
        self.experts = experts
        self.groupSize = groupSize
        self.ranks = ranks
        self.config = c
        localExperts = (0..<tp).map { r in
            guard nExperts > 0 else { return [] }
            return experts == .ep ? Array((r * nExperts / tp)..<((r + 1) * nExperts / tp)) : Array(0..<nExperts)
        }
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// How a role splits: along a dim in units of `unit` (whole heads), replicated, or whole on
    /// the rank that owns a routed expert.
    enum Rule {
        case split(dim: Int, unit: Int, what: String)
        case replicate
        case owner(rank: Int)
    }

    static func rule(_ role: TensorRole, config c: ModelConfig, tp: Int, experts: ExpertMode, nExperts: Int) -> Rule {
        switch role.tensorParallelSplit(c) {
        case .replicated: return .replicate
        case .split(let dim, let unit, let what): return .split(dim: dim, unit: unit, what: what)
        case .routedExpert(let dim):
            switch experts {
            case .tp: return .split(dim: dim, unit: 1, what: "features")
            case .ep: return .owner(rank: (role.expert ?? 0) / (nExperts / tp))
            }
        }
    }

    /// A stored component of a quantized weight (compressed-tensors pack-quantized): the split is
    /// decided on the weight's logical [out, in] and mapped to the component's own dims: packed
    /// words along the input (b/32 words per column), scales and zero points per group, zero
    /// points packed along the output (b/32 words per row). A split that would cut a word or a
    /// group is refused; `weight_shape` is replicated with each rank's logical shape as its value.
    static func planComponent(_ t: ExpectedTensor, config c: ModelConfig, tp: Int, experts: ExpertMode, nExperts: Int,
                              into ranks: inout [[PlannedSlice]]) throws(PlanError) {
        guard let logical = t.logicalShape, logical.count == 2, let scheme = t.scheme else {
            throw PlanError(message: "\(t.name): a quantized component without its weight's logical shape and scheme")
        }
        func add(_ r: Int, dim: Int?, offset: Int, length: Int, rankLogical: [Int]) {
            var s = PlannedSlice(name: t.name, role: t.role, component: t.component, dim: dim, offset: offset, length: length, sourceShape: t.shape)
            s.logicalShape = rankLogical
            if t.component == .weightShape { s.contents = rankLogical.map(Int64.init) }
            ranks[r].append(s)
        }
        switch rule(t.role, config: c, tp: tp, experts: experts, nExperts: nExperts) {
        case .replicate:
            for r in 0..<tp { add(r, dim: nil, offset: 0, length: t.shape.first ?? 1, rankLogical: logical) }
        case .owner(let r):
            add(r, dim: nil, offset: 0, length: t.shape.first ?? 1, rankLogical: logical)
        case .split(let dim, let unit, let what):
            guard logical[dim] % (unit * tp) == 0 else {
                throw PlanError(message: "\(t.name): the weight's dim \(dim) of size \(logical[dim]) (\(logical[dim] / unit) \(what)) does not split \(tp) ways")
            }
            let per = logical[dim] / tp
            var rankLogical = logical
            rankLogical[dim] = per
            let gw = scheme.groupWidth(cols: logical[1])
            // (physical dim, elements per rank) of this component, or nil: replicated.
            var physical: (dim: Int, per: Int)?
            switch (t.component, dim) {
            case (.weightShape, _): physical = nil
            case (.weightPacked, 0), (.weightScale, 0): physical = (0, per)
            case (.weightPacked, _):
                guard per * scheme.bits % 32 == 0 else {
                    throw PlanError(message: "\(t.name): \(per) input columns per rank at \(scheme.bits) bits do not fill whole int32 words")
                }
                physical = (1, per * scheme.bits / 32)
            case (.weightZeroPoint, 0):
                guard per * scheme.bits % 32 == 0 else {
                    throw PlanError(message: "\(t.name): \(per) output rows per rank at \(scheme.bits) bits do not fill whole int32 words of zero points")
                }
                physical = (0, per * scheme.bits / 32)
            default:  // scales and zero points along the input: whole groups, or per channel (one scale per row: every rank needs it whole)
                if scheme.groupSize == nil {
                    physical = nil
                } else {
                    guard per % gw == 0 else {
                        throw PlanError(message: "\(t.name): dim 1 splits \(tp) ways into \(per) input columns, not a multiple of its group size \(gw): a group would straddle two ranks (requantize with a smaller --group-size, or reshard --experts ep)")
                    }
                    physical = (1, per / gw)
                }
            }
            for r in 0..<tp {
                if let p = physical {
                    add(r, dim: p.dim, offset: r * p.per, length: p.per, rankLogical: rankLogical)
                } else {
                    add(r, dim: nil, offset: 0, length: t.shape.first ?? 1, rankLogical: rankLogical)
                }
            }
        }
    }

    /// The config a rank's forward pass runs with: its share of the heads and (tp mode) of each
    /// expert's width. Shared-expert widths come from the weights themselves.
    public func rankConfig() -> ModelConfig {
        var c = config
        c.numAttentionHeads = config.numAttentionHeads / tp
        c.numKeyValueHeads = c.numAttentionHeads
        if experts == .tp { c.moeIntermediateSize = config.moeIntermediateSize / tp }
        c.intermediateSize = config.intermediateSize / tp
        return c
    }

    /// Vocabulary rows of a rank (vocab-parallel embedding and head).
    public func vocabRange(rank: Int) -> Range<Int> {
        let per = config.vocabSize / tp
        return (rank * per)..<((rank + 1) * per)
    }

    /// Bytes each rank receives at `bytesPerElement`.
    public func bytesPerRank(bytesPerElement: Int) -> [Int] {
        bytesPerRank { _ in bytesPerElement }
    }

    /// Bytes each rank receives, each slice at its own element size (a quantized checkpoint's
    /// int32 words, BF16 scales, int64 shapes).
    public func bytesPerRank(elementBytes: (PlannedSlice) -> Int) -> [Int] {
        ranks.map { $0.reduce(0) { $0 + $1.shape.reduce(elementBytes($1), *) } }
    }
}

extension PlanError: DeclaresFailureKind {
    /// A plan the model's shapes do not allow: bad input (the flags asked for it).
    public var failureKind: FailureKind { .input }
}
