import Failures
/// Why a tokenizer could not be loaded or run. Each case names the file and what was expected.
public enum TokenizerError: Error, Sendable, CustomStringConvertible {
    case missingFile(String)
    case invalidJSON(file: String, reason: String)
    case unsupported(file: String, component: String, type: String)
    case invalid(file: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let f): return "\(f): missing"
        case .invalidJSON(let f, let r): return "\(f): \(r)"
        case .unsupported(let f, let c, let t): return "\(f): unsupported \(c) type \"\(t)\""
        case .invalid(let f, let r): return "\(f): \(r)"
        }
    }
}

extension TokenizerError: DeclaresFailureKind {
    /// tokenizer.json or text the tokenizer refuses: bad input.
    public var failureKind: FailureKind { .input }
}
