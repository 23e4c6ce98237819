import JSON

/// A split pattern from tokenizer.json: `{"Regex": "..."}` (Oniguruma syntax, run by our
/// `ScalarRegex`) or `{"String": "..."}` (a literal). Patterns match Unicode scalars, as
/// Oniguruma does, not grapheme clusters.
struct Pattern: Sendable {
    private enum Kind { case regex(ScalarRegex), literal([UInt32]) }
    private let kind: Kind
    let source: String

    init(_ json: JSONValue?, file: String) throws {
        if let r = json?["Regex"]?.stringValue {
            source = r
            do { kind = .regex(try ScalarRegex(r)) } catch {
                throw TokenizerError.invalid(file: file, reason: "regex \(r.debugDescription): \(error)")
            }
        } else if let s = json?["String"]?.stringValue {
            source = s
            kind = .literal(s.unicodeScalars.map(\.value))
        } else {
            throw TokenizerError.invalid(file: file, reason: "pattern must be {\"Regex\": ...} or {\"String\": ...}")
        }
    }

    init(regex: String) throws {
        source = regex
        kind = .regex(try ScalarRegex(regex))
    }

    /// Non-overlapping matches, left to right, as scalar offsets.
    func matches(in s: [UInt32]) -> [Range<Int>] {
        switch kind {
        case .regex(let re):
            return re.matches(s)
        case .literal(let needle):
            guard !needle.isEmpty else { return [] }
            var out: [Range<Int>] = []
            var i = 0
            while i + needle.count <= s.count {
                if s[i..<(i + needle.count)].elementsEqual(needle) {
                    out.append(i..<(i + needle.count))
                    i += needle.count
                } else {
                    i += 1
                }
            }
            return out
        }
    }
}

/// Cuts `0..<count` into alternating (range, isMatch) segments that cover it, as tokenizers'
/// `find_matches`.
func segments(count: Int, matches: [Range<Int>]) -> [(Range<Int>, Bool)] {
    var out: [(Range<Int>, Bool)] = []
    var prev = 0
    for m in matches {
        if prev < m.lowerBound { out.append((prev..<m.lowerBound, false)) }
        out.append((m, true))
        prev = m.upperBound
    }
    if prev < count { out.append((prev..<count, false)) }
    return out
}

extension String {
    init(scalars: some Sequence<UInt32>) {
        var v = String.UnicodeScalarView()
        for x in scalars { v.append(Unicode.Scalar(x) ?? "\u{FFFD}") }
        self = String(v)
    }
}
