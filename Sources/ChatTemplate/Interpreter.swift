import Foundation

/// Renders a parsed template: Jinja2 semantics as transformers' sandboxed environment has them.
final class Interpreter {
    private var scopes: [[String: Value]]
    private var output = ""
    /// Sandbox limits (templates ship inside downloaded repositories): rendering stops with an
    /// error, naming the limit, instead of exhausting the stack, the memory or the time.
    enum Limits {
        /// Nested macro calls (a recursive macro stops here; Python's recursion limit would stop jinja2).
        static let macroDepth = 100
        /// Loop iterations over the whole rendering.
        static let iterations = 1_000_000
        /// Bytes of output (any captured block or macro output included).
        static let outputBytes = 64 << 20
    }
    private var macroDepth = 0
    private var iterations = 0

    private enum Control: Error { case breakLoop, continueLoop }

    init(globals: [String: Value]) { scopes = [globals] }

    func render(_ nodes: [Node]) throws -> String {
        try execute(nodes)
        return output
    }

    // MARK: Scopes

    private func lookup(_ name: String) -> Value {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined("'\(name)' is undefined")
    }

    private func assign(_ name: String, _ value: Value) { scopes[scopes.count - 1][name] = value }

    private func withScope<R>(_ vars: [String: Value], _ body: () throws -> R) rethrows -> R {
        scopes.append(vars)
        defer { scopes.removeLast() }
        return try body()
    }

    // MARK: Statements

    private func execute(_ nodes: [Node]) throws {
        for node in nodes { try execute(node) }
    }

    private func emit(_ text: String) throws {
        guard output.utf8.count + text.utf8.count <= Limits.outputBytes else {
            throw TemplateError("the rendered text would exceed \(Limits.outputBytes >> 20) MiB (sandbox limit)", at: Location(line: 0, column: 0))
        }
        output += text
    }

    private func execute(_ node: Node) throws {
        switch node {
        case .text(let t):
            try emit(t)
        case .output(let e):
            let v = try evaluate(e)
            try emit(v.printed)
        case .ifBlock(let branches, let otherwise):
            for (condition, body) in branches where try evaluate(condition).truthy {
                try execute(body)
                return
            }
            try execute(otherwise)
        case .forBlock(let targets, let iterableExpr, let filter, let body, let otherwise, let loc):
            var items = try iterate(try evaluate(iterableExpr), at: loc)
            if let filter {
                items = try items.filter { item in
                    try withScope(try bind(targets, item, at: loc)) { try evaluate(filter).truthy }
                }
            }
            if items.isEmpty { try execute(otherwise); return }
            for (index, item) in items.enumerated() {
                iterations += 1
                guard iterations <= Limits.iterations else {
                    throw TemplateError("more than \(Limits.iterations) loop iterations (sandbox limit)", at: loc)
                }
                var vars = try bind(targets, item, at: loc)
                vars["loop"] = .dict([
                    ("index", .int(index + 1)), ("index0", .int(index)), ("first", .bool(index == 0)),
                    ("last", .bool(index == items.count - 1)), ("length", .int(items.count)),
                    ("revindex", .int(items.count - index)), ("revindex0", .int(items.count - index - 1)),
                    ("previtem", index > 0 ? items[index - 1] : .undefined("loop.previtem")),
                    ("nextitem", index + 1 < items.count ? items[index + 1] : .undefined("loop.nextitem")),
                ])
                do {
                    try withScope(vars) { try execute(body) }
                } catch Control.breakLoop {
                    break
                } catch Control.continueLoop {
                    continue
                }
            }
        case .set(let target, let e, let loc):
            let v = try evaluate(e)
            switch target {
            case .name(let n): assign(n, v)
            case .names(let names):
                let items = try iterate(v, at: loc)
                guard items.count == names.count else { throw TemplateError("cannot unpack \(items.count) values into \(names.count) names", at: loc) }
                for (n, item) in zip(names, items) { assign(n, item) }
            case .attribute(let obj, let attr):
                guard case .namespace(let ns) = lookup(obj) else {
                    throw TemplateError("cannot set attribute '\(attr)' on '\(obj)': only namespace() objects take attributes", at: loc)
                }
                ns.attributes[attr] = v
            }
        case .setBlock(let name, let body):
            let saved = output
            output = ""
            try execute(body)
            let captured = output
            output = saved
            assign(name, .string(captured))
        case .macro(let m):
            assign(m.name, .macro(m))
        case .breakLoop:
            throw Control.breakLoop
        case .continueLoop:
            throw Control.continueLoop
        case .generation(let body):
            try execute(body)
        }
    }

    private func bind(_ targets: [String], _ item: Value, at loc: Location) throws -> [String: Value] {
        if targets.count == 1 { return [targets[0]: item] }
        let parts = try iterate(item, at: loc)
        guard parts.count == targets.count else {
            throw TemplateError("cannot unpack \(parts.count) values into \(targets.count) loop variables", at: loc)
        }
        return Dictionary(uniqueKeysWithValues: zip(targets, parts))
    }

    /// Python iteration: lists, dict keys, string characters.
    func iterate(_ v: Value, at loc: Location) throws -> [Value] {
        switch v {
        case .list(let l): return l
        case .dict(let d): return d.map { .string($0.0) }
        case .string(let s): return s.map { .string(String($0)) }
        case .undefined: return []
        default: throw TemplateError("'\(v.typeName)' object is not iterable", at: loc)
        }
    }

    // MARK: Expressions

    func evaluate(_ e: Expr) throws -> Value {
        switch e {
        case .literal(let v, _): return v
        case .name(let n, _): return lookup(n)
        case .attribute(let obj, let name, let loc):
            let o = try evaluate(obj)
            if case .undefined(let why) = o { throw TemplateError("\(why); cannot read attribute '\(name)'", at: loc) }
            if let v = o.lookup(name) { return v }
            if Methods.exists(on: o, name) { return .builtin(Builtin(name: name) { args, kwargs in try Methods.call(o, name, args, kwargs, at: loc) }) }
            return .undefined("'\(o.typeName) object' has no attribute '\(name)'")
        case .item(let obj, let keyExpr, let loc):
            let o = try evaluate(obj)
            let key = try evaluate(keyExpr)
            if case .undefined(let why) = o { throw TemplateError("\(why); cannot subscript it", at: loc) }
            return try subscriptValue(o, key, at: loc)
        case .slice(let obj, let a, let b, let c, let loc):
            let o = try evaluate(obj)
            func int(_ x: Expr?) throws -> Int? {
                guard let x else { return nil }
                guard case .int(let n) = try evaluate(x) else { throw TemplateError("slice indices must be integers", at: loc) }
                return n
            }
            return try Value.slice(o, try int(a), try int(b), try int(c), at: loc)
        case .call(let callee, let argExprs, let kwargExprs, let loc):
            let f = try evaluate(callee)
            let args = try argExprs.map(evaluate)
            let kwargs = try kwargExprs.map { ($0.0, try evaluate($0.1)) }
            switch f {
            case .builtin(let b): return try b.call(args, kwargs)
            case .macro(let m): return try callMacro(m, args, kwargs, at: loc)
            case .undefined(let why): throw TemplateError("\(why); it cannot be called", at: loc)
            default: throw TemplateError("'\(f.typeName)' object is not callable", at: loc)
            }
        case .filter(let input, let name, let argExprs, let kwargExprs, let loc):
            let v = try evaluate(input)
            let args = try argExprs.map(evaluate)
            let kwargs = try kwargExprs.map { ($0.0, try evaluate($0.1)) }
            return try Filters.apply(name, v, args, kwargs, at: loc, interpreter: self)
        case .test(let input, let name, let argExprs, let negated, let loc):
            let v = try evaluate(input)
            let args = try argExprs.map(evaluate)
            let r = try Tests.apply(name, v, args, at: loc)
            return .bool(negated ? !r : r)
        case .unary(let op, let operand, let loc):
            let v = try evaluate(operand)
            switch op {
            case "not": return .bool(!v.truthy)
            case "-":
                switch v {
                case .int(let n): return .int(try checked((0).subtractingReportingOverflow(n), "-", loc))
                case .double(let d): return .double(-d)
                default: throw TemplateError("bad operand type for unary -: '\(v.typeName)'", at: loc)
                }
            default: return v
            }
        case .binary(let op, let l, let r, let loc):
            if op == "and" {
                let a = try evaluate(l)
                return a.truthy ? try evaluate(r) : a
            }
            if op == "or" {
                let a = try evaluate(l)
                return a.truthy ? a : try evaluate(r)
            }
            return try Operators.apply(op, try evaluate(l), try evaluate(r), at: loc)
        case .conditional(let then, let condition, let otherwise, _):
            if try evaluate(condition).truthy { return try evaluate(then) }
            return try otherwise.map(evaluate) ?? .undefined("conditional without else")
        case .list(let items, _), .tuple(let items, _):
            return .list(try items.map(evaluate))
        case .dict(let pairs, let loc):
            var d: [(String, Value)] = []
            for (k, v) in pairs {
                guard case .string(let key) = try evaluate(k) else { throw TemplateError("dict keys must be strings", at: loc) }
                let value = try evaluate(v)
                if let idx = d.firstIndex(where: { $0.0 == key }) { d[idx].1 = value } else { d.append((key, value)) }
            }
            return .dict(d)
        }
    }

    func subscriptValue(_ o: Value, _ key: Value, at loc: Location) throws -> Value {
        switch (o, key) {
        case (.dict, .string(let k)), (.namespace, .string(let k)):
            return o.lookup(k) ?? .undefined("'dict object' has no attribute '\(k)'")
        case (.list(let l), .int(let n)):
            let idx = n < 0 ? l.count + n : n
            guard idx >= 0 && idx < l.count else { return .undefined("list index \(n) out of range") }
            return l[idx]
        case (.string(let s), .int(let n)):
            let chars = Array(s)
            let idx = n < 0 ? chars.count + n : n
            guard idx >= 0 && idx < chars.count else { return .undefined("string index \(n) out of range") }
            return .string(String(chars[idx]))
        case (_, .string(let k)):
            if Methods.exists(on: o, k) { return .builtin(Builtin(name: k) { args, kwargs in try Methods.call(o, k, args, kwargs, at: loc) }) }
            return .undefined("'\(o.typeName) object' has no attribute '\(k)'")
        default:
            return .undefined("'\(o.typeName) object' has no item \(key.repr)")
        }
    }

    func callMacro(_ m: Macro, _ args: [Value], _ kwargs: [(String, Value)], at loc: Location) throws -> Value {
        var vars: [String: Value] = [:]
        guard args.count <= m.parameters.count else {
            throw TemplateError("macro '\(m.name)' takes \(m.parameters.count) arguments, got \(args.count)", at: loc)
        }
        for (i, (name, def)) in m.parameters.enumerated() {
            if i < args.count { vars[name] = args[i] } else if let kw = kwargs.first(where: { $0.0 == name }) { vars[name] = kw.1 } else if let def {
                vars[name] = try evaluate(def)
            } else { vars[name] = .undefined("macro argument '\(name)' missing") }
        }
        macroDepth += 1
        defer { macroDepth -= 1 }
        guard macroDepth <= Limits.macroDepth else {
            throw TemplateError("macro '\(m.name)' calls nested deeper than \(Limits.macroDepth) (recursion; sandbox limit)", at: loc)
        }
        let saved = output
        output = ""
        try withScope(vars) { try execute(m.body) }
        let result = output
        output = saved
        return .string(result)
    }
}

extension Value {
    static func slice(_ o: Value, _ a: Int?, _ b: Int?, _ c: Int?, at loc: Location) throws -> Value {
        let step = c ?? 1
        guard step != 0 else { throw TemplateError("slice step cannot be zero", at: loc) }
        func indices(_ n: Int) -> [Int] {
            func clamp(_ x: Int?, _ def: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x += n }
                return step > 0 ? min(max(x, 0), n) : min(max(x, -1), n - 1)
            }
            let start = clamp(a, step > 0 ? 0 : n - 1)
            let stop = clamp(b, step > 0 ? n : -1)
            return Array(stride(from: start, to: stop, by: step))
        }
        switch o {
        case .list(let l): return .list(indices(l.count).map { l[$0] })
        case .string(let s):
            let chars = Array(s)
            return .string(String(indices(chars.count).map { chars[$0] }))
        default: throw TemplateError("'\(o.typeName)' object is not subscriptable", at: loc)
        }
    }
}
