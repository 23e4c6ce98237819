/// Tokens inside `{{ }}` and `{% %}`.
enum Token: Equatable {
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    case op(String)
    case end
}

struct ExpressionLexer {
    static let operators = ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                            "|", ".", ",", ":", "(", ")", "[", "]", "{", "}"]

    /// Tokens of `source`, located relative to the tag's start.
    static func tokens(_ source: String, at base: Location) throws -> [(Token, Location)] {
        let s = Array(source.unicodeScalars)
        var out: [(Token, Location)] = []
        var i = 0
        var line = base.line, col = base.column + 2
        func loc() -> Location { Location(line: line, column: col) }
        func advance(_ n: Int) {
            for _ in 0..<n {
                if s[i] == "\n" { line += 1; col = 1 } else { col += 1 }
                i += 1
            }
        }
        while i < s.count {
            let c = s[i]
            if c.properties.isWhitespace { advance(1); continue }
            let start = loc()
            if c == "_" || c.properties.isAlphabetic {
                var j = i
                while j < s.count && (s[j] == "_" || s[j].properties.isAlphabetic || ("0"..."9").contains(s[j])) { j += 1 }
                var v = String.UnicodeScalarView(); v.append(contentsOf: s[i..<j])
                out.append((.name(String(v)), start))
                advance(j - i)
                continue
            }
            if ("0"..."9").contains(c) {
                var j = i
                var isDouble = false
                while j < s.count && (("0"..."9").contains(s[j]) || s[j] == "_") { j += 1 }
                if j + 1 < s.count && s[j] == "." && ("0"..."9").contains(s[j + 1]) {
                    isDouble = true
                    j += 1
                    while j < s.count && ("0"..."9").contains(s[j]) { j += 1 }
                }
                if j < s.count && (s[j] == "e" || s[j] == "E") {
                    var k = j + 1
                    if k < s.count && (s[k] == "+" || s[k] == "-") { k += 1 }
                    if k < s.count && ("0"..."9").contains(s[k]) {
                        isDouble = true
                        j = k
                        while j < s.count && ("0"..."9").contains(s[j]) { j += 1 }
                    }
                }
                var v = String.UnicodeScalarView(); v.append(contentsOf: s[i..<j])
                let text = String(v).replacingOccurrences(of: "_", with: "")
                if isDouble, let d = Double(text) { out.append((.double(d), start)) }
                else if let n = Int(text) { out.append((.int(n), start)) }
                else { throw TemplateError("invalid number \(text)", at: start) }
                advance(j - i)
                continue
            }
            if c == "'" || c == "\"" {
                var j = i + 1
                var value = String.UnicodeScalarView()
                var closed = false
                while j < s.count {
                    let d = s[j]
                    if d == c { closed = true; break }
                    if d == "\\" && j + 1 < s.count {
                        let e = s[j + 1]
                        switch e {
                        case "n": value.append("\n")
                        case "t": value.append("\t")
                        case "r": value.append("\r")
                        case "\\": value.append("\\")
                        case "'": value.append("'")
                        case "\"": value.append("\"")
                        case "0": value.append("\0")
                        case "u", "x", "U":
                            let n = e == "u" ? 4 : (e == "x" ? 2 : 8)
                            guard j + 2 + n <= s.count else { throw TemplateError("truncated escape in string", at: start) }
                            var hex = String.UnicodeScalarView(); hex.append(contentsOf: s[(j + 2)..<(j + 2 + n)])
                            guard let v = UInt32(String(hex), radix: 16), let u = Unicode.Scalar(v) else {
                                throw TemplateError("invalid escape in string", at: start)
                            }
                            value.append(u)
                            j += n
                        default:
                            value.append("\\")
                            value.append(e)
                        }
                        j += 2
                        continue
                    }
                    value.append(d)
                    j += 1
                }
                guard closed else { throw TemplateError("unterminated string", at: start) }
                out.append((.string(String(value)), start))
                advance(j + 1 - i)
                continue
            }
            var matched = false
            for op in operators {
                let o = Array(op.unicodeScalars)
                if i + o.count <= s.count && s[i..<(i + o.count)].elementsEqual(o) {
                    out.append((.op(op), start))
                    advance(o.count)
                    matched = true
                    break
                }
            }
            if !matched { throw TemplateError("unexpected character '\(Character(c))'", at: start) }
        }
        out.append((.end, loc()))
        return out
    }
}
