/// Pieces → a tree of nodes. Unknown statements and syntax are errors naming the line and column.
struct Parser {
    private let pieces: [Piece]
    private var index = 0
    /// Open blocks ({% if %}, {% for %}, {% macro %}, …): bounded, the parser recurses per block.
    private var depth = 0
    static let maxDepth = 100

    init(_ pieces: [Piece]) { self.pieces = pieces }

    static func parse(_ pieces: [Piece]) throws -> [Node] {
        var p = Parser(pieces)
        let (nodes, end) = try p.parseBlock(until: [])
        if let end { throw TemplateError("unexpected {% \(end.keyword) %}", at: end.location) }
        return nodes
    }

    /// A statement that closed a block: its keyword, its tokens after the keyword, where it was.
    struct EndTag {
        let keyword: String
        let tokens: [(Token, Location)]
        let location: Location
    }

    mutating func parseBlock(until keywords: Set<String>) throws -> ([Node], EndTag?) {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth + 1 else {
            throw TemplateError("blocks nested deeper than \(Self.maxDepth) levels (sandbox limit)", at: index < pieces.count ? pieces[index].location : Location(line: 1, column: 1))
        }
        var nodes: [Node] = []
        while index < pieces.count {
            let piece = pieces[index]
            index += 1
            switch piece.kind {
            case .text:
                nodes.append(.text(piece.content))
            case .output:
                var e = ExpressionParser(try ExpressionLexer.tokens(piece.content, at: piece.location))
                let expr = try e.parseExpression()
                try e.expectEnd()
                nodes.append(.output(expr))
            case .statement:
                let tokens = try ExpressionLexer.tokens(piece.content, at: piece.location)
                guard case .name(let keyword) = tokens[0].0 else {
                    throw TemplateError("expected a statement keyword", at: tokens[0].1)
                }
                if keywords.contains(keyword) {
                    return (nodes, EndTag(keyword: keyword, tokens: Array(tokens.dropFirst()), location: tokens[0].1))
                }
                nodes.append(try parseStatement(keyword, Array(tokens.dropFirst()), at: tokens[0].1))
            }
        }
        if !keywords.isEmpty {
            let loc = pieces.last?.location ?? Location(line: 1, column: 1)
            throw TemplateError("missing {% \(keywords.sorted().joined(separator: " or ")) %}", at: loc)
        }
        return (nodes, nil)
    }

    mutating func parseStatement(_ keyword: String, _ tokens: [(Token, Location)], at loc: Location) throws -> Node {
        var e = ExpressionParser(tokens)
        switch keyword {
        case "if":
            var branches: [(Expr, [Node])] = []
            var condition = try e.parseExpression()
            try e.expectEnd()
            while true {
                let (body, end) = try parseBlock(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                guard let end else { throw TemplateError("missing {% endif %}", at: loc) }
                switch end.keyword {
                case "elif":
                    var c = ExpressionParser(end.tokens)
                    condition = try c.parseExpression()
                    try c.expectEnd()
                case "else":
                    let (otherwise, close) = try parseBlock(until: ["endif"])
                    guard close != nil else { throw TemplateError("missing {% endif %}", at: loc) }
                    return .ifBlock(branches, otherwise: otherwise)
                default:
                    return .ifBlock(branches, otherwise: [])
                }
            }
        case "for":
            var targets = [try e.parseName()]
            while e.accept(.op(",")) { targets.append(try e.parseName()) }
            try e.expectKeyword("in")
            let iterable = try e.parseExpression(allowConditional: false)
            var filter: Expr? = nil
            if e.acceptKeyword("if") { filter = try e.parseExpression() }
            if e.acceptKeyword("recursive") { throw TemplateError("unsupported: recursive for loops", at: loc) }
            try e.expectEnd()
            let (body, end) = try parseBlock(until: ["else", "endfor"])
            var otherwise: [Node] = []
            if end?.keyword == "else" {
                let (o, close) = try parseBlock(until: ["endfor"])
                guard close != nil else { throw TemplateError("missing {% endfor %}", at: loc) }
                otherwise = o
            } else if end == nil {
                throw TemplateError("missing {% endfor %}", at: loc)
            }
            return .forBlock(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, loc)
        case "set":
            let first = try e.parseName()
            var target: SetTarget = .name(first)
            if e.accept(.op(".")) {
                target = .attribute(first, try e.parseName())
            } else if e.peek == .op(",") {
                var names = [first]
                while e.accept(.op(",")) { names.append(try e.parseName()) }
                target = .names(names)
            }
            if e.atEnd {
                guard case .name(let name) = target else { throw TemplateError("block set needs a plain name", at: loc) }
                let (body, end) = try parseBlock(until: ["endset"])
                guard end != nil else { throw TemplateError("missing {% endset %}", at: loc) }
                return .setBlock(name, body)
            }
            try e.expect(.op("="))
            let value = try e.parseTupleOrExpression()
            try e.expectEnd()
            return .set(target, value, loc)
        case "macro":
            let name = try e.parseName()
            try e.expect(.op("("))
            var params: [(String, Expr?)] = []
            if !e.accept(.op(")")) {
                repeat {
                    let p = try e.parseName()
                    params.append((p, e.accept(.op("=")) ? try e.parseExpression() : nil))
                } while e.accept(.op(","))
                try e.expect(.op(")"))
            }
            try e.expectEnd()
            let (body, end) = try parseBlock(until: ["endmacro"])
            guard end != nil else { throw TemplateError("missing {% endmacro %}", at: loc) }
            return .macro(Macro(name: name, parameters: params, body: body))
        case "break":
            try e.expectEnd()
            return .breakLoop(loc)
        case "continue":
            try e.expectEnd()
            return .continueLoop(loc)
        case "generation":
            try e.expectEnd()
            let (body, end) = try parseBlock(until: ["endgeneration"])
            guard end != nil else { throw TemplateError("missing {% endgeneration %}", at: loc) }
            return .generation(body)
        default:
            throw TemplateError("unsupported statement {% \(keyword) %}", at: loc)
        }
    }
}

/// Recursive descent over one tag's tokens, with Jinja's precedence:
/// conditional < or < and < not < comparison/in/is < ~ < + - < * / // % < unary - < ** < filters and postfix.
struct ExpressionParser {
    private let tokens: [(Token, Location)]
    private var i = 0
    /// Nested sub-expressions (parentheses, `not`, unary signs): bounded, the parser recurses.
    private var depth = 0
    static let maxDepth = 100

    private mutating func enter() throws {
        depth += 1
        guard depth <= Self.maxDepth else {
            throw TemplateError("expression nested deeper than \(Self.maxDepth) levels (sandbox limit)", at: location)
        }
    }

    init(_ tokens: [(Token, Location)]) { self.tokens = tokens }

    var peek: Token { tokens[i].0 }
    var location: Location { tokens[i].1 }
    var atEnd: Bool { peek == .end }

    mutating func accept(_ t: Token) -> Bool {
        if peek == t { i += 1; return true }
        return false
    }

    mutating func acceptKeyword(_ k: String) -> Bool { accept(.name(k)) }

    mutating func expect(_ t: Token) throws {
        guard accept(t) else { throw TemplateError("expected \(describe(t)), found \(describe(peek))", at: location) }
    }

    mutating func expectKeyword(_ k: String) throws { try expect(.name(k)) }

    func expectEnd() throws {
        guard atEnd else { throw TemplateError("unexpected \(describe(peek))", at: location) }
    }

    func describe(_ t: Token) -> String {
        switch t {
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string \(s.debugDescription)"
        case .int(let n): return "\(n)"
        case .double(let d): return "\(d)"
        case .op(let o): return "'\(o)'"
        case .end: return "end of tag"
        }
    }

    mutating func parseName() throws -> String {
        guard case .name(let n) = peek else { throw TemplateError("expected a name, found \(describe(peek))", at: location) }
        i += 1
        return n
    }

    /// `a, b` in `{% set x = a, b %}` is a tuple.
    mutating func parseTupleOrExpression() throws -> Expr {
        let loc = location
        let first = try parseExpression()
        guard peek == .op(",") else { return first }
        var items = [first]
        while accept(.op(",")) { if atEnd { break }; items.append(try parseExpression()) }
        return .tuple(items, loc)
    }

    mutating func parseExpression(allowConditional: Bool = true) throws -> Expr {
        try enter()
        defer { depth -= 1 }
        let loc = location
        let value = try parseOr()
        guard allowConditional, acceptKeyword("if") else { return value }
        let condition = try parseOr()
        let otherwise = acceptKeyword("else") ? try parseExpression() : nil
        return .conditional(then: value, condition: condition, otherwise: otherwise, loc)
    }

    mutating func parseOr() throws -> Expr {
        var left = try parseAnd()
        while case .name("or") = peek {
            let loc = location; i += 1
            left = .binary("or", left, try parseAnd(), loc)
        }
        return left
    }

    mutating func parseAnd() throws -> Expr {
        var left = try parseNot()
        while case .name("and") = peek {
            let loc = location; i += 1
            left = .binary("and", left, try parseNot(), loc)
        }
        return left
    }

    mutating func parseNot() throws -> Expr {
        try enter()
        defer { depth -= 1 }
        if case .name("not") = peek {
            let loc = location; i += 1
            return .unary("not", try parseNot(), loc)
        }
        return try parseComparison()
    }

    mutating func parseComparison() throws -> Expr {
        var left = try parseConcat()
        while true {
            let loc = location
            if case .op(let o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                i += 1
                left = .binary(o, left, try parseConcat(), loc)
            } else if acceptKeyword("in") {
                left = .binary("in", left, try parseConcat(), loc)
            } else if case .name("not") = peek, i + 1 < tokens.count, tokens[i + 1].0 == .name("in") {
                i += 2
                left = .binary("not in", left, try parseConcat(), loc)
            } else if acceptKeyword("is") {
                let negated = acceptKeyword("not")
                let name = try parseName()
                var args: [Expr] = []
                if accept(.op("(")) {
                    if !accept(.op(")")) {
                        repeat { args.append(try parseExpression()) } while accept(.op(","))
                        try expect(.op(")"))
                    }
                } else if case .name(let n) = peek, !["and", "or", "else", "if", "in", "is", "not"].contains(n) {
                    args.append(try parseConcat())
                } else if case .string = peek { args.append(try parseConcat()) }
                else if case .int = peek { args.append(try parseConcat()) }
                left = .test(left, name, args, negated: negated, loc)
            } else {
                return left
            }
        }
    }

    mutating func parseConcat() throws -> Expr {
        var left = try parseAdditive()
        while peek == .op("~") {
            let loc = location; i += 1
            left = .binary("~", left, try parseAdditive(), loc)
        }
        return left
    }

    mutating func parseAdditive() throws -> Expr {
        var left = try parseMultiplicative()
        while case .op(let o) = peek, o == "+" || o == "-" {
            let loc = location; i += 1
            left = .binary(o, left, try parseMultiplicative(), loc)
        }
        return left
    }

    mutating func parseMultiplicative() throws -> Expr {
        var left = try parseUnary()
        while case .op(let o) = peek, ["*", "/", "//", "%"].contains(o) {
            let loc = location; i += 1
            left = .binary(o, left, try parseUnary(), loc)
        }
        return left
    }

    mutating func parseUnary() throws -> Expr {
        try enter()
        defer { depth -= 1 }
        if case .op(let o) = peek, o == "-" || o == "+" {
            let loc = location; i += 1
            return .unary(o, try parseUnary(), loc)
        }
        return try parsePower()
    }

    mutating func parsePower() throws -> Expr {
        let base = try parsePostfix()
        if peek == .op("**") {
            let loc = location; i += 1
            return .binary("**", base, try parseUnary(), loc)
        }
        return base
    }

    mutating func parseArguments() throws -> ([Expr], [(String, Expr)]) {
        var args: [Expr] = [], kwargs: [(String, Expr)] = []
        if accept(.op(")")) { return (args, kwargs) }
        repeat {
            if case .name(let n) = peek, i + 1 < tokens.count, tokens[i + 1].0 == .op("=") {
                i += 2
                kwargs.append((n, try parseExpression()))
            } else {
                args.append(try parseExpression())
            }
        } while accept(.op(","))
        try expect(.op(")"))
        return (args, kwargs)
    }

    mutating func parsePostfix() throws -> Expr {
        var e = try parsePrimary()
        while true {
            let loc = location
            if accept(.op(".")) {
                e = .attribute(e, try parseName(), loc)
            } else if accept(.op("[")) {
                var parts: [Expr?] = [nil]
                var isSlice = false
                while peek != .op("]") {
                    if accept(.op(":")) { isSlice = true; parts.append(nil); continue }
                    parts[parts.count - 1] = try parseExpression()
                }
                try expect(.op("]"))
                if isSlice {
                    while parts.count < 3 { parts.append(nil) }
                    e = .slice(e, parts[0], parts[1], parts[2], loc)
                } else {
                    guard let key = parts[0] else { throw TemplateError("empty subscript", at: loc) }
                    e = .item(e, key, loc)
                }
            } else if accept(.op("(")) {
                let (args, kwargs) = try parseArguments()
                e = .call(e, args, kwargs, loc)
            } else if accept(.op("|")) {
                let name = try parseName()
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if accept(.op("(")) { (args, kwargs) = try parseArguments() }
                e = .filter(e, name, args, kwargs, loc)
            } else {
                return e
            }
        }
    }

    mutating func parsePrimary() throws -> Expr {
        let loc = location
        switch peek {
        case .string(var s):
            i += 1
            while case .string(let more) = peek { s += more; i += 1 }  // adjacent literals concatenate
            return .literal(.string(s), loc)
        case .int(let n): i += 1; return .literal(.int(n), loc)
        case .double(let d): i += 1; return .literal(.double(d), loc)
        case .name(let n):
            i += 1
            switch n {
            case "true", "True": return .literal(.bool(true), loc)
            case "false", "False": return .literal(.bool(false), loc)
            case "none", "None": return .literal(.none, loc)
            default: return .name(n, loc)
            }
        case .op("("):
            i += 1
            if accept(.op(")")) { return .tuple([], loc) }
            let first = try parseExpression()
            if accept(.op(")")) { return first }
            var items = [first]
            while accept(.op(",")) {
                if peek == .op(")") { break }
                items.append(try parseExpression())
            }
            try expect(.op(")"))
            return .tuple(items, loc)
        case .op("["):
            i += 1
            var items: [Expr] = []
            if !accept(.op("]")) {
                repeat {
                    if peek == .op("]") { break }
                    items.append(try parseExpression())
                } while accept(.op(","))
                try expect(.op("]"))
            }
            return .list(items, loc)
        case .op("{"):
            i += 1
            var pairs: [(Expr, Expr)] = []
            if !accept(.op("}")) {
                repeat {
                    if peek == .op("}") { break }
                    let k = try parseExpression()
                    try expect(.op(":"))
                    pairs.append((k, try parseExpression()))
                } while accept(.op(","))
                try expect(.op("}"))
            }
            return .dict(pairs, loc)
        default:
            throw TemplateError("unexpected \(describe(peek))", at: loc)
        }
    }
}
