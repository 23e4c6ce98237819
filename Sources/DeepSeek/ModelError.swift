import Failures
/// Errors of the model layer: configuration, schema and checkpoint contents.
public enum ModelError: Error, Sendable, CustomStringConvertible {
    case missingFile(file: String, what: String)
    case unreadable(file: String, reason: String)
    case invalidConfig(file: String, field: String, message: String)
    case unsupported(String)
    case badTensor(file: String, tensor: String, message: String)
    case badInput(String)

    public var description: String {
        switch self {
        case .missingFile(let f, let what): return "\(f): missing (\(what))"
        case .unreadable(_, let reason): return reason
        case .invalidConfig(let f, let field, let m): return field.isEmpty ? "\(f): \(m)" : "\(f): field \"\(field)\": \(m)"
        case .unsupported(let m): return m
        case .badTensor(let f, let t, let m): return "\(f): tensor \(t): \(m)"
        case .badInput(let m): return m
        }
    }
}

extension ModelError: DeclaresFailureKind {
    public var failureKind: FailureKind {
        switch self {
        case .unreadable: return .io
        case .badTensor: return .damaged
        default: return .input
        }
    }
}
