/// The kinds of failure, one exit code each, the same whichever command meets them
/// (README "Conventions", `Tests/CLITests/ExitCodeCLITests.swift`).
public enum FailureKind: String, Sendable {
    /// The checkpoint's data is damaged: a file truncated or malformed, a header or index that
    /// contradicts the files, a missing or misplaced tensor, a wrong shape or dtype, NaN/Inf, a
    /// packed frame or manifest checksum that does not match. What `verify` reports. Exit 1.
    case damaged
    /// Bad usage or input outside the checkpoint's data: flags, config.json values, templates,
    /// tokenizer files, text and statistics files, outputs that may not be written. Exit 2.
    case input
    /// The system failed a read or write (EIO, ENOSPC, permissions). Exit 3.
    case io

    public var exitCode: Int32 {
        switch self {
        case .damaged: return 1
        case .input: return 2
        case .io: return 3
        }
    }

    /// An error's kind: the one it declares, else bad input (errors from outside dsconv's
    /// modules, e.g. a flag parser's).
    public init(_ error: Error) {
        self = (error as? DeclaresFailureKind)?.failureKind ?? .input
    }
}

/// An error type that says which kind of failure each of its cases is: the exit code is decided
/// where the error is defined, not by the command line.
public protocol DeclaresFailureKind: Error {
    var failureKind: FailureKind { get }
}
