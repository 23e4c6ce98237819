import Foundation
import JSON

/// A Jinja `namespace()`: the one mutable object templates use to carry state out of loops.
final class Namespace: @unchecked Sendable {
    var attributes: [String: Value]
    init(_ attributes: [String: Value]) { self.attributes = attributes }
}

/// A `{% macro %}` definition, callable from expressions.
final class Macro: @unchecked Sendable {
    let name: String
    let parameters: [(String, Expr?)]
    let body: [Node]
    init(name: String, parameters: [(String, Expr?)], body: [Node]) {
        self.name = name
        self.parameters = parameters
        self.body = body
    }
}

/// A built-in global function (`raise_exception`, `range`, `namespace`, ...).
struct Builtin: @unchecked Sendable {
    let name: String
    let call: ([Value], [(String, Value)]) throws -> Value
}

/// A template value, with Python's semantics where Jinja inherits them.
enum Value: @unchecked Sendable {
    /// A missing variable, key or attribute; `hint` says which, for error messages.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    case dict([(String, Value)])
    case namespace(Namespace)
    case macro(Macro)
    case builtin(Builtin)

    /// JSON data (messages, tools) as template values; objects keep their key order.
    init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .integer(let i): self = .int(Int(i))
        case .number(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(Value.init(json:)))
        case .object(let o): self = .dict(o.pairs.map { ($0.key, Value(json: $0.value)) })
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }
    var isNone: Bool { if case .none = self { return true }; return false }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        default: return true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .macro: return "macro"
        case .builtin: return "function"
        }
    }

    func lookup(_ key: String) -> Value? {
        switch self {
        case .dict(let d): return d.first { $0.0 == key }?.1
        case .namespace(let n): return n.attributes[key]
        default: return nil
        }
    }

    /// `str(x)` as Jinja prints it.
    var printed: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python `repr`.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return Value.pythonFloat(d)
        case .string(let s): return Value.pythonStringRepr(s)
        case .list(let l): return "[" + l.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.map { Value.pythonStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        case .macro(let m): return "<Macro '\(m.name)'>"
        case .builtin(let b): return "<built-in function \(b.name)>"
        }
    }

    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == d.rounded() && abs(d) < 1e16 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    static func pythonStringRepr(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where Character(u) == quote: out += "\\" + String(quote)
            case _ where u.value < 0x20 || u.value == 0x7F: out += String(format: "\\x%02x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        out.append(quote)
        return out
    }

    /// Python `==`.
    static func equal(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
        case (.bool(let x), .int(let y)), (.int(let y), .bool(let x)): return (x ? 1 : 0) == y
        case (.string(let x), .string(let y)): return x == y
        case (.list(let x), .list(let y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && x.allSatisfy { kv in y.contains { $0.0 == kv.0 && equal($0.1, kv.1) } }
        case (.namespace(let x), .namespace(let y)): return x === y
        default: return false
        }
    }
}
