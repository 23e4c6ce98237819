import Foundation

/// Jinja filters used by chat templates.
enum Filters {
    static func kwarg(_ kwargs: [(String, Value)], _ name: String) -> Value? { kwargs.first { $0.0 == name }?.1 }

    static func apply(_ name: String, _ v: Value, _ args: [Value], _ kwargs: [(String, Value)], at loc: Location,
                      interpreter: Interpreter) throws -> Value {
        func string(_ x: Value) throws -> String {
            if case .undefined(let why) = x { throw TemplateError("\(why) (filter '\(name)')", at: loc) }
            return x.printed
        }
        switch name {
        case "trim":
            return .string(Methods.strip(try string(v), Methods.stringArg(args, 0), left: true, right: true))
        case "upper": return .string(try string(v).uppercased())
        case "lower": return .string(try string(v).lowercased())
        case "capitalize": return .string(try Methods.call(.string(try string(v)), "capitalize", [], [], at: loc).printed)
        case "title": return .string(try string(v).capitalized)
        case "string": return .string(v.printed)
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.count)
            case .list(let l): return .int(l.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw TemplateError("object of type '\(v.typeName)' has no length", at: loc)
            }
        case "default", "d":
            let fallback = args.first ?? kwarg(kwargs, "default_value") ?? .string("")
            let boolean = (args.count > 1 ? args[1] : kwarg(kwargs, "boolean"))?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return fallback }
            return v
        case "join":
            let sep = Methods.stringArg(args, 0) ?? (kwarg(kwargs, "d").map(\.printed) ?? "")
            var items = try interpreter.iterate(v, at: loc)
            if let attr = kwarg(kwargs, "attribute"), case .string(let a) = attr { items = items.map { $0.lookup(a) ?? .undefined(a) } }
            return .string(items.map(\.printed).joined(separator: sep))
        case "list": return .list(try interpreter.iterate(v, at: loc))
        case "first": return try interpreter.iterate(v, at: loc).first ?? .undefined("first of an empty sequence")
        case "last": return try interpreter.iterate(v, at: loc).last ?? .undefined("last of an empty sequence")
        case "reverse":
            if case .string(let s) = v { return .string(String(s.reversed())) }
            return .list(try interpreter.iterate(v, at: loc).reversed())
        case "unique":
            var out: [Value] = []
            for x in try interpreter.iterate(v, at: loc) where !out.contains(where: { Value.equal($0, x) }) { out.append(x) }
            return .list(out)
        case "int":
            switch v {
            case .int: return v
            case .double(let d): return .int(Int(d))
            case .bool(let b): return .int(b ? 1 : 0)
            case .string(let s): return .int(Int(s.trimmingWhitespace()) ?? Int(Double(s.trimmingWhitespace()) ?? 0))
            default: return args.first ?? .int(0)
            }
        case "float":
            switch v {
            case .int(let i): return .double(Double(i))
            case .double: return v
            case .string(let s): return .double(Double(s.trimmingWhitespace()) ?? 0)
            default: return .double(0)
            }
        case "abs":
            if case .int(let i) = v { return .int(abs(i)) }
            if case .double(let d) = v { return .double(abs(d)) }
            throw TemplateError("bad operand for abs: '\(v.typeName)'", at: loc)
        case "replace":
            return try Methods.call(.string(try string(v)), "replace", args, kwargs, at: loc)
        case "items":
            guard case .dict = v else { throw TemplateError("items filter needs a mapping", at: loc) }
            return try Methods.call(v, "items", [], [], at: loc)
        case "dictsort":
            guard case .dict(let d) = v else { throw TemplateError("dictsort needs a mapping", at: loc) }
            return .list(d.sorted { $0.0.lowercased() < $1.0.lowercased() }.map { .list([.string($0.0), $0.1]) })
        case "tojson":
            let indent: Int?
            if case .int(let n)? = args.first ?? kwarg(kwargs, "indent") { indent = n } else { indent = nil }
            let sortKeys = kwarg(kwargs, "sort_keys")?.truthy ?? false
            return .string(try PythonJSON.dumps(v, indent: indent, sortKeys: sortKeys, at: loc))
        case "selectattr", "rejectattr":
            guard case .string(let attr)? = args.first else { throw TemplateError("\(name) needs an attribute name", at: loc) }
            let items = try interpreter.iterate(v, at: loc)
            let keep = try items.filter { item in
                let a = item.lookup(attr) ?? .undefined(attr)
                let ok: Bool
                if args.count > 1, case .string(let test) = args[1] {
                    ok = try Tests.apply(test, a, Array(args.dropFirst(2)), at: loc)
                } else {
                    ok = a.truthy
                }
                return name == "selectattr" ? ok : !ok
            }
            return .list(keep)
        case "select", "reject":
            let items = try interpreter.iterate(v, at: loc)
            let keep = try items.filter { item in
                let ok: Bool
                if case .string(let test)? = args.first { ok = try Tests.apply(test, item, Array(args.dropFirst()), at: loc) } else { ok = item.truthy }
                return name == "select" ? ok : !ok
            }
            return .list(keep)
        case "map":
            let items = try interpreter.iterate(v, at: loc)
            if let attr = kwarg(kwargs, "attribute"), case .string(let a) = attr {
                let def = kwarg(kwargs, "default")
                return .list(items.map { $0.lookup(a) ?? def ?? .undefined(a) })
            }
            guard case .string(let filter)? = args.first else { throw TemplateError("map needs a filter name or attribute=", at: loc) }
            return .list(try items.map { try apply(filter, $0, Array(args.dropFirst()), [], at: loc, interpreter: interpreter) })
        case "indent":
            let width: Int
            if case .int(let w)? = args.first { width = w } else { width = 4 }
            let pad = String(repeating: " ", count: width)
            let first = (args.count > 1 ? args[1] : kwarg(kwargs, "first"))?.truthy ?? false
            let lines = try string(v).components(separatedBy: "\n")
            return .string(lines.enumerated().map { i, l in (i == 0 && !first) || l.isEmpty ? l : pad + l }.joined(separator: "\n"))
        case "safe", "e", "escape", "forceescape":
            if name == "safe" { return v }
            let s = try string(v)
            return .string(s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&#34;").replacingOccurrences(of: "'", with: "&#39;"))
        case "round":
            let precision: Int
            if case .int(let p)? = args.first { precision = p } else { precision = 0 }
            guard let d = Operators.number(v) else { throw TemplateError("round needs a number", at: loc) }
            let m = pow(10.0, Double(precision))
            return .double((d * m).rounded() / m)
        case "batch", "slice", "groupby", "sum", "min", "max", "sort", "wordcount", "truncate", "center", "format", "urlencode", "xmlattr", "filesizeformat", "pprint", "striptags", "wordwrap", "random", "attr":
            throw TemplateError("unsupported filter '\(name)'", at: loc)
        default:
            throw TemplateError("unknown filter '\(name)'", at: loc)
        }
    }
}

/// `json.dumps` as transformers' `tojson` calls it: ensure_ascii=False, separators ", " and ": ".
enum PythonJSON {
    static func dumps(_ v: Value, indent: Int?, sortKeys: Bool, at loc: Location) throws -> String {
        var out = ""
        try write(v, indent: indent, level: 0, sortKeys: sortKeys, into: &out, at: loc)
        return out
    }

    static func write(_ v: Value, indent: Int?, level: Int, sortKeys: Bool, into out: inout String, at loc: Location) throws {
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else { out += Value.pythonFloat(d) }
        case .string(let s): out += quote(s)
        case .list(let l):
            if l.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in l.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                if let n = indent { out += "\n" + String(repeating: " ", count: n * (level + 1)) }
                try write(item, indent: indent, level: level + 1, sortKeys: sortKeys, into: &out, at: loc)
            }
            if let n = indent { out += "\n" + String(repeating: " ", count: n * level) }
            out += "]"
        case .dict(var d):
            if d.isEmpty { out += "{}"; return }
            if sortKeys { d.sort { $0.0 < $1.0 } }
            out += "{"
            for (i, (k, item)) in d.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                if let n = indent { out += "\n" + String(repeating: " ", count: n * (level + 1)) }
                out += quote(k) + ": "
                try write(item, indent: indent, level: level + 1, sortKeys: sortKeys, into: &out, at: loc)
            }
            if let n = indent { out += "\n" + String(repeating: " ", count: n * level) }
            out += "}"
        case .namespace(let ns):
            try write(.dict(ns.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }), indent: indent, level: level, sortKeys: sortKeys, into: &out, at: loc)
        case .undefined(let why): throw TemplateError("\(why) (tojson)", at: loc)
        default: throw TemplateError("Object of type \(v.typeName) is not JSON serializable", at: loc)
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
