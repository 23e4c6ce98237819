import JSON

/// One thing wrong with a checkpoint.
public struct Problem: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case missingTensor = "missing_tensor"
        case unexpectedTensor = "unexpected_tensor"
        case wrongShape = "wrong_shape"
        case wrongDType = "wrong_dtype"
        case nonFinite = "non_finite"
        case tokenizer
        case checksum
        case layout
    }

    public let kind: Kind
    public let file: String
    public let tensor: String
    public let message: String

    public init(kind: Kind, file: String, tensor: String, message: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    /// Names from files are printed with control characters escaped (a tensor name can hold anything).
    public var description: String {
        tensor.isEmpty ? "\(Problem.printable(file)): \(message)" : "\(Problem.printable(file)): tensor \(Problem.printable(tensor)): \(message)"
    }

    public static func printable(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if u.value < 0x20 || u.value == 0x7f || (0x80..<0xa0).contains(u.value) {
                let hex = String(u.value, radix: 16)
                out += "\\u{" + (hex.count == 1 ? "0" + hex : hex) + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    public var json: JSONValue {
        ["kind": .string(kind.rawValue), "file": .string(file), "tensor": .string(tensor), "message": .string(message)]
    }
}

public struct IntegrityReport: Sendable {
    public var problems: [Problem] = []
    public var tensorsChecked = 0
    public var bytesScanned = 0
    public var ok: Bool { problems.isEmpty }

    public init() {}

    public var json: JSONValue {
        // exit_code: verify's, 1 when anything is damaged (the same code every command gives it).
        ["ok": .bool(ok), "exit_code": JSONValue(ok ? 0 : 1), "problems": .array(problems.map(\.json)),
         "tensors_checked": JSONValue(tensorsChecked), "bytes_scanned": JSONValue(bytesScanned)]
    }
}

public func basename(_ path: String) -> String {
    path.split(separator: "/").last.map(String.init) ?? path
}
