import JSON

/// A token of `added_tokens`: matched in the raw text before pre-tokenization.
struct AddedToken: Sendable {
    let id: Int
    let content: String
    let special: Bool
    let lstrip: Bool
    let rstrip: Bool
    let singleWord: Bool
    let normalized: Bool

    init(_ json: JSONValue, file: String) throws {
        guard let id = json["id"]?.integerValue, let content = json["content"]?.stringValue else {
            throw TokenizerError.invalid(file: file, reason: "added token without id or content")
        }
        self.id = Int(id)
        self.content = content
        special = json["special"]?.boolValue ?? false
        lstrip = json["lstrip"]?.boolValue ?? false
        rstrip = json["rstrip"]?.boolValue ?? false
        singleWord = json["single_word"]?.boolValue ?? false
        normalized = json["normalized"]?.boolValue ?? !special
    }
}

/// A piece of input after added-token matching: either an added token or text to tokenize.
enum Segment {
    case token(Int)
    case text(String)
}

/// Finds added tokens in text, leftmost-longest, honouring lstrip / rstrip / single_word.
struct AddedTokenMatcher: Sendable {
    private let tokens: [AddedToken]
    /// First scalar → candidate tokens, longest first.
    private let byFirst: [Unicode.Scalar: [(scalars: [Unicode.Scalar], token: AddedToken)]]

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        var m: [Unicode.Scalar: [([Unicode.Scalar], AddedToken)]] = [:]
        for t in tokens {
            let s = Array(t.content.unicodeScalars)
            guard let f = s.first else { continue }
            m[f, default: []].append((s, t))
        }
        byFirst = m.mapValues { $0.sorted { $0.0.count > $1.0.count } }
    }

    var isEmpty: Bool { tokens.isEmpty }

    static func isWordScalar(_ u: Unicode.Scalar) -> Bool {
        u.properties.isAlphabetic || u.properties.numericType != nil || u == "_"
    }

    /// Splits `text` into added tokens and the text between them.
    func split(_ text: String) -> [Segment] {
        guard !byFirst.isEmpty else { return [.text(text)] }
        let s = Array(text.unicodeScalars)
        var out: [Segment] = []
        var offset = 0  // start of text not yet emitted
        var i = 0
        func emitText(_ a: Int, _ b: Int) {
            if a < b {
                var v = String.UnicodeScalarView()
                v.append(contentsOf: s[a..<b])
                out.append(.text(String(v)))
            }
        }
        while i < s.count {
            guard let candidates = byFirst[s[i]] else { i += 1; continue }
            var found: AddedToken?
            var length = 0
            for (pattern, token) in candidates where i + pattern.count <= s.count {
                if s[i..<(i + pattern.count)].elementsEqual(pattern) {
                    if token.singleWord {
                        let before = i == 0 || !AddedTokenMatcher.isWordScalar(s[i - 1])
                        let after = i + pattern.count == s.count || !AddedTokenMatcher.isWordScalar(s[i + pattern.count])
                        if !(before && after) { continue }
                    }
                    found = token
                    length = pattern.count
                    break
                }
            }
            guard let token = found else { i += 1; continue }
            var start = i
            var stop = i + length
            if token.lstrip {
                while start > offset && s[start - 1].properties.isWhitespace { start -= 1 }
            }
            if token.rstrip {
                while stop < s.count && s[stop].properties.isWhitespace { stop += 1 }
            }
            emitText(offset, start)
            out.append(.token(token.id))
            offset = stop
            i = stop
        }
        emitText(offset, s.count)
        return out
    }
}
