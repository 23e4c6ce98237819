import Foundation

/// Binary operators with Python semantics (Jinja delegates to them).
enum Operators {
    static func apply(_ op: String, _ a: Value, _ b: Value, at loc: Location) throws -> Value {
        switch op {
        case "==": return .bool(Value.equal(a, b))
        case "!=": return .bool(!Value.equal(a, b))
        case "in", "not in":
            let r: Bool
            switch b {
            case .string(let s):
                guard case .string(let needle) = a else { throw TemplateError("'in <string>' requires a string on the left, not \(a.typeName)", at: loc) }
                r = needle.isEmpty || s.contains(needle)
            case .list(let l): r = l.contains { Value.equal($0, a) }
            case .dict(let d):
                guard case .string(let k) = a else { r = false; break }
                r = d.contains { $0.0 == k }
            case .undefined(let why): throw TemplateError("\(why); 'in' needs a container", at: loc)
            default: throw TemplateError("argument of type '\(b.typeName)' is not iterable", at: loc)
            }
            return .bool(op == "in" ? r : !r)
        case "~":
            let (x, y) = (a.printed, b.printed)
            try boundConcatenation(x.utf8.count + y.utf8.count, loc)
            return .string(x + y)
        case "<", ">", "<=", ">=":
            let c: Int
            switch (a, b) {
            case (.string(let x), .string(let y)): c = x < y ? -1 : (x == y ? 0 : 1)
            default:
                guard let x = number(a), let y = number(b) else {
                    throw TemplateError("'\(op)' not supported between '\(a.typeName)' and '\(b.typeName)'", at: loc)
                }
                c = x < y ? -1 : (x == y ? 0 : 1)
            }
            switch op {
            case "<": return .bool(c < 0)
            case ">": return .bool(c > 0)
            case "<=": return .bool(c <= 0)
            default: return .bool(c >= 0)
            }
        case "+":
            switch (a, b) {
            case (.string(let x), .string(let y)):
                try boundConcatenation(x.utf8.count + y.utf8.count, loc)
                return .string(x + y)
            case (.list(let x), .list(let y)):
                guard x.count + y.count <= maxRepeatedItems else {
                    throw TemplateError("a list of \(x.count + y.count) items would exceed \(maxRepeatedItems) items (sandbox limit)", at: loc)
                }
                return .list(x + y)
            case (.int(let x), .int(let y)): return .int(try checked(x.addingReportingOverflow(y), op, loc))
            default: break
            }
        case "-", "*", "/", "//", "%", "**":
            if op == "*", case .string(let s) = a, case .int(let n) = b {
                guard n <= 0 || s.utf8.count <= maxRepeatedBytes / n else {
                    throw TemplateError("'\(s.prefix(20))' * \(n) would exceed \(maxRepeatedBytes >> 20) MiB (sandbox limit)", at: loc)
                }
                return .string(String(repeating: s, count: max(0, n)))
            }
            if op == "*", case .list(let l) = a, case .int(let n) = b {
                guard n <= 0 || l.count <= maxRepeatedItems / n else {
                    throw TemplateError("list * \(n) would exceed \(maxRepeatedItems) items (sandbox limit)", at: loc)
                }
                return .list(Array(repeating: l, count: max(0, n)).flatMap { $0 })
            }
            if case .int(let x) = a, case .int(let y) = b {
                switch op {
                case "-": return .int(try checked(x.subtractingReportingOverflow(y), op, loc))
                case "*": return .int(try checked(x.multipliedReportingOverflow(by: y), op, loc))
                case "//":
                    guard y != 0 else { throw TemplateError("integer division by zero", at: loc) }
                    // Floor division in integers (Python's), Int.min // -1 overflowing.
                    let (q, overflow) = x.dividedReportingOverflow(by: y)
                    guard !overflow else { throw TemplateError("integer overflow in //", at: loc) }
                    return .int((x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q)
                case "%":
                    guard y != 0 else { throw TemplateError("integer modulo by zero", at: loc) }
                    let (r, overflow) = x.remainderReportingOverflow(dividingBy: y)
                    guard !overflow else { return .int(0) }  // Int.min % -1
                    return .int(r != 0 && ((r < 0) != (y < 0)) ? r + y : r)
                case "**":
                    guard y >= 0 else { return .double(pow(Double(x), Double(y))) }
                    return .int(try power(x, y, loc))
                default: break
                }
            }
        default: break
        }
        if case .undefined(let why) = a { throw TemplateError("\(why) (used with '\(op)')", at: loc) }
        if case .undefined(let why) = b { throw TemplateError("\(why) (used with '\(op)')", at: loc) }
        guard let x = number(a), let y = number(b) else {
            throw TemplateError("unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'", at: loc)
        }
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/":
            guard y != 0 else { throw TemplateError("division by zero", at: loc) }
            return .double(x / y)
        case "//": return .double((x / y).rounded(.down))
        case "%": return .double(x - y * (x / y).rounded(.down))
        case "**": return .double(pow(x, y))
        default: throw TemplateError("unsupported operator \(op)", at: loc)
        }
    }

    static func number(_ v: Value) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
}

/// `is` tests.
enum Tests {
    static func apply(_ name: String, _ v: Value, _ args: [Value], at loc: Location) throws -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "string": if case .string = v { return true }; return false
        case "mapping": if case .dict = v { return true }; if case .namespace = v { return true }; return false
        case "iterable", "sequence":
            switch v { case .list, .string, .dict: return true; default: return false }
        case "number": switch v { case .int, .double: return true; default: return false }
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "callable": switch v { case .macro, .builtin: return true; default: return false }
        case "odd", "even":
            guard case .int(let n) = v else { throw TemplateError("test '\(name)' needs an integer", at: loc) }
            return name == "odd" ? n % 2 != 0 : n % 2 == 0
        case "divisibleby":
            guard case .int(let n) = v, case .int(let d)? = args.first, d != 0 else { throw TemplateError("test 'divisibleby' needs integers", at: loc) }
            return n % d == 0
        case "eq", "equalto", "==": return Value.equal(v, args.first ?? .none)
        case "ne", "!=": return !Value.equal(v, args.first ?? .none)
        case "lower": if case .string(let s) = v { return s == s.lowercased() }; return false
        case "upper": if case .string(let s) = v { return s == s.uppercased() }; return false
        case "in": return try Operators.apply("in", v, args.first ?? .list([]), at: loc).truthy
        default: throw TemplateError("unsupported test 'is \(name)'", at: loc)
        }
    }
}

/// Methods on str and dict (and list), as templates call them.
enum Methods {
    static let stringMethods: Set<String> = ["strip", "lstrip", "rstrip", "split", "startswith", "endswith", "lower", "upper",
                                             "replace", "title", "capitalize", "find", "count", "join", "format", "splitlines"]
    static let dictMethods: Set<String> = ["items", "get", "keys", "values"]

    static func exists(on v: Value, _ name: String) -> Bool {
        switch v {
        case .string: return stringMethods.contains(name)
        case .dict: return dictMethods.contains(name)
        default: return false
        }
    }

    static func stringArg(_ args: [Value], _ i: Int) -> String? {
        guard i < args.count, case .string(let s) = args[i] else { return nil }
        return s
    }

    static func strip(_ s: String, _ chars: String?, left: Bool, right: Bool) -> String {
        var sub = Substring(s)
        let isStrip: (Character) -> Bool = { c in chars.map { $0.contains(c) } ?? c.isWhitespace }
        if left { while let f = sub.first, isStrip(f) { sub.removeFirst() } }
        if right { while let l = sub.last, isStrip(l) { sub.removeLast() } }
        return String(sub)
    }

    static func call(_ v: Value, _ name: String, _ args: [Value], _ kwargs: [(String, Value)], at loc: Location) throws -> Value {
        switch v {
        case .string(let s):
            switch name {
            case "strip": return .string(strip(s, stringArg(args, 0), left: true, right: true))
            case "lstrip": return .string(strip(s, stringArg(args, 0), left: true, right: false))
            case "rstrip": return .string(strip(s, stringArg(args, 0), left: false, right: true))
            case "lower": return .string(s.lowercased())
            case "upper": return .string(s.uppercased())
            case "title": return .string(s.capitalized)
            case "capitalize": return .string(s.prefix(1).uppercased() + s.dropFirst().lowercased())
            case "startswith", "endswith":
                let candidates: [String]
                if case .list(let l)? = args.first { candidates = l.compactMap { if case .string(let x) = $0 { return x }; return nil } }
                else if let p = stringArg(args, 0) { candidates = [p] }
                else { throw TemplateError("\(name)() needs a string", at: loc) }
                return .bool(candidates.contains { name == "startswith" ? s.hasPrefix($0) : s.hasSuffix($0) })
            case "replace":
                guard let a = stringArg(args, 0), let b = stringArg(args, 1) else { throw TemplateError("replace() needs two strings", at: loc) }
                if case .int(let n)? = args.dropFirst(2).first, n >= 0 {
                    var out = s, count = 0
                    var searchStart = out.startIndex
                    while count < n, let r = out.range(of: a, range: searchStart..<out.endIndex), !a.isEmpty {
                        out.replaceSubrange(r, with: b)
                        searchStart = out.index(r.lowerBound, offsetBy: b.count)
                        count += 1
                    }
                    return .string(out)
                }
                return .string(a.isEmpty ? s : s.replacingOccurrences(of: a, with: b))
            case "split":
                let sep = stringArg(args, 0)
                var maxSplit = -1
                if case .int(let n)? = args.dropFirst().first { maxSplit = n }
                if let sep {
                    guard !sep.isEmpty else { throw TemplateError("split(): empty separator", at: loc) }
                    var parts: [String] = []
                    var rest = Substring(s)
                    while maxSplit != 0, let r = rest.range(of: sep) {
                        parts.append(String(rest[..<r.lowerBound]))
                        rest = rest[r.upperBound...]
                        maxSplit -= 1
                    }
                    parts.append(String(rest))
                    return .list(parts.map { .string($0) })
                }
                return .list(s.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) })
            case "splitlines":
                return .list(s.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }).map { .string(String($0)) }.dropLast(s.hasSuffix("\n") ? 1 : 0))
            case "find":
                guard let needle = stringArg(args, 0) else { throw TemplateError("find() needs a string", at: loc) }
                guard let r = s.range(of: needle) else { return .int(-1) }
                return .int(s.distance(from: s.startIndex, to: r.lowerBound))
            case "count":
                guard let needle = stringArg(args, 0), !needle.isEmpty else { throw TemplateError("count() needs a string", at: loc) }
                return .int(s.components(separatedBy: needle).count - 1)
            case "join":
                guard let first = args.first else { throw TemplateError("join() needs an iterable", at: loc) }
                let items: [Value]
                if case .list(let l) = first { items = l } else { throw TemplateError("join() needs a list", at: loc) }
                return .string(items.map(\.printed).joined(separator: s))
            default: break
            }
        case .dict(let d):
            switch name {
            case "items": return .list(d.map { .list([.string($0.0), $0.1]) })
            case "keys": return .list(d.map { .string($0.0) })
            case "values": return .list(d.map { $0.1 })
            case "get":
                guard let k = stringArg(args, 0) else { throw TemplateError("get() needs a string key", at: loc) }
                return d.first { $0.0 == k }?.1 ?? (args.count > 1 ? args[1] : .none)
            default: break
            }
        default: break
        }
        throw TemplateError("unsupported method '\(name)' on \(v.typeName)", at: loc)
    }
}

/// Python strings and lists built by `*` are bounded (jinja2's sandbox bounds ranges; a
/// template must not exhaust memory either way).
let maxRepeatedBytes = 64 << 20

/// Strings grown by concatenation (`~`, `+`; doubled in a loop they would exhaust memory long
/// before the iteration limit) are bounded like repetition.
func boundConcatenation(_ bytes: Int, _ loc: Location) throws {
    guard bytes <= maxRepeatedBytes else {
        throw TemplateError("a string of \(bytes) bytes would exceed \(maxRepeatedBytes >> 20) MiB (sandbox limit)", at: loc)
    }
}
let maxRepeatedItems = 1_000_000

/// Python integers are unbounded; a template needing more than 64 bits is refused, not wrapped.
func checked(_ r: (partialValue: Int, overflow: Bool), _ op: String, _ loc: Location) throws -> Int {
    guard !r.overflow else { throw TemplateError("integer overflow in '\(op)' (values beyond 64 bits are not supported)", at: loc) }
    return r.partialValue
}

/// x ** y for y ≥ 0 by squaring, every step checked.
func power(_ x: Int, _ y: Int, _ loc: Location) throws -> Int {
    var result = 1, base = x, e = y
    while e > 0 {
        if e & 1 == 1 { result = try checked(result.multipliedReportingOverflow(by: base), "**", loc) }
        e >>= 1
        if e > 0 { base = try checked(base.multipliedReportingOverflow(by: base), "**", loc) }
    }
    return result
}
