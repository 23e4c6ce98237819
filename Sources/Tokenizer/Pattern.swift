import JSON

/// A split pattern from tokenizer.json: `{"Regex": "..."}` (Oniguruma syntax, as Hugging Face
/// tokenizers uses) or `{"String": "..."}` (a literal). Regexes run on Unicode scalars, as
/// Oniguruma does, not on grapheme clusters.
struct Pattern: @unchecked Sendable {
    private enum Kind { case regex(Regex<AnyRegexOutput>), literal(String) }
    private let kind: Kind
    let source: String

    init(_ json: JSONValue?, file: String) throws {
        if let r = json?["Regex"]?.stringValue {
            source = r
            do {
                // Oniguruma's (Ruby syntax) ^ and $ are line anchors.
                kind = .regex(try Regex(Pattern.escapeNonASCII(r)).matchingSemantics(.unicodeScalar).anchorsMatchLineEndings())
            } catch {
                throw TokenizerError.invalid(file: file, reason: "regex \(r.debugDescription) does not compile: \(error)")
            }
        } else if let s = json?["String"]?.stringValue {
            source = s
            kind = .literal(s)
        } else {
            throw TokenizerError.invalid(file: file, reason: "pattern must be {\"Regex\": ...} or {\"String\": ...}")
        }
    }

    init(regex: String) throws {
        source = regex
        kind = .regex(try Regex(Pattern.escapeNonASCII(regex)).matchingSemantics(.unicodeScalar).anchorsMatchLineEndings())
    }

    /// Writes every non-ASCII scalar as `\x{HEX}`, so that the regex parser sees single scalars
    /// (a literal combining mark would otherwise join the character before it). Inside a class, a
    /// range whose bounds or members are not NFC-stable (U+1FD3 "ΐ", which Swift's parser refuses
    /// as a bound) is cut into stable sub-ranges plus single scalars: the same set.
    static func escapeNonASCII(_ pattern: String) -> String {
        func hex(_ u: Unicode.Scalar) -> String { u.isASCII && !"-]\\^[".unicodeScalars.contains(u) ? String(u) : "\\x{" + String(u.value, radix: 16) + "}" }
        func stable(_ u: Unicode.Scalar) -> Bool {
            u.value < 0xC0 || String(u).precomposedStringWithCanonicalMapping.unicodeScalars.elementsEqual([u])
        }
        func range(_ a: Unicode.Scalar, _ b: Unicode.Scalar) -> String {
            guard a.value <= b.value else { return hex(a) + "-" + hex(b) }  // let the parser report it
            var out = ""
            var runStart: UInt32? = nil
            func close(_ end: UInt32) {
                if let s = runStart, let su = Unicode.Scalar(s), let eu = Unicode.Scalar(end) {
                    out += s == end ? hex(su) : hex(su) + "-" + hex(eu)
                }
                runStart = nil
            }
            var v = a.value
            while v <= b.value {
                if let u = Unicode.Scalar(v), stable(u) {
                    if runStart == nil { runStart = v }
                } else {
                    close(v - 1)
                    if let u = Unicode.Scalar(v) { out += hex(u) }
                }
                v += 1
            }
            close(b.value)
            return out
        }
        let s = Array(pattern.unicodeScalars)
        var out = ""
        var i = 0
        var inClass = false
        while i < s.count {
            let u = s[i]
            if u == "\\" && i + 1 < s.count {
                out.unicodeScalars.append(u)
                let next = s[i + 1]
                if next.isASCII { out.unicodeScalars.append(next) } else { out += "x{" + String(next.value, radix: 16) + "}" }
                i += 2
                continue
            }
            if inClass {
                if u == "]" { inClass = false; out += "]"; i += 1; continue }
                if i + 2 < s.count, s[i + 1] == "-", s[i + 2] != "]", s[i + 2] != "\\", u != "[" {
                    out += range(u, s[i + 2])
                    i += 3
                    continue
                }
                out += u.isASCII ? String(u) : hex(u)
                i += 1
                continue
            }
            if u == "[" {
                inClass = true
                out += "["
                i += 1
                if i < s.count, s[i] == "^" { out += "^"; i += 1 }
                if i < s.count, s[i] == "]" { out += "\\]"; i += 1 }  // a leading ] is a literal
                continue
            }
            out += u.isASCII ? String(u) : hex(u)
            i += 1
        }
        return out
    }

    /// Non-overlapping matches, left to right, as ranges of `s.unicodeScalars`.
    func matches(in s: String) -> [Range<String.Index>] {
        switch kind {
        case .regex(let re):
            return s.matches(of: re).map(\.range).filter { !$0.isEmpty }
        case .literal(let lit):
            guard !lit.isEmpty else { return [] }
            let hay = Array(s.unicodeScalars), needle = Array(lit.unicodeScalars)
            var idx = s.unicodeScalars.startIndex
            var out: [Range<String.Index>] = []
            var i = 0
            while i + needle.count <= hay.count {
                if Array(hay[i..<(i + needle.count)]) == needle {
                    let start = s.unicodeScalars.index(s.unicodeScalars.startIndex, offsetBy: i)
                    let end = s.unicodeScalars.index(start, offsetBy: needle.count)
                    out.append(start..<end)
                    i += needle.count
                } else {
                    i += 1
                }
            }
            _ = idx
            idx = s.unicodeScalars.endIndex
            return out
        }
    }
}

/// Cuts `s` into alternating (range, isMatch) segments that cover it, as tokenizers' `find_matches`.
func segments(of s: String, matches: [Range<String.Index>]) -> [(Range<String.Index>, Bool)] {
    var out: [(Range<String.Index>, Bool)] = []
    var prev = s.unicodeScalars.startIndex
    for m in matches {
        if prev < m.lowerBound { out.append((prev..<m.lowerBound, false)) }
        out.append((m, true))
        prev = m.upperBound
    }
    if prev < s.unicodeScalars.endIndex { out.append((prev..<s.unicodeScalars.endIndex, false)) }
    return out
}
