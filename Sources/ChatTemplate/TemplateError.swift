import Failures
/// A template that cannot be parsed or rendered: what went wrong and where (1-based line, column).
public struct TemplateError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let line: Int
    public let column: Int
    /// `raise_exception(...)` from the template itself.
    public let raisedByTemplate: Bool

    init(_ message: String, at location: Location, raised: Bool = false) {
        self.message = message
        line = location.line
        column = location.column
        raisedByTemplate = raised
    }

    public var description: String {
        raisedByTemplate ? "chat template raised: \(message) (line \(line), column \(column))"
            : "chat template, line \(line), column \(column): \(message)"
    }
}

struct Location: Sendable {
    var line: Int
    var column: Int
}

extension TemplateError: DeclaresFailureKind {
    /// A chat template that does not parse or exceeds the sandbox: bad input.
    public var failureKind: FailureKind { .input }
}
