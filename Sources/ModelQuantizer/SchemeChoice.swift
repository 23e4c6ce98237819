import DeepSeek
import Quantization
import Serving

/// The scheme of one engine module (a fused projection, a Linear, a layer's routed experts),
/// chosen so that vLLM loads the output at every serving target: the requested scheme where
/// it can, else the nearest one vLLM takes (smaller groups of the sizes its kernels run,
/// then per channel; for experts on 9.0 group scales), else BF16. Routed experts that no
/// scheme lets load at some tensor-parallel size by tensor parallelism take the scheme that
/// loads there with expert parallelism, and the note says so.
struct SchemeChoice {
    let requested: QuantScheme
    let targets: [VLLMTarget]

    /// In order of preference: the requested scheme, smaller standard groups, per channel; and
    /// for a per-channel request, the standard groups from the largest.
    var candidates: [QuantScheme] {
        let standard = [128, 64, 32]
        var out = [requested]
        if let g = requested.groupSize {
            out += standard.filter { $0 < g }.map { QuantScheme(bits: requested.bits, groupSize: $0, symmetric: requested.symmetric) }
            out.append(QuantScheme(bits: requested.bits, groupSize: nil, symmetric: requested.symmetric))
        } else {
            out += standard.map { QuantScheme(bits: requested.bits, groupSize: $0, symmetric: requested.symmetric) }
        }
        return out
    }

    /// The decision for `group`, and a note when it is not simply the requested scheme.
    /// `fits`: whether a scheme's groups tile every member's full input width.
    func decide(_ group: VLLMRules.ModuleGroup, config c: ModelConfig, fits: (QuantScheme) -> Bool) -> (QuantizePlan.Decision, String?) {
        let name = Self.genericName(group.vllmName)
        func refusals(_ s: QuantScheme, expertParallel: Bool) -> [(VLLMTarget, String)] {
            targets.compactMap { t in
                let target = VLLMTarget(tp: t.tp, gpu: t.gpu, expertParallel: expertParallel)
                return VLLMRules.refusal(group, config: c, scheme: { _ in s }, target: target).map { (target, $0) }
            }
        }
        let fitting = candidates.filter(fits)
        var firstRefusal: (QuantScheme, VLLMTarget, String)?
        for s in fitting {
            let plain = refusals(s, expertParallel: false)
            if plain.isEmpty {
                guard s != requested else { return (.quantize(s), nil) }
                let why = firstRefusal.map { "; \($0.0) is refused at \(Self.describe($0.1)): \($0.2)" } ?? (fits(requested) ? "" : "; the requested groups do not tile its width")
                return (.quantize(s), "\(name): \(s)\(why)")
            }
            if firstRefusal == nil, let r = plain.first { firstRefusal = (s, r.0, r.1) }
        }
        // Routed experts: the scheme that loads at every size, some only with expert parallelism.
        if group.isRoutedExperts {
            let covering = fitting.compactMap { s -> (QuantScheme, [VLLMTarget])? in
                let plain = refusals(s, expertParallel: false).map(\.0)
                let ep = Set(refusals(s, expertParallel: true).map { VLLMTarget(tp: $0.0.tp, gpu: $0.0.gpu, expertParallel: false) })
                guard plain.allSatisfy({ !ep.contains($0) }) else { return nil }
                return (s, plain)
            }
            if let best = covering.min(by: { $0.1.count < $1.1.count }) {
                let tps = Set(best.1.map(\.tp)).sorted().map(String.init).joined(separator: ", ")
                return (.quantize(best.0), "\(name): \(best.0); no scheme loads by tensor parallelism at tp \(tps): serve at those sizes with --enable-expert-parallel")
            }
        }
        let why = firstRefusal.map { "vLLM takes no int\(requested.bits) scheme at every target (\($0.0) at \(Self.describe($0.1)): \($0.2))" }
            ?? "no int\(requested.bits) group of 32, 64 or 128 tiles its width"
        return (.keep(reason: why), "\(name): kept BF16: \(why)")
    }

    static func describe(_ t: VLLMTarget) -> String {
        "tp \(t.tp) on \(t.gpu.capability) (\(t.gpu.cards))" + (t.expertParallel ? " with expert parallelism" : "")
    }

    /// `model.layers.12.mlp.experts` → `layers.*.mlp.experts`, so that one note covers every layer.
    static func genericName(_ n: String) -> String {
        let parts = n.split(separator: ".")
        guard parts.count > 2, parts[0] == "model", parts[1] == "layers" else { return n }
        return (["layers", "*"] + parts.dropFirst(3)).joined(separator: ".")
    }
}
