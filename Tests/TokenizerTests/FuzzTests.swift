import Foundation
import JSON
import TestSupport
import Testing

@testable import ChatTemplate
@testable import Tokenizer

/// Seeded mutation fuzzing of the tokenizer's regex engine and the chat template interpreter,
/// seeded from the real DeepSeek-V2.5 files.
@Suite struct TokenizerFuzzTests {
    static let config: JSONValue = (try? JSONParser.parse(readFile(Fixtures.tokenizer + "/tokenizer_config.json"))) ?? .null
    static let tokenizer: JSONValue = (try? JSONParser.parse(readFile(Fixtures.tokenizer + "/tokenizer.json"))) ?? .null

    static func readFile(_ path: String) -> [UInt8] { (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? [] }

    @Test func regexEngineSurvivesMutatedPatterns() throws {
        // Every regex of the real pre-tokenizer, and patterns from the unicode categories it uses.
        var patterns: [String] = []
        func collect(_ v: JSONValue) {
            if let r = v["pattern"]?["Regex"]?.stringValue { patterns.append(r) }
            for item in v["pretokenizers"]?.arrayValue ?? [] { collect(item) }
        }
        collect(Self.tokenizer["pre_tokenizer"] ?? .null)
        #expect(!patterns.isEmpty)
        let text = Array("Hello, world! 123 数字 \n\t  emoji 🙂 x=42; ünïcødé".unicodeScalars.map(\.value))
        var m = Mutator(seed: 3)
        // Found so far and fixed: `\\s$+$` (a quantified anchor looped forever without a step count).
        // `$+` matches what `$` matches.
        #expect(try ScalarRegex("\\s$+$").matches(text) == ScalarRegex("\\s$").matches(text))
        let rate = m.run(seeds: patterns.map { Array($0.utf8) }, iterations: 300) { bytes in
            guard let pattern = String(bytes: bytes, encoding: .utf8) else { return }
            // FUZZ_TRACE=1 leaves the last pattern tried in /tmp/fuzz-last.txt (to replay a hang).
            if ProcessInfo.processInfo.environment["FUZZ_TRACE"] != nil { FileManager.default.createFile(atPath: "/tmp/fuzz-last.txt", contents: Data(pattern.utf8)) }
            guard let r = try? ScalarRegex(pattern) else { return }
            _ = r.matches(text)
        }
        print("fuzz: regex \(Int(rate)) execs/s over \(patterns.count) seed patterns")
    }

    /// tokenizer.json itself: a small file cut from the real one (its normalizer, pre-tokenizer,
    /// decoder, added tokens; the first 400 vocabulary entries and the merges among them), so
    /// that a mutation parses in microseconds rather than the 4.6 MB original's tens of ms.
    @Test func tokenizerFileSurvivesMutations() throws {
        guard case .object(var root) = Self.tokenizer, case .object(var model)? = root["model"],
              case .object(let vocab)? = model["vocab"], case .array(let merges)? = model["merges"] else {
            Issue.record("the fixture tokenizer.json has no BPE model")
            return
        }
        var small = JSONObject()
        var kept = Set<String>()
        for (token, id) in vocab.pairs where (id.integerValue ?? .max) < 400 {
            small[token] = id
            kept.insert(token)
        }
        let smallMerges = merges.filter { m in
            let parts = m.stringValue.map { $0.split(separator: " ").map(String.init) } ?? m.arrayValue?.compactMap(\.stringValue) ?? []
            return parts.count == 2 && kept.contains(parts[0]) && kept.contains(parts[1]) && kept.contains(parts[0] + parts[1])
        }
        model["vocab"] = .object(small)
        model["merges"] = .array(smallMerges)
        root["model"] = .object(model)
        let seed = Array(JSONValue.object(root).serialized(pretty: false).utf8)
        let config = Self.readFile(Fixtures.tokenizer + "/tokenizer_config.json")
        let original = try Tokenizer(tokenizerJSON: seed, configJSON: config)
        #expect(!original.encode("Hello, world! 数字 🙂").isEmpty)
        var m = Mutator(seed: 5)
        let rate = m.run(seeds: [seed], iterations: 150) { bytes in
            guard let t = try? Tokenizer(tokenizerJSON: bytes, configJSON: config) else { return }
            let ids = t.encode("Hello, world! 123 数字 \n\t emoji 🙂 x=42;")
            _ = t.decode(ids)
        }
        print("fuzz: tokenizer.json \(Int(rate)) execs/s (\(seed.count) bytes, \(smallMerges.count) merges)")
    }

    @Test func chatTemplateSurvivesMutations() throws {
        let template = try #require(Self.config["chat_template"]?.stringValue)
        let messages: JSONValue = [["role": "system", "content": "Be brief."], ["role": "user", "content": "hi"],
                                   ["role": "assistant", "content": "hello"], ["role": "user", "content": "and?"]]
        var m = Mutator(seed: 4)
        let rate = m.run(seeds: [Array(template.utf8)], iterations: 1500) { bytes in
            guard let source = String(bytes: bytes, encoding: .utf8), let t = try? ChatTemplate(source) else { return }
            _ = try? t.render(messages: messages, addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        }
        print("fuzz: chat template \(Int(rate)) execs/s")
    }
}
