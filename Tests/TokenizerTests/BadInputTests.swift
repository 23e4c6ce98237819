import Foundation
import JSON
import TestSupport
import Testing

@testable import ChatTemplate
@testable import Tokenizer

@Suite struct TokenizerBadInputTests {
    static let real: [UInt8] = [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: TokFixtures.root + "/deepseek-v2.5-tokenizer/tokenizer.json"))) ?? Data())

    func load(_ text: String) throws -> Tokenizer { try Tokenizer(tokenizerJSON: Array(text.utf8), configJSON: nil) }

    @Test func malformedJSONNamesTheFile() {
        #expect { try Tokenizer(tokenizerJSON: Array(Self.real.prefix(5000)), configJSON: nil, file: "x/tokenizer.json") } throws: { e in
            "\(e)".contains("x/tokenizer.json")
        }
    }

    @Test func unknownComponentIsNamed() throws {
        var text = String(decoding: Self.real, as: UTF8.self)
        text = text.replacingOccurrences(of: "\"type\": \"Digits\"", with: "\"type\": \"FancyDigits\"")
            .replacingOccurrences(of: "\"type\":\"Digits\"", with: "\"type\":\"FancyDigits\"")
        #expect(text.contains("FancyDigits"))
        #expect { try load(text) } throws: { e in "\(e)".contains("FancyDigits") && "\(e)".contains("pre_tokenizer") }
        let model = #"{"model": {"type": "Unigram", "vocab": []}}"#
        #expect { try load(model) } throws: { e in "\(e)".contains("Unigram") }
    }

    @Test func invalidUTF8IsTokenizedByteLevel() throws {
        // Invalid bytes reach the tokenizer as U+FFFD (as Python's errors="replace" decoding does)
        // and are encoded through the byte-level alphabet, never rejected.
        let text = String(decoding: [0x61, 0xFF, 0x62], as: UTF8.self)
        let ids = TokFixtures.tokenizer.encode(text, addSpecialTokens: false)
        #expect(!ids.isEmpty)
        #expect(TokFixtures.tokenizer.decode(ids) == "a\u{FFFD}b")
    }

    @Test func templateSyntaxErrorsGiveLineAndColumn() {
        #expect { try ChatTemplate("{% if x %}\nok\n{{ y + }}\n{% endif %}") } throws: { e in
            guard let t = e as? TemplateError else { return false }
            return t.line == 3 && t.column > 1
        }
        #expect { try ChatTemplate("{% for m in messages %}{{ m }}") } throws: { e in "\(e)".contains("endfor") }
        #expect { try ChatTemplate("{% call foo() %}{% endcall %}") } throws: { e in "\(e)".contains("call") && "\(e)".contains("line 1") }
        #expect { try ChatTemplate("{{ x | wordwrap }}").render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil) } throws: { e in
            "\(e)".contains("wordwrap")
        }
    }

    @Test func raiseExceptionAndUndefined() throws {
        let t = try ChatTemplate("{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}ok")
        #expect(try t.render(messages: [["role": "user", "content": "hi"]], addGenerationPrompt: false, bosToken: nil, eosToken: nil) == "ok")
        #expect { try t.render(messages: [["role": "system", "content": "x"]], addGenerationPrompt: false, bosToken: nil, eosToken: nil) } throws: { e in
            (e as? TemplateError)?.raisedByTemplate == true && "\(e)".contains("first message must be user")
        }
        let concat = try ChatTemplate("{{ 'a' + message.content }}")
        #expect(throws: TemplateError.self) { try concat.render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil) }
    }
}
