import JSON

/// Byte-pair encoding with merge ranks (tokenizers' `BPE` model): a word starts as its characters
/// and the lowest-ranked adjacent pair is merged until no pair has a rank.
final class BPE: @unchecked Sendable {
    let vocab: [String: Int]
    let idToToken: [Int: String]
    /// (left id, right id) → (rank, merged id).
    private let merges: [UInt64: (rank: Int32, id: Int32)]
    let unkToken: String?
    let byteFallback: Bool
    let ignoreMerges: Bool
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    private var cache: [[UInt32]: [Int]] = [:]
    private let cacheLock = NSLockLike()

    init(_ json: JSONValue, file: String) throws {
        guard let v = json["vocab"]?.objectValue else { throw TokenizerError.invalid(file: file, reason: "BPE model has no vocab object") }
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(v.count)
        var reverse: [Int: String] = [:]
        for (token, id) in v.pairs {
            guard let i = id.integerValue else { throw TokenizerError.invalid(file: file, reason: "vocab id of \(token.debugDescription) is not an integer") }
            vocab[token] = Int(i)
            reverse[Int(i)] = token
        }
        var merges: [UInt64: (Int32, Int32)] = [:]
        for (rank, m) in (json["merges"]?.arrayValue ?? []).enumerated() {
            let pair: (String, String)
            if let s = m.stringValue {
                guard let space = s.firstIndex(of: " ") else { throw TokenizerError.invalid(file: file, reason: "merge \(s.debugDescription) is not two tokens") }
                pair = (String(s[..<space]), String(s[s.index(after: space)...]))
            } else if let a = m.arrayValue, a.count == 2, let l = a[0].stringValue, let r = a[1].stringValue {
                pair = (l, r)
            } else {
                throw TokenizerError.invalid(file: file, reason: "merge #\(rank) is neither \"a b\" nor [a, b]")
            }
            let prefixLen = (json["continuing_subword_prefix"]?.stringValue ?? "").count
            let rightStripped = prefixLen > 0 && pair.1.hasPrefix(json["continuing_subword_prefix"]!.stringValue!) ? String(pair.1.dropFirst(prefixLen)) : pair.1
            guard let l = vocab[pair.0], let r = vocab[pair.1], let merged = vocab[pair.0 + rightStripped] else {
                throw TokenizerError.invalid(file: file, reason: "merge #\(rank) \(pair.0.debugDescription) + \(pair.1.debugDescription) uses a token not in the vocab")
            }
            let key = UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))
            if merges[key] == nil { merges[key] = (Int32(rank), Int32(merged)) }
        }
        self.vocab = vocab
        idToToken = reverse
        self.merges = merges
        unkToken = json["unk_token"]?.stringValue
        byteFallback = json["byte_fallback"]?.boolValue ?? false
        ignoreMerges = json["ignore_merges"]?.boolValue ?? false
        continuingSubwordPrefix = json["continuing_subword_prefix"]?.stringValue
        endOfWordSuffix = json["end_of_word_suffix"]?.stringValue
    }

    /// Ids of one pre-tokenized word (as scalars); repeated words come from a cache keyed by
    /// their scalars, so the common case builds no String.
    func tokenize(_ word: [UInt32]) -> [Int] {
        if let hit = cacheLock.withLock({ cache[word] }) { return hit }
        let ids = merge(String(scalars: word))
        if word.count < 256 { cacheLock.withLock { if cache.count < 1 << 20 { cache[word] = ids } } }
        return ids
    }

    private func merge(_ word: String) -> [Int] {
        if ignoreMerges, let id = vocab[word] { return [id] }
        // Initial symbols: characters (with prefix/suffix), unknowns through byte fallback or unk.
        var symbols: [Int] = []
        let chars = Array(word)
        var pendingUnk = false
        for (i, ch) in chars.enumerated() {
            var s = String(ch)
            if i > 0, let p = continuingSubwordPrefix { s = p + s }
            if i == chars.count - 1, let suf = endOfWordSuffix { s += suf }
            if let id = vocab[s] {
                symbols.append(id)
                pendingUnk = false
            } else if byteFallback, case let bytes = Array(String(ch).utf8),
                let ids = Optional(bytes.compactMap({ vocab[String(format: "<0x%02X>", $0)] })), ids.count == bytes.count {
                symbols += ids
                pendingUnk = false
            } else if let unk = unkToken, let id = vocab[unk] {
                if !pendingUnk { symbols.append(id) }  // consecutive unknowns fuse (fuse_unk) only when set; keep one
                pendingUnk = true
            }
        }
        guard symbols.count > 1 else { return symbols }
        while true {
            var best: (rank: Int32, at: Int, id: Int32)? = nil
            for i in 0..<(symbols.count - 1) {
                let key = UInt64(UInt32(symbols[i])) << 32 | UInt64(UInt32(symbols[i + 1]))
                if let m = merges[key], best == nil || m.rank < best!.rank { best = (m.rank, i, m.id) }
            }
            guard let b = best else { break }
            // Merge every occurrence of this pair, left to right.
            let (l, r) = (symbols[b.at], symbols[b.at + 1])
            var out: [Int] = []
            out.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == l && symbols[i + 1] == r {
                    out.append(Int(b.id))
                    i += 2
                } else {
                    out.append(symbols[i])
                    i += 1
                }
            }
            symbols = out
            if symbols.count == 1 { break }
        }
        return symbols
    }
}

/// A tiny pthread mutex (the tokenizer caches BPE results across threads).
final class NSLockLike: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    func withLock<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return body()
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation
