import DeepSeek
import Foundation
import Quantization
import Serving

/// The decision for every Linear of a model: its scheme, or why it stays in the checkpoint dtype.
/// Pure: from the config and the options, before any weight is read.
public struct QuantizePlan: Sendable {
    public enum Decision: Sendable, Equatable {
        case quantize(QuantScheme)
        case keep(reason: String)
    }

    public let decisions: [TensorRole: Decision]
    /// The `quantization_config` the output's config.json carries.
    public let quantization: WeightQuantization
    public let options: QuantizeOptions
    /// The vLLM targets the schemes were chosen for (empty outside `serve` mode, or when vLLM
    /// cannot serve the model at any requested size), and notes on what was chosen for them.
    public let servingTargets: [VLLMTarget]
    public let servingNotes: [String]

    public init(schema: TensorSchema, options: QuantizeOptions) throws(ModelError) {
        let scheme = options.scheme
        guard QuantScheme.supportedBits.contains(options.bits) else {
            throw .badInput("--bits \(options.bits): 4 or 8 expected")
        }
        if let g = options.groupSize, g < 1 || g & (g - 1) != 0 {
            throw .badInput("--group-size \(g): a power of two expected (32, 64, 128)")
        }
        var patterns: [NSRegularExpression] = []
        for p in options.ignore {
            if let why = RegexBudget.refusal(p) { throw .badInput("--ignore \(p.prefix(80)): \(why)") }
            do { patterns.append(try NSRegularExpression(pattern: p)) } catch {
                throw .badInput("--ignore \(p.prefix(80)): not a valid regular expression")
            }
        }
        if let g = options.groupSize {
            let widest = schema.tensors.filter { $0.role.isLinear && $0.component == .weight }.map { $0.shape.last ?? 0 }.max() ?? 0
            if g > widest { throw .badInput("--group-size \(g) is wider than every input of this model (widest \(widest)): nothing would be quantized") }
        }
        var decisions: [TensorRole: Decision] = [:]
        var servingNotes: [String] = []
        // serve mode: the sizes vLLM can serve this model at (heads, attention kernels); with
        // none, the schemes follow the group's divisibility alone (as `keep`).
        let servableTPs = options.servingTPs.filter { VLLMRules.engineRefusal(config: schema.config, tp: $0) == nil }
        let servingTargets = options.groupMismatch == .serve
            ? servableTPs.flatMap { tp in options.servingGPUs.map { VLLMTarget(tp: tp, gpu: $0, expertParallel: false) } } : []
        let chooseForServing = !servingTargets.isEmpty
        for t in schema.tensors where t.role.isLinear && t.component == .weight {
            let module = t.role.moduleName
            let cols = t.shape[1]
            if case .lmHead = t.role { decisions[t.role] = .keep(reason: "lm_head stays BF16"); continue }
            if case .kvB = t.role, !options.quantizeKvB {
                decisions[t.role] = .keep(reason: "kv_b_proj stays BF16 (precision-sensitive; engines dequantize it for MLA; --quantize-kv-b)")
                continue
            }
            let range = NSRange(module.startIndex..., in: module)
            if let p = patterns.first(where: { $0.firstMatch(in: module, range: range) != nil }) {
                decisions[t.role] = .keep(reason: "--ignore \(p.pattern)")
                continue
            }
            if chooseForServing { continue }  // chosen per engine module below
            if scheme.fits(cols: cols) {
                decisions[t.role] = .quantize(scheme)
                continue
            }
            switch options.groupMismatch {
            case .serve, .keep:
                decisions[t.role] = .keep(reason: "input width \(cols) is not a multiple of group \(scheme.groupSize ?? cols) (--group-fallback uses a smaller group)")
            case .refuse:
                throw .badInput("\(t.name): input width \(cols) is not a multiple of --group-size \(scheme.groupSize ?? cols) (--strict-groups)")
            case .fallback:
                var g = scheme.groupSize ?? cols
                while g > 1 && cols % g != 0 { g /= 2 }
                guard g >= 8 else {
                    decisions[t.role] = .keep(reason: "input width \(cols) has no power-of-two group ≥ 8")
                    continue
                }
                decisions[t.role] = .quantize(QuantScheme(bits: scheme.bits, groupSize: g, symmetric: scheme.symmetric))
            }
        }
        if options.groupMismatch == .serve {
            for tp in options.servingTPs where !servableTPs.contains(tp) {
                servingNotes.append("vLLM cannot serve this model at tp \(tp) whatever the scheme (\(VLLMRules.engineRefusal(config: schema.config, tp: tp)?.rule ?? "")); schemes are not chosen for it")
            }
        }
        if chooseForServing {
            let c = schema.config
            let choice = SchemeChoice(requested: scheme, targets: servingTargets)
            for l in 0..<c.numHiddenLayers {
                for group in VLLMRules.moduleGroups(config: c, layer: l) {
                    // A member kept by the rules above (lm_head, kv_b_proj, --ignore) keeps the group.
                    if let kept = group.roles.first(where: { if case .keep? = decisions[$0] { return true }; return false }),
                       case .keep(let why)? = decisions[kept] {
                        for r in group.roles where decisions[r] == nil {
                            decisions[r] = .keep(reason: group.isRoutedExperts ? "routed experts share one scheme and \(kept.moduleName) is kept (\(why))"
                                                                               : "fused with \(kept.moduleName), which is kept (\(why))")
                        }
                        continue
                    }
                    let (decision, note) = choice.decide(group, config: c, fits: { s in
                        group.roles.allSatisfy { r in s.fits(cols: schema[schema.name(r)]?.shape.last ?? 0) }
                    })
                    for r in group.roles { decisions[r] = decision }
                    if let note, !servingNotes.contains(note) { servingNotes.append(note) }
                }
            }
        }
        // Engines fuse q_a_proj with kv_a_proj_with_mqa, and gate_proj with up_proj: one scheme per pair.
        for (a, b) in Self.fusedPairs(schema.config) {
            guard let da = decisions[a], let db = decisions[b], da != db else { continue }
            if case .keep(let why) = da { decisions[b] = .keep(reason: "fused with \(a.moduleName), which is kept (\(why))") }
            else if case .keep(let why) = db { decisions[a] = .keep(reason: "fused with \(b.moduleName), which is kept (\(why))") }
            else {
                decisions[a] = .keep(reason: "its fused partner \(b.moduleName) has another scheme")
                decisions[b] = .keep(reason: "its fused partner \(a.moduleName) has another scheme")
            }
        }
        var groups = [WeightQuantization.Group(name: "group_0", scheme: scheme, targets: ["Linear"], actorder: nil)]
        // Modules with another scheme than the requested one, by scheme: one config group each.
        var byScheme: [QuantScheme: [String]] = [:]
        for (role, d) in decisions {
            if case .quantize(let s) = d, s != scheme { byScheme[s, default: []].append(role.moduleName) }
        }
        let order = byScheme.keys.sorted { ($0.groupSize ?? Int.max, $0.bits) > ($1.groupSize ?? Int.max, $1.bits) }
        for (i, s) in order.enumerated() {
            let members = Set(byScheme[s] ?? [])
            let names = schema.tensors.filter { $0.component == .weight && members.contains($0.role.moduleName) }.map(\.role.moduleName)
            groups.append(.init(name: "group_\(i + 1)", scheme: s, targets: names, actorder: nil))
        }
        // Every Linear left unquantized, by exact name, as llm-compressor lists them.
        let kept = schema.tensors.filter { t in
            guard t.role.isLinear, t.component == .weight, case .keep? = decisions[t.role] else { return false }
            return true
        }.map(\.role.moduleName)
        self.decisions = decisions
        self.options = options
        self.servingTargets = servingTargets
        self.servingNotes = servingNotes
        quantization = WeightQuantization(groups: groups, ignore: kept)
    }

    static func fusedPairs(_ c: ModelConfig) -> [(TensorRole, TensorRole)] {
        var pairs: [(TensorRole, TensorRole)] = []
        for l in 0..<c.numHiddenLayers {
            if c.qLoraRank != nil { pairs.append((.qA(layer: l), .kvA(layer: l))) }
            if c.isMoELayer(l) {
                for e in 0..<(c.nRoutedExperts ?? 0) { pairs.append((.routedExpert(layer: l, expert: e, .gate), .routedExpert(layer: l, expert: e, .up))) }
                if c.sharedExpertWidth > 0 { pairs.append((.sharedExpert(layer: l, .gate), .sharedExpert(layer: l, .up))) }
            } else {
                pairs.append((.denseMLP(layer: l, .gate), .denseMLP(layer: l, .up)))
            }
        }
        return pairs
    }

    public func scheme(_ role: TensorRole) -> QuantScheme? {
        if case .quantize(let s)? = decisions[role] { return s }
        return nil
    }
}
