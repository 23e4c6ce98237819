import Foundation
import JSON
import Quantization

/// `quantization_config` of a compressed-tensors `pack-quantized` checkpoint (Formats/quantized.md):
/// which Linear layers hold integer weights, with which scheme. Only what dsconv can compute with
/// is accepted — int weights, 4 or 8 bits, group or channel strategy, static, no activation
/// quantization, no `g_idx` — anything else is refused naming the field.
public struct WeightQuantization: Sendable, Equatable {
    public struct Group: Sendable, Equatable {
        public var name: String
        public var scheme: QuantScheme
        /// "Linear", exact module names, or "re:" patterns (Python `re.match` semantics).
        public var targets: [String]
        public var actorder: String?

        public init(name: String, scheme: QuantScheme, targets: [String], actorder: String?) {
            self.name = name
            self.scheme = scheme
            self.targets = targets
            self.actorder = actorder
        }
    }

    public var groups: [Group]
    /// Module names or "re:" patterns left unquantized.
    public var ignore: [String]

    public init(groups: [Group], ignore: [String]) {
        self.groups = groups
        self.ignore = ignore
    }

    /// The scheme of a Linear module (its name without `.weight`), or nil when it stays in the
    /// checkpoint dtype. Precedence as compressed-tensors: ignore, then exact name, regex, class.
    /// For many look-ups, build a `resolver` once.
    public func scheme(forModule name: String) -> QuantScheme? { resolver.scheme(forModule: name) }

    /// The same precedence over indexes built once: exact names hashed, patterns compiled.
    public struct Resolver: @unchecked Sendable {
        let ignoreExact: Set<String>
        let ignorePatterns: [NSRegularExpression?]
        let exact: [String: QuantScheme]
        let patternGroups: [(patterns: [NSRegularExpression?], scheme: QuantScheme)]
        let linear: QuantScheme?

        init(_ q: WeightQuantization) {
            func compile(_ p: String) -> NSRegularExpression? { try? NSRegularExpression(pattern: String(p.dropFirst(3))) }
            ignoreExact = Set(q.ignore.filter { !$0.hasPrefix("re:") })
            ignorePatterns = q.ignore.filter { $0.hasPrefix("re:") }.map(compile)
            var exact: [String: QuantScheme] = [:]
            for g in q.groups { for t in g.targets where !t.hasPrefix("re:") && exact[t] == nil { exact[t] = g.scheme } }
            self.exact = exact
            patternGroups = q.groups.compactMap { g in
                let p = g.targets.filter { $0.hasPrefix("re:") }
                return p.isEmpty ? nil : (p.map(compile), g.scheme)
            }
            linear = q.groups.first { $0.targets.contains("Linear") }?.scheme
        }

        static func matches(_ re: NSRegularExpression?, _ name: String) -> Bool {
            guard let re else { return false }
            return re.firstMatch(in: name, options: [.anchored], range: NSRange(name.startIndex..., in: name)) != nil
        }

        public func scheme(forModule name: String) -> QuantScheme? {
            if ignoreExact.contains(name) || ignorePatterns.contains(where: { Self.matches($0, name) }) { return nil }
            if let s = exact[name] { return s }
            if let g = patternGroups.first(where: { $0.patterns.contains { Self.matches($0, name) } }) { return g.scheme }
            return linear
        }
    }

    public var resolver: Resolver { Resolver(self) }

    // MARK: config.json

    public static func parse(_ v: JSONValue, file: String) throws(ModelError) -> WeightQuantization {
        func bad(_ field: String, _ message: String) -> ModelError {
            .invalidConfig(file: file, field: "quantization_config" + (field.isEmpty ? "" : "." + field), message: message)
        }
        guard case .object = v else { throw bad("", "must be an object") }
        guard v["quant_method"]?.stringValue == "compressed-tensors" else {
            throw bad("quant_method", "\(v["quant_method"]?.serialized() ?? "missing"): only compressed-tensors checkpoints are supported")
        }
        guard v["format"]?.stringValue == "pack-quantized" else {
            throw bad("format", "\(v["format"]?.serialized() ?? "missing"): only pack-quantized is supported")
        }
        if let status = v["quantization_status"]?.stringValue, status != "compressed" {
            throw bad("quantization_status", "\"\(status)\": only compressed checkpoints hold packed weights")
        }
        // Transforms (Hadamard rotations) and 2:4 sparsity change what the packed weights mean:
        // decoding them as plain pack-quantized would give wrong weights that look valid.
        // (llm-compressor writes {} for none.)
        for key in ["transform_config", "sparsity_config"] where v[key] != nil && v[key] != .null && v[key]?.objectValue?.count != 0 {
            throw bad(key, "present: dsconv decodes plain pack-quantized weights only (no rotations or sparsity)")
        }
        /// A list of module names or "re:" patterns (each pattern must compile).
        func names(_ value: JSONValue?, _ field: String, required: Bool) throws(ModelError) -> [String] {
            guard let value, value != .null else {
                if required { throw bad(field, "missing: a non-empty list of module names expected") }
                return []
            }
            guard let list = value.arrayValue else { throw bad(field, "\(value.serialized().prefix(60)): a list of module names expected") }
            var out: [String] = []
            for (i, e) in list.enumerated() {
                guard let n = e.stringValue, !n.isEmpty else { throw bad("\(field)[\(i)]", "\(e.serialized().prefix(60)): a module name or \"re:\" pattern expected") }
                if n.hasPrefix("re:") {
                    do { _ = try NSRegularExpression(pattern: String(n.dropFirst(3))) } catch {
                        throw bad("\(field)[\(i)]", "\(n.prefix(80)): not a valid regular expression")
                    }
                    if let why = RegexBudget.refusal(String(n.dropFirst(3))) { throw bad("\(field)[\(i)]", "\(n.prefix(80)): \(why)") }
                }
                out.append(n)
            }
            if required && out.isEmpty { throw bad(field, "empty: a non-empty list of module names expected") }
            return out
        }
        guard case .object(let groupsObject)? = v["config_groups"], groupsObject.count > 0 else {
            throw bad("config_groups", "must be a non-empty object")
        }
        var groups: [Group] = []
        for (name, g) in groupsObject.pairs {
            let field = "config_groups.\(name)"
            if let f = g["format"]?.stringValue, f != "pack-quantized" { throw bad(field + ".format", "\"\(f)\": only pack-quantized is supported") }
            for key in ["input_activations", "output_activations"] where g[key] != nil && g[key] != .null {
                throw bad(field + "." + key, "activation quantization is not supported (weight-only schemes)")
            }
            let targets = try names(g["targets"], field + ".targets", required: true)
            guard let w = g["weights"], case .object = w else { throw bad(field + ".weights", "must be an object") }
            guard w["type"]?.stringValue == "int" else { throw bad(field + ".weights.type", "only int weights are supported") }
            guard let bits = w["num_bits"]?.integerValue.map({ Int($0) }), QuantScheme.supportedBits.contains(bits) else {
                throw bad(field + ".weights.num_bits", "\(w["num_bits"]?.serialized() ?? "missing"): 4 or 8 expected")
            }
            if w["dynamic"]?.boolValue == true { throw bad(field + ".weights.dynamic", "dynamic weight quantization is not supported") }
            let symmetric = w["symmetric"]?.boolValue ?? true
            let strategy = w["strategy"]?.stringValue ?? "group"
            var groupSize: Int?
            switch strategy {
            case "channel": groupSize = nil
            case "group":
                guard let gs = w["group_size"]?.integerValue.map({ Int($0) }), gs > 0 else { throw bad(field + ".weights.group_size", "a positive group size is required for strategy group") }
                groupSize = gs
            default: throw bad(field + ".weights.strategy", "\"\(strategy)\": group or channel expected")
            }
            let actorder = w["actorder"]?.stringValue
            if actorder == "group" { throw bad(field + ".weights.actorder", "\"group\" (weight_g_idx) is not supported; static or null expected") }
            groups.append(Group(name: name, scheme: QuantScheme(bits: bits, groupSize: groupSize, symmetric: symmetric),
                                targets: targets, actorder: actorder))
        }
        let ignore = try names(v["ignore"], "ignore", required: false)
        return WeightQuantization(groups: groups, ignore: ignore)
    }

    /// The `quantization_config` object llm-compressor writes (keys sorted, as its `json.dump`).
    /// `version` is the compressed-tensors release whose format this follows.
    public var json: JSONValue {
        var config = JSONObject()
        for g in groups {
            let s = g.scheme
            let weights: JSONValue = [
                "actorder": g.actorder.map { .string($0) } ?? .null, "block_structure": .null, "dynamic": .bool(false),
                "group_size": s.groupSize.map { JSONValue($0) } ?? .null, "num_bits": JSONValue(s.bits),
                "observer": .string("memoryless_minmax"), "observer_kwargs": .object(JSONObject()), "scale_dtype": .null,
                "strategy": .string(s.strategy), "symmetric": .bool(s.symmetric), "type": .string("int"),
                "zp_dtype": s.symmetric ? .null : .string("torch.int8"),
            ]
            config[g.name] = ["format": "pack-quantized", "input_activations": .null, "output_activations": .null,
                              "targets": .array(g.targets.map { .string($0) }), "weights": weights]
        }
        return ["config_groups": .object(config), "format": "pack-quantized", "global_compression_ratio": .null,
                "ignore": .array(ignore.map { .string($0) }), "kv_cache_scheme": .null, "quant_method": "compressed-tensors",
                "quantization_status": "compressed", "sparsity_config": .object(JSONObject()),
                "transform_config": .object(JSONObject()), "version": "0.20.1"]
    }
}
