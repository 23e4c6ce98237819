import Foundation
import JSON

/// A normalizer stage of tokenizer.json.
protocol Normalizer: Sendable {
    func normalize(_ s: String) -> String
}

struct SequenceNormalizer: Normalizer {
    let stages: [Normalizer]
    func normalize(_ s: String) -> String { stages.reduce(s) { $1.normalize($0) } }
}

struct UnicodeNormalizer: Normalizer {
    enum Form: Sendable { case nfc, nfkc, nfd, nfkd }
    let form: Form
    func normalize(_ s: String) -> String {
        switch form {
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfd: return s.decomposedStringWithCanonicalMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        }
    }
}

struct PrependNormalizer: Normalizer {
    let prefix: String
    func normalize(_ s: String) -> String { s.isEmpty ? s : prefix + s }
}

struct ReplaceNormalizer: Normalizer {
    let pattern: Pattern
    let content: String
    func normalize(_ s: String) -> String {
        let scalars = s.unicodeScalars.map(\.value)
        let replacement = content.unicodeScalars.map(\.value)
        var out: [UInt32] = []
        var last = 0
        for r in pattern.matches(in: scalars) {
            out += scalars[last..<r.lowerBound]
            out += replacement
            last = r.upperBound
        }
        out += scalars[last...]
        return String(scalars: out)
    }
}

struct LowercaseNormalizer: Normalizer {
    func normalize(_ s: String) -> String { s.lowercased() }
}

struct StripNormalizer: Normalizer {
    let left: Bool, right: Bool
    func normalize(_ s: String) -> String {
        var scalars = Substring(s).unicodeScalars
        if left { while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() } }
        if right { while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() } }
        return String(scalars)
    }
}

enum NormalizerFactory {
    static func make(_ json: JSONValue?, file: String) throws -> Normalizer? {
        guard let json, !json.isNull else { return nil }
        guard let type = json["type"]?.stringValue else { throw TokenizerError.invalid(file: file, reason: "normalizer without a type") }
        switch type {
        case "Sequence":
            return SequenceNormalizer(stages: try (json["normalizers"]?.arrayValue ?? []).compactMap { try make($0, file: file) })
        case "NFC": return UnicodeNormalizer(form: .nfc)
        case "NFKC": return UnicodeNormalizer(form: .nfkc)
        case "NFD": return UnicodeNormalizer(form: .nfd)
        case "NFKD": return UnicodeNormalizer(form: .nfkd)
        case "Prepend": return PrependNormalizer(prefix: json["prepend"]?.stringValue ?? "")
        case "Replace":
            return ReplaceNormalizer(pattern: try Pattern(json["pattern"], file: file), content: json["content"]?.stringValue ?? "")
        case "Lowercase": return LowercaseNormalizer()
        case "Strip": return StripNormalizer(left: json["strip_left"]?.boolValue ?? true, right: json["strip_right"]?.boolValue ?? true)
        default: throw TokenizerError.unsupported(file: file, component: "normalizer", type: type)
        }
    }
}
