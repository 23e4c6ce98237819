import Foundation
import JSON
import TestSupport
import Testing

@testable import Tokenizer

enum TokFixtures {
    static let root = Fixtures.root

    static let tokenizer: Tokenizer = try! Tokenizer(directory: root + "/deepseek-v2.5-tokenizer")

    static func lines(_ name: String) -> [JSONValue] {
        let text = (try? String(contentsOfFile: root + "/" + name, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
    }

    static func ints(_ v: JSONValue?) -> [Int] { v?.arrayValue?.compactMap { $0.integerValue.map(Int.init) } ?? [] }
}

@Suite struct TokenizerCaseTests {
    static let cases = TokFixtures.lines("tokenizer-cases.jsonl")

    @Test func allCasesLoaded() { #expect(Self.cases.count == 364) }

    /// Every reference string: ids without and with BOS, decode with and without special tokens.
    @Test func hfParity() {
        var failures = 0
        for (i, c) in Self.cases.enumerated() {
            let text = c["text"]!.stringValue!
            let ids = TokFixtures.tokenizer.encode(text, addSpecialTokens: false)
            let expected = TokFixtures.ints(c["ids"])
            if ids != expected {
                failures += 1
                if failures <= 15 { Issue.record("case \(i) [\(c["category"]!.stringValue!)] \(text.debugDescription): \(ids) vs \(expected)") }
            }
            #expect(TokFixtures.tokenizer.encode(text) == TokFixtures.ints(c["ids_with_bos"]), "case \(i) with BOS")
            let decoded = TokFixtures.tokenizer.decode(TokFixtures.ints(c["ids"]))
            #expect(decoded == c["decoded"]!.stringValue!, "case \(i) decode \(decoded.debugDescription)")
            let skipped = TokFixtures.tokenizer.decode(TokFixtures.ints(c["ids"]), skipSpecialTokens: true)
            #expect(skipped == c["decoded_skip_special"]!.stringValue!, "case \(i) decode skip special \(skipped.debugDescription)")
        }
        #expect(failures == 0, "\(failures) of \(Self.cases.count) cases differ")
    }
}
