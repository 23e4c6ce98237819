import JSON

/// A decoder stage: token strings in, token strings out (tokenizers' `decode_chain`).
protocol TokenDecoder: Sendable {
    func decode(_ tokens: [String]) -> [String]
}

struct ByteLevelDecoder: TokenDecoder {
    func decode(_ tokens: [String]) -> [String] {
        var bytes: [UInt8] = []
        for t in tokens {
            var mapped: [UInt8] = []
            var ok = true
            for u in t.unicodeScalars {
                guard let b = ByteLevelAlphabet.scalarToByte[u.value] else { ok = false; break }
                mapped.append(b)
            }
            // A token with a character outside the byte alphabet (an added token) keeps its UTF-8.
            bytes += ok ? mapped : Array(t.utf8)
        }
        return [String(decoding: bytes, as: UTF8.self)]
    }
}

struct SequenceDecoder: TokenDecoder {
    let stages: [TokenDecoder]
    func decode(_ tokens: [String]) -> [String] { stages.reduce(tokens) { $1.decode($0) } }
}

struct ReplaceDecoder: TokenDecoder {
    let pattern: String
    let content: String
    func decode(_ tokens: [String]) -> [String] { tokens.map { $0.replacingOccurrences(of: pattern, with: content) } }
}

/// `<0xAB>` tokens back to bytes (SentencePiece byte fallback).
struct ByteFallbackDecoder: TokenDecoder {
    func decode(_ tokens: [String]) -> [String] {
        var out: [String] = []
        var pending: [UInt8] = []
        func flush() {
            if !pending.isEmpty { out.append(String(decoding: pending, as: UTF8.self)); pending = [] }
        }
        for t in tokens {
            if t.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(t.dropFirst(3).dropLast(), radix: 16) {
                pending.append(b)
            } else {
                flush()
                out.append(t)
            }
        }
        flush()
        return out
    }
}

struct FuseDecoder: TokenDecoder {
    func decode(_ tokens: [String]) -> [String] { [tokens.joined()] }
}

struct StripDecoder: TokenDecoder {
    let content: Character
    let start: Int
    let stop: Int
    func decode(_ tokens: [String]) -> [String] {
        tokens.map { t in
            var s = Substring(t)
            var n = 0
            while n < start, s.first == content { s.removeFirst(); n += 1 }
            n = 0
            while n < stop, s.last == content { s.removeLast(); n += 1 }
            return String(s)
        }
    }
}

enum DecoderFactory {
    static func make(_ json: JSONValue?, file: String) throws -> TokenDecoder? {
        guard let json, !json.isNull else { return nil }
        guard let type = json["type"]?.stringValue else { throw TokenizerError.invalid(file: file, reason: "decoder without a type") }
        switch type {
        case "ByteLevel": return ByteLevelDecoder()
        case "Sequence": return SequenceDecoder(stages: try (json["decoders"]?.arrayValue ?? []).compactMap { try make($0, file: file) })
        case "Replace":
            guard let p = json["pattern"]?["String"]?.stringValue else {
                throw TokenizerError.unsupported(file: file, component: "decoder Replace pattern", type: "Regex")
            }
            return ReplaceDecoder(pattern: p, content: json["content"]?.stringValue ?? "")
        case "ByteFallback": return ByteFallbackDecoder()
        case "Fuse": return FuseDecoder()
        case "Strip":
            return StripDecoder(content: json["content"]?.stringValue?.first ?? " ",
                                start: Int(json["start"]?.integerValue ?? 0), stop: Int(json["stop"]?.integerValue ?? 0))
        default: throw TokenizerError.unsupported(file: file, component: "decoder", type: type)
        }
    }
}
