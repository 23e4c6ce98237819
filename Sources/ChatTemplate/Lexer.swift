/// Template source → text, output and statement pieces, with Jinja's whitespace rules applied:
/// `{%- -%}` / `{{- -}}` / `{#- -#}` strip all whitespace on that side; `trim_blocks` drops the
/// first newline after a block tag; `lstrip_blocks` drops spaces and tabs before a block tag that
/// starts its line (`{%+` opts out).
struct Piece {
    enum Kind { case text, output, statement }
    let kind: Kind
    /// Text, or the expression/statement source between the delimiters.
    let content: String
    let location: Location
}

struct Lexer {
    let trimBlocks: Bool
    let lstripBlocks: Bool

    func pieces(_ source: String) throws -> [Piece] {
        let s = Array(source.unicodeScalars)
        var out: [Piece] = []
        var text: [Unicode.Scalar] = []
        var textStart = Location(line: 1, column: 1)
        var i = 0
        var line = 1, col = 1
        var stripNextLeading = false
        var trimNextNewline = false

        var textStartIndex = 0
        func advance(_ n: Int) {
            for _ in 0..<n {
                if s[i] == "\n" { line += 1; col = 1 } else { col += 1 }
                i += 1
            }
        }
        func flushText() {
            if !text.isEmpty {
                var v = String.UnicodeScalarView()
                v.append(contentsOf: text)
                out.append(Piece(kind: .text, content: String(v), location: textStart))
            }
            text = []
        }

        while i < s.count {
            let isTag = s[i] == "{" && i + 1 < s.count && (s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#")
            if !isTag {
                if stripNextLeading && s[i].properties.isWhitespace { advance(1); continue }
                stripNextLeading = false
                if trimNextNewline {
                    trimNextNewline = false
                    if s[i] == "\n" { advance(1); continue }
                    if s[i] == "\r" && i + 1 < s.count && s[i + 1] == "\n" { advance(2); continue }
                }
                if text.isEmpty { textStart = Location(line: line, column: col); textStartIndex = i }
                text.append(s[i])
                advance(1)
                continue
            }
            stripNextLeading = false
            trimNextNewline = false
            let tagLocation = Location(line: line, column: col)
            let opener = s[i + 1]
            let kind: Piece.Kind = opener == "{" ? .output : .statement
            var j = i + 2
            var leftStrip = false
            var plus = false
            if j < s.count && s[j] == "-" { leftStrip = true; j += 1 } else if j < s.count && s[j] == "+" { plus = true; j += 1 }
            // Whitespace before the tag.
            if leftStrip {
                while let last = text.last, last.properties.isWhitespace { text.removeLast() }
            } else if lstripBlocks && opener != "{" && !plus {
                var k = text.count
                while k > 0 && (text[k - 1] == " " || text[k - 1] == "\t") { k -= 1 }
                let atLineStart = k == 0 ? isLineStart(s, text.isEmpty ? i : textStartIndex) : text[k - 1] == "\n"
                if atLineStart { text.removeLast(text.count - k) }
            }
            // Find the closing delimiter.
            let close: Unicode.Scalar = opener == "{" ? "}" : (opener == "%" ? "%" : "#")
            var k = j
            var depth = 0
            var quote: Unicode.Scalar? = nil
            var end = -1
            while k + 1 < s.count {
                let c = s[k]
                if opener == "#" {
                    if c == "#" && s[k + 1] == "}" { end = k; break }
                    k += 1
                    continue
                }
                if let q = quote {
                    if c == "\\" { k += 2; continue }
                    if c == q { quote = nil }
                    k += 1
                    continue
                }
                if c == "'" || c == "\"" { quote = c; k += 1; continue }
                if c == "(" || c == "[" || c == "{" { depth += 1 }
                if (c == ")" || c == "]" || c == "}") && !(depth == 0 && c == close && s[k + 1] == "}") { depth = max(0, depth - 1) }
                if depth == 0 && c == close && s[k + 1] == "}" { end = k; break }
                k += 1
            }
            guard end >= 0 else {
                throw TemplateError("unclosed \(opener == "{" ? "{{" : opener == "%" ? "{%" : "{#") tag", at: tagLocation)
            }
            var contentEnd = end
            var rightStrip = false
            if contentEnd > j && s[contentEnd - 1] == "-" { rightStrip = true; contentEnd -= 1 }
            flushText()
            if opener != "#" {
                var v = String.UnicodeScalarView()
                v.append(contentsOf: s[j..<contentEnd])
                out.append(Piece(kind: kind, content: String(v), location: tagLocation))
            }
            advance(end + 2 - i)
            if rightStrip { stripNextLeading = true } else if trimBlocks && opener != "{" { trimNextNewline = true }
            // {% raw %} ... {% endraw %}: copy verbatim.
            if kind == .statement, out.last?.content.trimmingWhitespace() == "raw" {
                out.removeLast()
                guard let r = findEndRaw(s, from: i) else { throw TemplateError("{% raw %} without {% endraw %}", at: tagLocation) }
                textStart = Location(line: line, column: col)
                text.append(contentsOf: s[i..<r.textEnd])
                var body = text
                if r.stripBefore { while let last = body.last, last.properties.isWhitespace { body.removeLast() } }
                text = body
                flushText()
                advance(r.tagEnd - i)
                if r.stripAfter { stripNextLeading = true } else if trimBlocks { trimNextNewline = true }
            }
        }
        flushText()
        return out
    }

    private func isLineStart(_ s: [Unicode.Scalar], _ index: Int) -> Bool { index == 0 || s[index - 1] == "\n" }

    private func findEndRaw(_ s: [Unicode.Scalar], from: Int) -> (textEnd: Int, tagEnd: Int, stripBefore: Bool, stripAfter: Bool)? {
        var k = from
        while k + 1 < s.count {
            if s[k] == "{" && s[k + 1] == "%" {
                var j = k + 2
                let stripBefore = j < s.count && s[j] == "-"
                if stripBefore { j += 1 }
                while j < s.count && s[j] == " " { j += 1 }
                let word = "endraw".unicodeScalars
                if j + word.count <= s.count && s[j..<(j + word.count)].elementsEqual(word) {
                    var e = j + word.count
                    while e < s.count && s[e] == " " { e += 1 }
                    let stripAfter = e < s.count && s[e] == "-"
                    if stripAfter { e += 1 }
                    if e + 1 < s.count && s[e] == "%" && s[e + 1] == "}" { return (k, e + 2, stripBefore, stripAfter) }
                }
            }
            k += 1
        }
        return nil
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var sub = Substring(self)
        while let f = sub.first, f.isWhitespace { sub.removeFirst() }
        while let l = sub.last, l.isWhitespace { sub.removeLast() }
        return String(sub)
    }
}
