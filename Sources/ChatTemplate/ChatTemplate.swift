import Foundation
import JSON

/// A chat template (the Jinja2 `chat_template` of tokenizer_config.json), rendered as transformers'
/// `apply_chat_template` renders it: a sandbox with `trim_blocks` and `lstrip_blocks`, the
/// variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools` and any extra
/// ones, and `raise_exception`. Unsupported constructs are errors naming their line and column.
public struct ChatTemplate: @unchecked Sendable {
    private let nodes: [Node]
    public let source: String

    /// Longest list `range()` may build (jinja2's sandbox caps it at 100 000; so do we).
    public static let maxRange = 100_000

    public init(_ source: String) throws {
        self.source = source
        let pieces = try Lexer(trimBlocks: true, lstripBlocks: true).pieces(Self.jinjaSource(source))
        nodes = try Parser.parse(pieces)
    }

    /// jinja2's environment defaults: newlines normalized to "\n" (`newline_sequence`), and one
    /// trailing newline of the source dropped (`keep_trailing_newline=False`).
    static func jinjaSource(_ source: String) -> String {
        var s = source.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        if s.hasSuffix("\n") { s.removeLast() }
        return s
    }

    /// Renders `messages` (JSON array of message objects). `tools` is passed when given.
    public func render(messages: JSONValue, addGenerationPrompt: Bool, bosToken: String?, eosToken: String?,
                       tools: JSONValue? = nil, extra: [String: JSONValue] = [:]) throws -> String {
        var globals: [String: Value] = [
            "messages": Value(json: messages),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "raise_exception": .builtin(Builtin(name: "raise_exception") { args, _ in
                throw TemplateError(args.first?.printed ?? "error", at: Location(line: 0, column: 0), raised: true)
            }),
            "namespace": .builtin(Builtin(name: "namespace") { args, kwargs in
                var attrs: [String: Value] = [:]
                if case .dict(let d)? = args.first { for (k, v) in d { attrs[k] = v } }
                for (k, v) in kwargs { attrs[k] = v }
                return .namespace(Namespace(attrs))
            }),
            "range": .builtin(Builtin(name: "range") { args, _ in
                let ints = args.compactMap { if case .int(let n) = $0 { return n }; return nil }
                guard ints.count == args.count, !ints.isEmpty else { throw TemplateError("range() needs integers", at: Location(line: 0, column: 0)) }
                let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count > 2 ? ints[2] : 1)
                guard step != 0 else { throw TemplateError("range() step must not be zero", at: Location(line: 0, column: 0)) }
                let span = Double(stop) - Double(start)
                guard span / Double(step) <= Double(ChatTemplate.maxRange) else {
                    throw TemplateError("range() of more than \(ChatTemplate.maxRange) items is refused (jinja2's sandbox limit)", at: Location(line: 0, column: 0))
                }
                return .list(Array(stride(from: start, to: stop, by: step)).map { .int($0) })
            }),
            "strftime_now": .builtin(Builtin(name: "strftime_now") { args, _ in
                let f = DateFormatter()
                f.dateFormat = "yyyy-MM-dd"
                _ = args
                return .string(f.string(from: Date()))
            }),
        ]
        if let bosToken { globals["bos_token"] = .string(bosToken) }
        if let eosToken { globals["eos_token"] = .string(eosToken) }
        if let tools { globals["tools"] = Value(json: tools) }
        for (k, v) in extra { globals[k] = Value(json: v) }
        return try Interpreter(globals: globals).render(nodes)
    }
}
