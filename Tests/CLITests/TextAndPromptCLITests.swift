import Foundation
import JSON
import TestSupport
import Testing

@Suite struct TextAndPromptCLITests {
    static let reference: JSONValue = {
        let text = (try? String(contentsOfFile: CLI.fixtures + "/tiny-dsv2.5/reference.json", encoding: .utf8)) ?? ""
        return (try? JSONParser.parse(text)) ?? .null
    }()

    static func ints(_ v: JSONValue?) -> [Int] { v?.arrayValue?.compactMap { $0.integerValue.map(Int.init) } ?? [] }

    @Test func verifyPromptChatMatchesTransformersGreedy() throws {
        let p0 = try #require(Self.reference["prompts"]?.arrayValue?[0])
        let content = try #require(p0["messages"]?.arrayValue?.first?["content"]?.stringValue)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["verify", CLI.fixtures + "/tiny-dsv2.5", "--prompt", content, "--max-new-tokens", "16",
                             "--reference", CLI.fixtures + "/tiny-dsv2.5", "--logits-out", dir + "/logits.safetensors", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        let j = try JSONParser.parse(r.stdout)
        #expect(Self.ints(j["prompt_ids"]) == Self.ints(p0["input_ids"]))
        let expected = Self.ints(p0["greedy"]?["new_ids"])
        #expect(Self.ints(j["generated_ids"]) == expected)
        #expect(j["text"]?.stringValue == p0["greedy"]?["text"]?.stringValue)
        // --reference compares two runs of the engine (one model here, so they must agree exactly).
        #expect(j["reference"]?["top1_agreement"]?.doubleValue == 1)
        #expect(j["kv_bytes_per_token"] == JSONValue(3 * (32 + 8) * 4))
        #expect((j["prefill_tokens_per_second"]?.doubleValue ?? 0) > 0)
        // --logits-out: one F32 tensor, the logits at the last prompt position.
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/logits.safetensors"))
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONParser.parse([UInt8](data[8..<(8 + n)]))
        #expect(header["logits"]?["dtype"] == "F32")
        #expect(header["logits"]?["shape"] == [102400])
        let top = try #require(Self.reference["prompts"]?.arrayValue?[0]["topk"]?["ids"]?.arrayValue?.last)
        let logits = data[(8 + n)...].withUnsafeBytes { b in (0..<102400).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        let argmax = logits.indices.max { logits[$0] < logits[$1] }!
        #expect(argmax == Self.ints(top).first)
        // Against transformers' float32 logits at the same position (the chat-rendered prompt 0):
        // relative L2 within 1e-4, the forward-parity tolerance.
        let refData = try Data(contentsOf: URL(fileURLWithPath: CLI.fixtures + "/tiny-dsv2.5/reference-logits.safetensors"))
        let rn = refData.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let refHeader = try JSONParser.parse([UInt8](refData[8..<(8 + rn)]))
        let begin64: Int64 = try #require(refHeader["prompt_0"]?["data_offsets"]?.arrayValue?.first?.integerValue)
        let begin = 8 + rn + Int(begin64)
        let ref: [Float] = refData[begin...].withUnsafeBytes { b in (0..<102400).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        var diff = 0.0, norm = 0.0
        for (a, b) in zip(logits, ref) {
            diff += Double(a - b) * Double(a - b)
            norm += Double(b) * Double(b)
        }
        let relative: Double = (diff / norm).squareRoot()
        #expect(relative <= 1e-4, "relative L2 vs transformers \(relative)")
    }

    @Test func verifyPromptRaw() throws {
        let p3 = try #require(Self.reference["prompts"]?.arrayValue?[3])
        let text = try #require(p3["text"]?.stringValue?.replacingOccurrences(of: "<｜begin▁of▁sentence｜>", with: ""))
        let r = try CLI.run(["verify", CLI.fixtures + "/tiny-dsv2.5", "--prompt", text, "--raw", "--max-new-tokens", "16", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        let j = try JSONParser.parse(r.stdout)
        #expect(Self.ints(j["prompt_ids"]) == Self.ints(p3["input_ids"]))
        #expect(Self.ints(j["generated_ids"]) == Self.ints(p3["greedy"]?["new_ids"]))
        #expect(j["reference"] == JSONValue.null)
    }

    @Test func tokenizeModes() throws {
        let model = CLI.fixtures + "/deepseek-v2.5-tokenizer"
        let one = try CLI.run(["tokenize", "--model", model, "--json", "Hello, world!"])
        #expect(one.code == 0, "\(one.stderr)")
        let j = try JSONParser.parse(one.stdout)
        #expect(j["ids"]?.arrayValue?.first == 100000)
        let plain = try CLI.run(["tokenize", "--model", model, "--no-special-tokens", "Hello, world!"])
        #expect(plain.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").count == (j["ids"]?.arrayValue?.count ?? 0) - 1)

        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "\"Hello, world!\"\n{\"text\": \"你好\"}\n".write(toFile: dir + "/in.jsonl", atomically: true, encoding: .utf8)
        let batch = try CLI.run(["tokenize", "--model", model, "--jsonl", dir + "/in.jsonl"])
        #expect(batch.code == 0)
        let lines = batch.stdout.split(separator: "\n").map { try? JSONParser.parse(String($0)) }
        #expect(lines.count == 2)
        #expect(lines[0]?["ids"] == j["ids"])

        try #"[{"role": "user", "content": "Hello!"}]"#.write(toFile: dir + "/m.json", atomically: true, encoding: .utf8)
        let chat = try CLI.run(["tokenize", "--model", model, "--messages", dir + "/m.json", "--add-generation-prompt", "--json"])
        #expect(chat.code == 0, "\(chat.stderr)")
        let c = try JSONParser.parse(chat.stdout)
        #expect(c["text"] == "<｜begin▁of▁sentence｜><｜User｜>Hello!<｜Assistant｜>")
        #expect(c["ids"] == [100000, 100006, 17464, 0, 100007])
        let render = try CLI.run(["tokenize", "--model", model, "--messages", dir + "/m.json", "--render-only"])
        #expect(render.stdout == "<｜begin▁of▁sentence｜><｜User｜>Hello!")

        let back = try CLI.run(["detokenize", "--model", model, "100000", "17464", "0", "--skip-special-tokens"])
        #expect(back.stdout == "Hello!\n")

        let bad = try CLI.run(["tokenize", "--model", dir, "x"])
        #expect(bad.code == 2)
        #expect(bad.stderr.contains("tokenizer.json"))
    }
}

@Suite struct TextBadInputCLITests {
    @Test func messagesFileMustBeAListOfRoleContent() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = CLI.fixtures + "/deepseek-v2.5-tokenizer"
        for (i, bad) in [#"{"role": "user"}"#, #"[{"content": "x"}]"#, #"["hello"]"#, "not json"].enumerated() {
            try bad.write(toFile: dir + "/m\(i).json", atomically: true, encoding: .utf8)
            let r = try CLI.run(["tokenize", "--model", model, "--messages", dir + "/m\(i).json"])
            #expect(r.code == 2, "case \(i): \(r.stderr)")
            #expect(r.stderr.contains("m\(i).json"), "case \(i): \(r.stderr)")
        }
    }
}

/// Prompts beyond the fixture's, with greedy continuations made by transformers 5.24 / torch 2.15
/// through `Scripts/make-prompt-reference.py` (the fixtures' recipe; it first reproduces prompt 0).
@Suite struct TransformersPromptReferenceTests {
    @Test func whoAreYouMatchesTransformers() throws {
        let ref = try JSONParser.parse(String(contentsOfFile: CLI.fixtures + "/prompt-references.json", encoding: .utf8))
        let cases = try #require(ref["cases"]?.arrayValue)
        #expect(cases.count == 2)
        for c in cases {
            let prompt = try #require(c["prompt"]?.stringValue)
            let r = try CLI.run(["verify", CLI.fixtures + "/tiny-dsv2.5", "--prompt", prompt, "--max-new-tokens", "16", "--json"])
            #expect(r.code == 0, "\(r.stderr)")
            let j = try JSONParser.parse(r.stdout)
            #expect(j["prompt_ids"] == c["input_ids"], "\(prompt): prompt ids")
            #expect(j["generated_ids"] == c["new_ids"], "\(prompt): greedy continuation")
            #expect(j["text"] == c["text"], "\(prompt): text")
        }
    }
}
