import ChatTemplate
import JSON
import Testing

/// jinja2 environment defaults transformers relies on, and the sandbox's range limit.
@Suite struct TemplateDefaultsTests {
    let messages: JSONValue = [["role": "user", "content": "hi"]]

    func render(_ source: String) throws -> String {
        try ChatTemplate(source).render(messages: messages, addGenerationPrompt: false, bosToken: "<s>", eosToken: "</s>")
    }

    @Test func oneTrailingNewlineOfTheSourceIsDropped() throws {
        // jinja2: keep_trailing_newline=False drops exactly one; newlines are normalized to \n.
        #expect(try render("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}\n") == "<s>hi")
        #expect(try render("{{ bos_token }}hi\n\n") == "<s>hi\n")
        #expect(try render("a\r\nb\r\n") == "a\nb")
    }

    @Test func hugeRangesAreRefusedNotAllocated() throws {
        #expect(try render("{% for i in range(3) %}{{ i }}{% endfor %}") == "012")
        #expect(throws: TemplateError.self) { try render("{% for i in range(1000000000) %}x{% endfor %}") }
        #expect(throws: TemplateError.self) { try render("{{ range(0, 10000000000000, 1) | length }}") }
    }
}
