/// A backtracking regex engine over Unicode scalars for the Oniguruma patterns tokenizer.json
/// files carry (GPT-2, Llama 3, Qwen, DeepSeek splits). Leftmost-first semantics as Oniguruma:
/// alternatives and greedy/lazy/possessive quantifiers are tried in priority order.
///
/// Supported: literals and escapes (\n \r \t \f \v \0 \xHH \x{H…} \uHHHH, escaped punctuation),
/// `.`, classes `[...]` with ranges, negation and nested escapes, \s \S \d \D \w \W \h \H,
/// \p{…} / \P{…} general categories, groups `(…)` `(?:…)` `(?i:…)` `(?i)`, lookahead `(?=…)`
/// `(?!…)`, quantifiers `* + ? {n} {n,} {n,m}` with lazy `?` and possessive `+`, anchors
/// `^ $ \A \z \Z \b \B`. Anything else is an error naming it and its position.
struct ScalarRegex: Sendable {
    struct ParseError: Error, CustomStringConvertible {
        let message: String
        let offset: Int
        var description: String { "\(message) at pattern offset \(offset)" }
    }

    fileprivate enum Inst: Sendable {
        case set(Int)
        case split(Int, Int)
        case jmp(Int)
        case match
        case lineStart, lineEnd, stringStart, stringEnd, stringEndOrFinalNewline
        case wordBoundary(Bool)
        case look(Int, negate: Bool)
        case atomic(Int)
    }

    fileprivate let programs: [[Inst]]
    fileprivate let sets: [ScalarSet]
    /// Scalars a match can start with, when the pattern cannot match empty or at an anchor:
    /// other start positions are skipped without running the program.
    private let firstSet: ScalarSet?

    init(_ pattern: String) throws {
        var p = RegexParser(Array(pattern.unicodeScalars))
        let ast = try p.parseAlternation(caseInsensitive: false)
        guard p.atEnd else { throw ParseError(message: "unbalanced ')'", offset: p.pos) }
        var c = RegexCompiler()
        let main = c.compile(ast)
        guard !c.tooLarge else {
            throw ParseError(message: "the pattern expands to more than \(RegexCompiler.maxInstructions) instructions (counted repetitions nest too deep)", offset: 0)
        }
        programs = [main] + c.subprograms
        sets = c.sets
        if let (items, nullable) = ScalarRegex.first(ast), !nullable {
            firstSet = ScalarSet(items: items, negated: false, caseInsensitive: false)
        } else {
            firstSet = nil
        }
    }

    /// (items any match starts with, whether the node can match empty); nil when unknown
    /// (anchors, lookaround: zero-width constructs whose effect is not a set of scalars).
    private static func first(_ node: RegexNode) -> ([ScalarSet.Item], Bool)? {
        switch node {
        case .set(let items, let negated, let ci, _):
            let set = ScalarSet(items: items, negated: negated, caseInsensitive: ci)
            return ([.predicate({ set.contains($0) }, negated: false)], false)
        case .sequence(let parts):
            var items: [ScalarSet.Item] = []
            for part in parts {
                guard let (f, nullable) = first(part) else { return nil }
                items += f
                if !nullable { return (items, false) }
            }
            return (items, true)
        case .alternation(let branches):
            var items: [ScalarSet.Item] = []
            var nullable = false
            for b in branches {
                guard let (f, n) = first(b) else { return nil }
                items += f
                nullable = nullable || n
            }
            return (items, nullable)
        case .repetition(let inner, let min, _, _):
            guard let (f, n) = first(inner) else { return nil }
            return (f, n || min == 0)
        case .atomic(let inner):
            return first(inner)
        case .anchor, .look:
            return nil
        }
    }

    /// Non-overlapping leftmost matches.
    func matches(_ s: [UInt32]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var stack: [(Int, Int)] = []
        stack.reserveCapacity(64)
        var i = 0
        while i <= s.count {
            if let f = firstSet, i == s.count || !f.contains(s[i]) { i += 1; continue }
            if let e = run(0, s, i, &stack) {
                if e > i { out.append(i..<e); i = e } else { i += 1 }
            } else {
                i += 1
            }
        }
        return out
    }

    /// Backtracking steps from one start position after which states are remembered.
    static let memoAfter = 4096

    /// Runs a program from `start` with a caller-owned backtracking stack (reused across calls).
    private func run(_ program: Int, _ s: [UInt32], _ start: Int, _ stack: inout [(Int, Int)]) -> Int? {
        let prog = programs[program]
        let base = stack.count
        defer { stack.removeSubrange(base...) }
        stack.append((0, start))
        var steps = 0
        // Past a few thousand steps (nested quantifiers backtracking, e.g. (a+)+$), every
        // (instruction, position) is explored at most once: a state seen again either failed
        // already or is a zero-progress cycle, so the search is bounded by program × text.
        var seen: Set<Int>? = nil
        let width = prog.count
        /// Counts a step (a pop or a split); false once the budget is spent.
        func step() -> Bool {
            steps += 1
            if steps >= Self.memoAfter, seen == nil { seen = Set() }
            return steps <= 10_000_000
        }
        while stack.count > base {
            let (pc0, pos0) = stack.removeLast()
            guard step() else { return nil }
            var pc = pc0, pos = pos0
            thread: while true {
                if seen != nil, !seen!.insert(pos &* width &+ pc).inserted { break thread }
                switch prog[pc] {
                case .set(let i):
                    guard pos < s.count, sets[i].contains(s[pos]) else { break thread }
                    pc += 1
                    pos += 1
                case .split(let a, let b):
                    // Splits count as steps too: a loop over an empty match (`$+`) splits
                    // forever without popping; the memo then sees the state again and stops it.
                    guard step() else { return nil }
                    stack.append((b, pos))
                    pc = a
                case .jmp(let a):
                    pc = a
                case .match:
                    return pos
                case .lineStart:
                    guard pos == 0 || s[pos - 1] == 0x0A else { break thread }
                    pc += 1
                case .lineEnd:
                    guard pos == s.count || s[pos] == 0x0A else { break thread }
                    pc += 1
                case .stringStart:
                    guard pos == 0 else { break thread }
                    pc += 1
                case .stringEnd:
                    guard pos == s.count else { break thread }
                    pc += 1
                case .stringEndOrFinalNewline:
                    guard pos == s.count || (pos == s.count - 1 && s[pos] == 0x0A) else { break thread }
                    pc += 1
                case .wordBoundary(let want):
                    let before = pos > 0 && ScalarSet.isWord(s[pos - 1])
                    let after = pos < s.count && ScalarSet.isWord(s[pos])
                    guard (before != after) == want else { break thread }
                    pc += 1
                case .look(let sub, let negate):
                    guard (run(sub, s, pos, &stack) != nil) != negate else { break thread }
                    pc += 1
                case .atomic(let sub):
                    guard let e = run(sub, s, pos, &stack) else { break thread }
                    pos = e
                    pc += 1
                }
            }
        }
        return nil
    }
}

/// A set of scalars: a bitmap over the BMP, computed once, and a predicate for the rest.
final class ScalarSet: @unchecked Sendable {
    enum Item {
        case range(UInt32, UInt32)
        case predicate((UInt32) -> Bool, negated: Bool)
    }

    private var bmp = [UInt64](repeating: 0, count: 1024)
    private let items: [Item]
    private let negated: Bool

    init(items: [Item], negated: Bool, caseInsensitive: Bool) {
        var all = items
        if caseInsensitive {
            // Simple case folding: add the other case of every cased scalar in the ranges.
            var extra: [Item] = []
            for case .range(let lo, let hi) in items where hi - lo < 5000 {
                for v in lo...hi {
                    guard let u = Unicode.Scalar(v) else { continue }
                    for other in [u.properties.lowercaseMapping, u.properties.uppercaseMapping] {
                        let sc = Array(other.unicodeScalars)
                        if sc.count == 1 { extra.append(.range(sc[0].value, sc[0].value)) }
                    }
                }
            }
            all += extra
        }
        self.items = all
        self.negated = negated
        for v in 0..<UInt32(65536) where slowContains(v) { bmp[Int(v >> 6)] |= 1 << UInt64(v & 63) }
    }

    private func slowContains(_ v: UInt32) -> Bool {
        var hit = false
        for item in items {
            switch item {
            case .range(let lo, let hi): if v >= lo && v <= hi { hit = true }
            case .predicate(let f, let neg): if f(v) != neg { hit = true }
            }
            if hit { break }
        }
        return hit != negated
    }

    @inline(__always)
    func contains(_ v: UInt32) -> Bool {
        if v < 65536 { return bmp[Int(v >> 6)] & (1 << UInt64(v & 63)) != 0 }
        return slowContains(v)
    }

    static func category(_ v: UInt32) -> Unicode.GeneralCategory? { Unicode.Scalar(v)?.properties.generalCategory }

    static func isSpace(_ v: UInt32) -> Bool { Unicode.Scalar(v)?.properties.isWhitespace ?? false }

    static func isDigit(_ v: UInt32) -> Bool { category(v) == .decimalNumber }

    static func isWord(_ v: UInt32) -> Bool {
        guard let c = category(v) else { return false }
        switch c {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
            .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation:
            return true
        default: return false
        }
    }

    static func isHexDigit(_ v: UInt32) -> Bool {
        (0x30...0x39).contains(v) || (0x41...0x46).contains(v) || (0x61...0x66).contains(v)
    }

    /// \p{…} by general category (one- or two-letter names, long names, and a few aliases).
    static func property(_ name: String) -> ((UInt32) -> Bool)? {
        let n = name.replacingOccurrences(of: "_", with: "").replacingOccurrences(of: " ", with: "").lowercased()
        func cats(_ list: [Unicode.GeneralCategory]) -> (UInt32) -> Bool {
            let set = Set(list.map { "\($0)" })
            return { v in category(v).map { set.contains("\($0)") } ?? false }
        }
        switch n {
        case "l", "letter": return cats([.uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter])
        case "lu", "uppercaseletter": return cats([.uppercaseLetter])
        case "ll", "lowercaseletter": return cats([.lowercaseLetter])
        case "lt", "titlecaseletter": return cats([.titlecaseLetter])
        case "lm", "modifierletter": return cats([.modifierLetter])
        case "lo", "otherletter": return cats([.otherLetter])
        case "m", "mark", "combiningmark": return cats([.nonspacingMark, .spacingMark, .enclosingMark])
        case "mn": return cats([.nonspacingMark])
        case "mc": return cats([.spacingMark])
        case "me": return cats([.enclosingMark])
        case "n", "number": return cats([.decimalNumber, .letterNumber, .otherNumber])
        case "nd", "decimalnumber", "digit": return cats([.decimalNumber])
        case "nl": return cats([.letterNumber])
        case "no": return cats([.otherNumber])
        case "p", "punctuation", "punct":
            return cats([.connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation, .finalPunctuation, .otherPunctuation])
        case "pc": return cats([.connectorPunctuation])
        case "pd": return cats([.dashPunctuation])
        case "ps": return cats([.openPunctuation])
        case "pe": return cats([.closePunctuation])
        case "pi": return cats([.initialPunctuation])
        case "pf": return cats([.finalPunctuation])
        case "po": return cats([.otherPunctuation])
        case "s", "symbol": return cats([.mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol])
        case "sm": return cats([.mathSymbol])
        case "sc": return cats([.currencySymbol])
        case "sk": return cats([.modifierSymbol])
        case "so": return cats([.otherSymbol])
        case "z", "separator": return cats([.spaceSeparator, .lineSeparator, .paragraphSeparator])
        case "zs": return cats([.spaceSeparator])
        case "zl": return cats([.lineSeparator])
        case "zp": return cats([.paragraphSeparator])
        case "c", "other": return cats([.control, .format, .surrogate, .privateUse, .unassigned])
        case "cc", "control", "cntrl": return cats([.control])
        case "cf", "format": return cats([.format])
        case "co": return cats([.privateUse])
        case "cn", "unassigned": return cats([.unassigned])
        case "alpha", "alphabetic": return { v in Unicode.Scalar(v)?.properties.isAlphabetic ?? false }
        case "space", "whitespace": return isSpace
        case "any": return { _ in true }
        default: return nil
        }
    }
}

/// Pattern syntax tree.
indirect enum RegexNode {
    /// `source`: where the atom starts in the pattern; copies of one atom (repetitions) share one set.
    case set([ScalarSet.Item], negated: Bool, caseInsensitive: Bool, source: Int)
    case sequence([RegexNode])
    case alternation([RegexNode])
    case repetition(RegexNode, min: Int, max: Int?, mode: Mode)
    case anchor(Anchor)
    case look(RegexNode, negate: Bool)
    case atomic(RegexNode)

    enum Mode { case greedy, lazy, possessive }
    enum Anchor { case lineStart, lineEnd, stringStart, stringEnd, stringEndOrFinalNewline, wordBoundary, notWordBoundary }
}

struct RegexParser {
    let s: [Unicode.Scalar]
    var pos = 0
    /// Groups open around the current position (bounded: the parser recurses per group).
    var depth = 0
    static let maxDepth = 256
    /// Oniguruma's ONIG_MAX_REPEAT_NUM.
    static let maxRepeat = 100_000

    init(_ s: [Unicode.Scalar]) { self.s = s }

    var atEnd: Bool { pos >= s.count }
    func fail(_ m: String) -> ScalarRegex.ParseError { ScalarRegex.ParseError(message: m, offset: pos) }

    mutating func parseAlternation(caseInsensitive: Bool) throws -> RegexNode {
        var ci = caseInsensitive
        var branches: [RegexNode] = [try parseSequence(&ci)]
        while !atEnd && s[pos] == "|" {
            pos += 1
            branches.append(try parseSequence(&ci))
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    mutating func parseSequence(_ ci: inout Bool) throws -> RegexNode {
        var items: [RegexNode] = []
        while !atEnd && s[pos] != "|" && s[pos] != ")" {
            // Inline flags (?i) apply to the rest of the enclosing group.
            if s[pos] == "(", pos + 3 < s.count, s[pos + 1] == "?", s[pos + 2] == "i", s[pos + 3] == ")" {
                ci = true
                pos += 4
                continue
            }
            var atom = try parseAtom(ci)
            atom = try parseQuantifier(atom)
            items.append(atom)
        }
        return items.count == 1 ? items[0] : .sequence(items)
    }

    mutating func parseQuantifier(_ atom: RegexNode) throws -> RegexNode {
        guard !atEnd else { return atom }
        var min = 0, max: Int? = nil
        switch s[pos] {
        case "*": pos += 1
        case "+": min = 1; pos += 1
        case "?": max = 1; pos += 1
        case "{":
            var j = pos + 1
            var a = "", b = "", comma = false
            while j < s.count && s[j] != "}" {
                if s[j] == "," { comma = true } else if ("0"..."9").contains(s[j]) { if comma { b.unicodeScalars.append(s[j]) } else { a.unicodeScalars.append(s[j]) } } else { return atom }
                j += 1
            }
            guard j < s.count, !a.isEmpty else { return atom }  // a literal '{'
            guard a.count <= 6, b.count <= 6, let lo = Int(a), lo <= Self.maxRepeat else {
                throw fail("repetition count {\(a)\(comma ? "," + b : "")} exceeds \(Self.maxRepeat)")
            }
            min = lo
            max = comma ? (b.isEmpty ? nil : Int(b)) : lo
            if let m = max, m > Self.maxRepeat { throw fail("repetition count {\(a),\(b)} exceeds \(Self.maxRepeat)") }
            if let m = max, m < lo { throw fail("repetition {\(a),\(b)}: the maximum is below the minimum") }
            pos = j + 1
        default:
            return atom
        }
        var mode = RegexNode.Mode.greedy
        if !atEnd && s[pos] == "?" { mode = .lazy; pos += 1 } else if !atEnd && s[pos] == "+" { mode = .possessive; pos += 1 }
        return .repetition(atom, min: min, max: max, mode: mode)
    }

    mutating func parseAtom(_ ci: Bool) throws -> RegexNode {
        let c = s[pos]
        switch c {
        case "(":
            pos += 1
            depth += 1
            defer { depth -= 1 }
            guard depth <= Self.maxDepth else { throw fail("groups nested deeper than \(Self.maxDepth)") }
            if !atEnd && s[pos] == "?" {
                pos += 1
                guard !atEnd else { throw fail("unterminated group") }
                let kind = s[pos]
                pos += 1
                var node: RegexNode
                switch kind {
                case ":": node = try parseAlternation(caseInsensitive: ci)
                case "=", "!": node = .look(try parseAlternation(caseInsensitive: ci), negate: kind == "!")
                case ">": node = .atomic(try parseAlternation(caseInsensitive: ci))
                case "i":
                    guard !atEnd && s[pos] == ":" else { throw fail("unsupported group flag") }
                    pos += 1
                    node = try parseAlternation(caseInsensitive: true)
                case "<": throw fail("unsupported lookbehind or named group")
                default: throw fail("unsupported group (?\(Character(kind))")
                }
                guard !atEnd && s[pos] == ")" else { throw fail("missing ')'") }
                pos += 1
                return node
            }
            let node = try parseAlternation(caseInsensitive: ci)
            guard !atEnd && s[pos] == ")" else { throw fail("missing ')'") }
            pos += 1
            return node
        case "[":
            return try parseClass(ci)
        case ".":
            pos += 1
            return .set([.range(0x0A, 0x0A)], negated: true, caseInsensitive: false, source: pos - 1)
        case "^": pos += 1; return .anchor(.lineStart)
        case "$": pos += 1; return .anchor(.lineEnd)
        case "\\":
            pos += 1
            guard !atEnd else { throw fail("trailing backslash") }
            let e = s[pos]
            switch e {
            case "A": pos += 1; return .anchor(.stringStart)
            case "z": pos += 1; return .anchor(.stringEnd)
            case "Z": pos += 1; return .anchor(.stringEndOrFinalNewline)
            case "b": pos += 1; return .anchor(.wordBoundary)
            case "B": pos += 1; return .anchor(.notWordBoundary)
            default:
                let start = pos - 1
                let items = try parseEscape()
                return .set(items.items, negated: items.negated, caseInsensitive: ci, source: start)
            }
        case "*", "+", "?":
            throw fail("quantifier '\(Character(c))' with nothing to repeat")
        default:
            pos += 1
            return .set([.range(c.value, c.value)], negated: false, caseInsensitive: ci, source: pos - 1)
        }
    }

    /// After a backslash: a class escape or a literal.
    mutating func parseEscape() throws -> (items: [ScalarSet.Item], negated: Bool) {
        let e = s[pos]
        pos += 1
        func lit(_ v: UInt32) -> ([ScalarSet.Item], Bool) { ([.range(v, v)], false) }
        switch e {
        case "s": return ([.predicate(ScalarSet.isSpace, negated: false)], false)
        case "S": return ([.predicate(ScalarSet.isSpace, negated: false)], true)
        case "d": return ([.predicate(ScalarSet.isDigit, negated: false)], false)
        case "D": return ([.predicate(ScalarSet.isDigit, negated: false)], true)
        case "w": return ([.predicate(ScalarSet.isWord, negated: false)], false)
        case "W": return ([.predicate(ScalarSet.isWord, negated: false)], true)
        case "h": return ([.predicate(ScalarSet.isHexDigit, negated: false)], false)
        case "H": return ([.predicate(ScalarSet.isHexDigit, negated: false)], true)
        case "p", "P":
            var name = ""
            if !atEnd && s[pos] == "{" {
                pos += 1
                while !atEnd && s[pos] != "}" { name.unicodeScalars.append(s[pos]); pos += 1 }
                guard !atEnd else { throw fail("unterminated \\p{") }
                pos += 1
            } else if !atEnd {
                name.unicodeScalars.append(s[pos]); pos += 1
            }
            var negate = e == "P"
            if name.hasPrefix("^") { negate.toggle(); name.removeFirst() }
            guard let f = ScalarSet.property(name) else { throw fail("unsupported property \\p{\(name)}") }
            return ([.predicate(f, negated: false)], negate)
        case "n": return lit(0x0A)
        case "r": return lit(0x0D)
        case "t": return lit(0x09)
        case "f": return lit(0x0C)
        case "v": return lit(0x0B)
        case "a": return lit(0x07)
        case "e": return lit(0x1B)
        case "0": return lit(0)
        case "x", "u":
            var hex = ""
            if e == "x" && !atEnd && s[pos] == "{" {
                pos += 1
                while !atEnd && s[pos] != "}" { hex.unicodeScalars.append(s[pos]); pos += 1 }
                pos += 1
            } else {
                let n = e == "x" ? 2 : 4
                for _ in 0..<n where !atEnd { hex.unicodeScalars.append(s[pos]); pos += 1 }
            }
            guard let v = UInt32(hex, radix: 16) else { throw fail("invalid \\\(Character(e)) escape") }
            return lit(v)
        default:
            if e.properties.isAlphabetic || ("0"..."9").contains(e) { throw fail("unsupported escape \\\(Character(e))") }
            return lit(e.value)
        }
    }

    mutating func parseClass(_ ci: Bool) throws -> RegexNode {
        let start = pos
        pos += 1
        var negated = false
        if !atEnd && s[pos] == "^" { negated = true; pos += 1 }
        var items: [ScalarSet.Item] = []
        var first = true
        while true {
            guard !atEnd else { throw fail("unterminated character class") }
            let c = s[pos]
            if c == "]" && !first { pos += 1; break }
            first = false
            if c == "[" {
                if pos + 1 < s.count && s[pos + 1] == ":" { throw fail("unsupported POSIX class") }
                throw fail("unsupported nested character class")
            }
            if c == "&" && pos + 1 < s.count && s[pos + 1] == "&" { throw fail("unsupported class intersection &&") }
            var lo: UInt32
            if c == "\\" {
                pos += 1
                guard !atEnd else { throw fail("trailing backslash") }
                let (its, neg) = try parseEscape()
                if its.count == 1, case .range(let a, let b) = its[0], a == b, !neg {
                    lo = a
                } else {
                    if neg {
                        // A negated escape inside a class: wrap as a predicate.
                        let inner = ScalarSet(items: its, negated: true, caseInsensitive: false)
                        items.append(.predicate({ inner.contains($0) }, negated: false))
                    } else {
                        items += its
                    }
                    continue
                }
            } else {
                lo = c.value
                pos += 1
            }
            if pos + 1 < s.count && s[pos] == "-" && s[pos + 1] != "]" {
                pos += 1
                var hi: UInt32
                if s[pos] == "\\" {
                    pos += 1
                    let (its, neg) = try parseEscape()
                    guard its.count == 1, case .range(let a, _) = its[0], !neg else { throw fail("invalid class range") }
                    hi = a
                } else {
                    hi = s[pos].value
                    pos += 1
                }
                guard hi >= lo else { throw fail("class range out of order") }
                items.append(.range(lo, hi))
            } else {
                items.append(.range(lo, lo))
            }
        }
        return .set(items, negated: negated, caseInsensitive: ci, source: start)
    }
}

struct RegexCompiler {
    fileprivate var sets: [ScalarSet] = []
    fileprivate var subprograms: [[ScalarRegex.Inst]] = []
    /// Set when the program outgrew `maxInstructions` (emission stops; the pattern is refused).
    fileprivate var tooLarge = false
    static let maxInstructions = 1_000_000
    private var emitted = 0

    fileprivate mutating func compile(_ node: RegexNode) -> [ScalarRegex.Inst] {
        var prog: [ScalarRegex.Inst] = []
        emit(node, into: &prog)
        prog.append(.match)
        return prog
    }

    /// Sub-programs are numbered after the main one (index 0).
    private mutating func sub(_ node: RegexNode) -> Int {
        let p = compile(node)
        subprograms.append(p)
        return subprograms.count
    }

    /// Distinct scalar sets a pattern may build (each holds a BMP bitmap).
    static let maxSets = 4096
    /// The set built for each atom of the pattern (by its offset): repeated copies reuse it.
    private var setOfSource: [Int: Int] = [:]

    private mutating func emit(_ node: RegexNode, into p: inout [ScalarRegex.Inst]) {
        emitted += 1
        if emitted > Self.maxInstructions || sets.count > Self.maxSets { tooLarge = true }
        if tooLarge { return }
        switch node {
        case .set(let items, let negated, let ci, let source):
            if let r = setOfSource[source] {
                p.append(.set(r))
                return
            }
            sets.append(ScalarSet(items: items, negated: negated, caseInsensitive: ci))
            setOfSource[source] = sets.count - 1
            p.append(.set(sets.count - 1))
        case .sequence(let items):
            for i in items { emit(i, into: &p) }
        case .alternation(let branches):
            var jumps: [Int] = []
            for (k, b) in branches.enumerated() {
                if k < branches.count - 1 {
                    let split = p.count
                    p.append(.split(0, 0))
                    emit(b, into: &p)
                    jumps.append(p.count)
                    p.append(.jmp(0))
                    p[split] = .split(split + 1, p.count)
                } else {
                    emit(b, into: &p)
                }
            }
            for j in jumps { p[j] = .jmp(p.count) }
        case .repetition(let inner, let min, let max, let mode):
            if mode == .possessive {
                let idx = sub(.repetition(inner, min: min, max: max, mode: .greedy))
                p.append(.atomic(idx))
                return
            }
            for _ in 0..<min { emit(inner, into: &p) }
            if let max {
                // (max − min) optional copies, each skipping to the end when declined.
                var holes: [Int] = []
                for _ in min..<max {
                    let split = p.count
                    p.append(.split(0, 0))
                    holes.append(split)
                    emit(inner, into: &p)
                }
                for h in holes { p[h] = mode == .lazy ? .split(p.count, h + 1) : .split(h + 1, p.count) }
            } else {
                let loop = p.count
                p.append(.split(0, 0))
                emit(inner, into: &p)
                p.append(.jmp(loop))
                p[loop] = mode == .lazy ? .split(p.count, loop + 1) : .split(loop + 1, p.count)
            }
        case .anchor(let a):
            switch a {
            case .lineStart: p.append(.lineStart)
            case .lineEnd: p.append(.lineEnd)
            case .stringStart: p.append(.stringStart)
            case .stringEnd: p.append(.stringEnd)
            case .stringEndOrFinalNewline: p.append(.stringEndOrFinalNewline)
            case .wordBoundary: p.append(.wordBoundary(true))
            case .notWordBoundary: p.append(.wordBoundary(false))
            }
        case .look(let inner, let negate):
            p.append(.look(sub(inner), negate: negate))
        case .atomic(let inner):
            p.append(.atomic(sub(inner)))
        }
    }
}
