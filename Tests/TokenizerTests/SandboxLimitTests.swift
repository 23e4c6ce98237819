import Foundation
import JSON
import Testing

@testable import ChatTemplate
@testable import Tokenizer

/// Chat templates and tokenizer patterns come from downloaded repositories: every class of
/// runaway input stops with an error naming the limit — no crash, hang or huge allocation.
@Suite struct SandboxLimitTests {
    let messages: JSONValue = [["role": "user", "content": "hi"]]

    func render(_ source: String) throws -> String {
        try ChatTemplate(source).render(messages: messages, addGenerationPrompt: false, bosToken: "<s>", eosToken: "</s>")
    }

    func refuses(_ source: String, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try render(source)
            Issue.record("rendered: \(source.prefix(60))", sourceLocation: sourceLocation)
        } catch {
            #expect("\(error)".contains(message), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func templateLimits() throws {
        // Recursion: a macro calling itself.
        refuses("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested deeper than")
        // Nested loops: 10⁵ × 10⁵ iterations.
        refuses("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loop iterations")
        // Output and string size.
        refuses("{{ 'a' * 10000000000 }}", "sandbox limit")
        refuses("{% for i in range(1000) %}{{ 'x' * 100000 }}{% endfor %}", "MiB")
        refuses("{{ [1, 2] * 10000000000 }}", "items")
        // Concatenation doubling a string (or list) in a loop: bounded like repetition.
        refuses("{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}", "MiB")
        refuses("{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}", "MiB")
        refuses("{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}", "items")
        // Integers beyond 64 bits: refused, never wrapped or trapped.
        refuses("{{ 9223372036854775807 + 1 }}", "overflow")
        refuses("{{ 10 ** 10 ** 10 }}", "overflow")
        refuses("{{ -9223372036854775807 - 2 }}", "overflow")
        refuses("{{ 99999999999999999999 }}", "invalid number")
        // Parser nesting.
        refuses("{{ " + String(repeating: "(", count: 10_000) + "1" + String(repeating: ")", count: 10_000) + " }}", "nested deeper")
        refuses(String(repeating: "{% if true %}", count: 10_000) + String(repeating: "{% endif %}", count: 10_000), "nested deeper")
        refuses("{{ " + String(repeating: "not ", count: 10_000) + "true }}", "nested deeper")
        // Within the limits, Python's answers.
        #expect(try render("{{ 7 // -2 }} {{ -7 % 3 }} {{ 2 ** 62 }} {{ 'ab' * 3 }}") == "-4 2 4611686018427387904 ababab")
        #expect(try render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}") == "54321")
    }

    @Test func regexLimits() throws {
        // Counted repetition beyond Oniguruma's 100000, and counts nesting into a huge program.
        #expect(throws: ScalarRegex.ParseError.self) { try ScalarRegex("a{1000000000}") }
    }

    @Test func regexProgramSize() throws {
        #expect(throws: ScalarRegex.ParseError.self) { try ScalarRegex("(?:a{1000}){1000}b{5}") }
    }

    @Test func regexRest() throws {
        #expect(throws: ScalarRegex.ParseError.self) { try ScalarRegex("a{5,2}") }
        // Nesting.
        #expect(throws: ScalarRegex.ParseError.self) {
            try ScalarRegex(String(repeating: "(", count: 50_000) + "a" + String(repeating: ")", count: 50_000))
        }
    }

    @Test func regexBacktrackingIsBounded() throws {
        // Catastrophic backtracking is bounded: (a+)+$ against 100 a's and a b, in well under a second.
        let r = try ScalarRegex("(a+)+$")
        let text = Array((String(repeating: "a", count: 100) + "b").unicodeScalars.map(\.value))
        let start = Date()
        #expect(r.matches(text).isEmpty)
        #expect(Date().timeIntervalSince(start) < 2)
        // The same engine still finds what it should after the memo switches on.
        let ok = Array((String(repeating: "a", count: 100)).unicodeScalars.map(\.value))
        #expect(r.matches(ok) == [0..<100])
    }
}
