import Foundation
import JSON

/// A byte-level BPE tokenizer read from `tokenizer.json` (+ `tokenizer_config.json`), running the
/// Hugging Face pipeline: added tokens → normalizer → pre-tokenizer → BPE → post-processor; and
/// decoding through the decoder chain.
public final class Tokenizer: @unchecked Sendable {
    let added: [AddedToken]
    /// Tokens matched on the raw text, and those matched after normalization.
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BPE
    let decoder: TokenDecoder?
    let addedByID: [Int: AddedToken]
    let addedByContent: [String: Int]
    /// Ids put around a single sequence when special tokens are added.
    let prefixIDs: [Int]
    let suffixIDs: [Int]

    /// `tokenizer_config.json`, when present (chat template, BOS/EOS strings).
    public let config: JSONValue?
    public let bosToken: String?
    public let eosToken: String?

    public convenience init(directory: String) throws {
        let tokPath = directory + "/tokenizer.json"
        guard let data = FileManager.default.contents(atPath: tokPath) else { throw TokenizerError.missingFile(tokPath) }
        let cfgPath = directory + "/tokenizer_config.json"
        let cfg = FileManager.default.contents(atPath: cfgPath)
        try self.init(tokenizerJSON: [UInt8](data), configJSON: cfg.map { [UInt8]($0) }, file: tokPath, configFile: cfgPath)
    }

    public init(tokenizerJSON: [UInt8], configJSON: [UInt8]?, file: String = "tokenizer.json", configFile: String = "tokenizer_config.json") throws {
        let json: JSONValue
        do { json = try JSONParser.parse(tokenizerJSON) } catch { throw TokenizerError.invalidJSON(file: file, reason: error.description) }
        var cfg: JSONValue? = nil
        if let configJSON {
            do { cfg = try JSONParser.parse(configJSON) } catch { throw TokenizerError.invalidJSON(file: configFile, reason: error.description) }
        }
        config = cfg
        guard let m = json["model"], m["type"]?.stringValue ?? "BPE" == "BPE" else {
            throw TokenizerError.unsupported(file: file, component: "model", type: json["model"]?["type"]?.stringValue ?? "none")
        }
        model = try BPE(m, file: file)
        added = try (json["added_tokens"]?.arrayValue ?? []).map { try AddedToken($0, file: file) }
        rawMatcher = AddedTokenMatcher(added.filter { !$0.normalized })
        normalizedMatcher = AddedTokenMatcher(added.filter { $0.normalized })
        normalizer = try NormalizerFactory.make(json["normalizer"], file: file)
        preTokenizer = try PreTokenizerFactory.make(json["pre_tokenizer"], file: file)
        decoder = try DecoderFactory.make(json["decoder"], file: file)
        addedByID = Dictionary(added.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        addedByContent = Dictionary(added.map { ($0.content, $0.id) }, uniquingKeysWith: { a, _ in a })

        func tokenString(_ v: JSONValue?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
        bosToken = tokenString(cfg?["bos_token"])
        eosToken = tokenString(cfg?["eos_token"])

        // Special tokens around a sequence: tokenizer_config's add_bos_token / add_eos_token when it
        // sets them (as transformers' Llama-family fast tokenizers rebuild their post-processor),
        // else the TemplateProcessing post-processor.
        let vocab = model.vocab
        let contentIDs = addedByContent
        func id(_ s: String?) -> Int? { s.flatMap { contentIDs[$0] ?? vocab[$0] } }
        if cfg?["add_bos_token"] != nil || cfg?["add_eos_token"] != nil {
            let addBOS = cfg?["add_bos_token"]?.boolValue ?? false
            let addEOS = cfg?["add_eos_token"]?.boolValue ?? false
            if addBOS, id(bosToken) == nil { throw TokenizerError.invalid(file: configFile, reason: "add_bos_token is set but bos_token \(bosToken.debugDescription) is not a token") }
            if addEOS, id(eosToken) == nil { throw TokenizerError.invalid(file: configFile, reason: "add_eos_token is set but eos_token \(eosToken.debugDescription) is not a token") }
            prefixIDs = addBOS ? [id(bosToken)!] : []
            suffixIDs = addEOS ? [id(eosToken)!] : []
        } else {
            (prefixIDs, suffixIDs) = try Tokenizer.template(json["post_processor"], file: file)
        }
    }

    /// The single-sequence template of a TemplateProcessing post-processor (also inside a Sequence).
    static func template(_ pp: JSONValue?, file: String) throws -> ([Int], [Int]) {
        guard let pp, !pp.isNull else { return ([], []) }
        switch pp["type"]?.stringValue {
        case "Sequence":
            var result: ([Int], [Int]) = ([], [])
            for p in pp["processors"]?.arrayValue ?? [] {
                let r = try template(p, file: file)
                if !r.0.isEmpty || !r.1.isEmpty { result = r }
            }
            return result
        case "TemplateProcessing":
            var prefix: [Int] = [], suffix: [Int] = []
            var seenSequence = false
            let specials = pp["special_tokens"]
            for item in pp["single"]?.arrayValue ?? [] {
                if item["Sequence"] != nil { seenSequence = true; continue }
                guard let name = item["SpecialToken"]?["id"]?.stringValue,
                    let ids = specials?[name]?["ids"]?.arrayValue?.compactMap({ $0.integerValue.map(Int.init) })
                else { throw TokenizerError.invalid(file: file, reason: "TemplateProcessing names an unknown special token") }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
            return (prefix, suffix)
        case "ByteLevel", "RobertaProcessing", "BertProcessing", nil:
            return ([], [])
        case let t?:
            throw TokenizerError.unsupported(file: file, component: "post_processor", type: t)
        }
    }

    // MARK: Encoding

    /// Token ids of `text`; with `addSpecialTokens`, BOS/EOS as the tokenizer config says.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids: [Int] = []
        for seg in rawMatcher.split(text) {
            switch seg {
            case .token(let id): ids.append(id)
            case .text(let t):
                let n = normalizer?.normalize(t) ?? t
                for inner in normalizedMatcher.split(n) {
                    switch inner {
                    case .token(let id): ids.append(id)
                    case .text(let piece): ids += encodePiece(piece)
                    }
                }
            }
        }
        return addSpecialTokens ? prefixIDs + ids + suffixIDs : ids
    }

    func encodePiece(_ text: String) -> [Int] {
        guard !text.isEmpty else { return [] }
        let scalars = text.unicodeScalars.map(\.value)
        let words = preTokenizer.map { $0.split(scalars) } ?? [scalars]
        var ids: [Int] = []
        ids.reserveCapacity(words.count * 2)
        for w in words { ids += model.tokenize(w) }
        return ids
    }

    // MARK: Decoding

    /// Text of `ids`; ids with no token (beyond the vocabulary) are dropped, as tokenizers does.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        for id in ids {
            if let a = addedByID[id] {
                if skipSpecialTokens && a.special { continue }
                tokens.append(a.content)
            } else if let t = model.idToToken[id] {
                tokens.append(t)
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens).joined()
    }

    /// The id of a token string (added or in the vocabulary).
    public func tokenID(_ token: String) -> Int? { addedByContent[token] ?? model.vocab[token] }

    public var chatTemplate: String? { config?["chat_template"]?.stringValue }
}
