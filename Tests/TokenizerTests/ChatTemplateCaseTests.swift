import Foundation
import JSON
import TestSupport
import Testing

@testable import ChatTemplate
@testable import Tokenizer

@Suite struct ChatTemplateCaseTests {
    static let cases = TokFixtures.lines("chat-template-cases.jsonl")
    static let template = try! ChatTemplate(TokFixtures.tokenizer.chatTemplate ?? "")

    @Test func allCasesLoaded() { #expect(Self.cases.count == 54) }

    /// The V2.5 template renders exactly transformers' text, and its ids match.
    @Test func transformersParity() throws {
        for c in Self.cases {
            let name = c["name"]!.stringValue!
            let gen = c["add_generation_prompt"]!.boolValue!
            let text = try Self.template.render(messages: c["messages"]!, addGenerationPrompt: gen,
                                                bosToken: TokFixtures.tokenizer.bosToken, eosToken: TokFixtures.tokenizer.eosToken)
            #expect(text == c["text"]!.stringValue!, "\(name) gen=\(gen): \(text.debugDescription)")
            let ids = TokFixtures.tokenizer.encode(text, addSpecialTokens: false)
            #expect(ids == TokFixtures.ints(c["ids"]), "\(name) gen=\(gen) ids")
        }
    }
}
