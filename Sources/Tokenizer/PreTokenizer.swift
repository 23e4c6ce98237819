import JSON

/// A piece of text during pre-tokenization, as Unicode scalar values.
typealias Piece = [UInt32]

/// A pre-tokenizer stage: refines one piece into smaller pieces.
protocol PreTokenizer: Sendable {
    func split(_ piece: Piece) -> [Piece]
}

extension PreTokenizer {
    func callAsFunction(_ pieces: [Piece]) -> [Piece] { pieces.flatMap { split($0) } }
}

struct SequencePreTokenizer: PreTokenizer {
    let stages: [PreTokenizer]
    func split(_ piece: Piece) -> [Piece] { stages.reduce([piece]) { $1($0) } }
}

/// How a split treats the matched delimiters (tokenizers' `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    /// Applies the behavior to segments that cover the piece; returns the kept ranges.
    func apply(_ segs: [(Range<Int>, Bool)]) -> [Range<Int>] {
        switch self {
        case .isolated:
            return segs.map(\.0)
        case .removed:
            return segs.filter { !$0.1 }.map(\.0)
        case .contiguous:
            var out: [Range<Int>] = []
            var previous = false
            for (r, m) in segs {
                if m == previous, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    out.append(r)
                }
                previous = m
            }
            return out
        case .mergedWithPrevious:
            var out: [Range<Int>] = []
            var previous = false
            for (r, m) in segs {
                if m && !previous, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    out.append(r)
                }
                previous = m
            }
            return out
        case .mergedWithNext:
            var out: [Range<Int>] = []
            var previous = false
            for (r, m) in segs.reversed() {
                if m && !previous, let last = out.last {
                    out[out.count - 1] = r.lowerBound..<last.upperBound
                } else {
                    out.append(r)
                }
                previous = m
            }
            return out.reversed()
        }
    }
}

func cut(_ piece: Piece, _ ranges: [Range<Int>]) -> [Piece] {
    ranges.filter { !$0.isEmpty }.map { Array(piece[$0]) }
}

struct SplitPreTokenizer: PreTokenizer {
    let pattern: Pattern
    let behavior: SplitBehavior
    let invert: Bool

    func split(_ piece: Piece) -> [Piece] {
        var segs = segments(count: piece.count, matches: pattern.matches(in: piece))
        if invert { segs = segs.map { ($0.0, !$0.1) } }
        return cut(piece, behavior.apply(segs))
    }
}

/// Digits apart from the rest; each digit alone when `individual`.
struct DigitsPreTokenizer: PreTokenizer {
    let individual: Bool

    /// Rust's `char::is_numeric`: general categories Nd, Nl, No.
    static func isNumeric(_ v: UInt32) -> Bool {
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        if v < 0xB2 { return false }  // the first non-ASCII numerics are ² ³ ¹ ¼ ½ ¾
        guard let u = Unicode.Scalar(v) else { return false }
        switch u.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    func split(_ piece: Piece) -> [Piece] {
        var matches: [Range<Int>] = []
        for (i, v) in piece.enumerated() where DigitsPreTokenizer.isNumeric(v) { matches.append(i..<(i + 1)) }
        if matches.isEmpty { return [piece] }
        let behavior: SplitBehavior = individual ? .isolated : .contiguous
        return cut(piece, behavior.apply(segments(count: piece.count, matches: matches)))
    }
}

/// Byte-level: optional prefix space, optional GPT-2 split, then UTF-8 bytes → printable characters.
struct ByteLevelPreTokenizer: PreTokenizer {
    static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    let addPrefixSpace: Bool
    let regex: Pattern?

    init(addPrefixSpace: Bool, useRegex: Bool) throws {
        self.addPrefixSpace = addPrefixSpace
        regex = useRegex ? try Pattern(regex: ByteLevelPreTokenizer.gpt2) : nil
    }

    func split(_ piece: Piece) -> [Piece] {
        var p = piece
        if addPrefixSpace && p.first != 0x20 { p.insert(0x20, at: 0) }
        var parts = [p]
        if let regex { parts = cut(p, SplitBehavior.isolated.apply(segments(count: p.count, matches: regex.matches(in: p)))) }
        return parts.map(ByteLevelAlphabet.encode)
    }
}

/// Splits on whitespace, keeping runs of word characters and runs of punctuation (`\w+|[^\w\s]+`).
struct WhitespacePreTokenizer: PreTokenizer {
    let pattern: Pattern
    func split(_ piece: Piece) -> [Piece] { cut(piece, pattern.matches(in: piece)) }
}

enum PreTokenizerFactory {
    static func make(_ json: JSONValue?, file: String) throws -> PreTokenizer? {
        guard let json, !json.isNull else { return nil }
        guard let type = json["type"]?.stringValue else { throw TokenizerError.invalid(file: file, reason: "pre_tokenizer without a type") }
        switch type {
        case "Sequence":
            return SequencePreTokenizer(stages: try (json["pretokenizers"]?.arrayValue ?? []).compactMap { try make($0, file: file) })
        case "Split":
            let b = json["behavior"]?.stringValue ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: b) else {
                throw TokenizerError.unsupported(file: file, component: "Split behavior", type: b)
            }
            return SplitPreTokenizer(pattern: try Pattern(json["pattern"], file: file), behavior: behavior,
                                     invert: json["invert"]?.boolValue ?? false)
        case "Digits":
            return DigitsPreTokenizer(individual: json["individual_digits"]?.boolValue ?? false)
        case "ByteLevel":
            return try ByteLevelPreTokenizer(addPrefixSpace: json["add_prefix_space"]?.boolValue ?? true,
                                             useRegex: json["use_regex"]?.boolValue ?? true)
        case "Whitespace":
            return WhitespacePreTokenizer(pattern: try Pattern(regex: #"\w+|[^\w\s]+"#))
        default:
            throw TokenizerError.unsupported(file: file, component: "pre_tokenizer", type: type)
        }
    }
}
