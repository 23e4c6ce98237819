import JSON
import Primitives

/// One file of an output directory as its manifest records it.
public struct FileRecord: Sendable, Equatable {
    public let name: String
    public let size: Int
    public let sha256: String

    public init(name: String, size: Int, sha256: String) {
        self.name = name
        self.size = size
        self.sha256 = sha256
    }

    /// Hashes `directory/name` once, 64 MiB at a time, releasing pages as it goes.
    public init(hashing name: String, in directory: String) throws(SafeTensorsError) {
        let mapped = try MappedFile(path: directory + "/" + name)
        var h = SHA256()
        var offset = 0
        while offset < mapped.size {
            let end = min(mapped.size, offset + (64 << 20))
            h.update(UnsafeRawBufferPointer(rebasing: mapped.bytes[offset..<end]))
            mapped.adviseDone(offset..<end)
            offset = end
        }
        self.init(name: name, size: mapped.size, sha256: h.finalizeHex())
    }

    /// Every regular file of a directory not in `except`, in name order.
    public static func hashAll(in directory: String, except: Set<String> = []) throws(SafeTensorsError) -> [FileRecord] {
        var out: [FileRecord] = []
        for name in try listDirectory(directory).sorted() where !except.contains(name) && !name.hasPrefix(".") {
            guard isRegularFile(directory + "/" + name) else { continue }
            out.append(try FileRecord(hashing: name, in: directory))
        }
        return out
    }

    public var json: JSONValue { ["name": .string(name), "size": JSONValue(size), "sha256": .string(sha256)] }

    /// The file on disk against the record: nil when it matches, else what differs.
    public func mismatch(in directory: String) -> String? {
        guard pathExists(directory + "/" + name) else { return "missing (listed in the manifest)" }
        guard let actual = try? FileRecord(hashing: name, in: directory) else { return "unreadable" }
        guard actual.size == size, actual.sha256 == sha256 else {
            return "sha256 \(actual.sha256) (\(actual.size) bytes), the manifest says \(sha256) (\(size) bytes)"
        }
        return nil
    }

    /// A file or directory name that stays inside its directory: no separators, not `.`/`..`, no NUL.
    public static func isPlainName(_ n: String) -> Bool {
        !n.isEmpty && n != "." && n != ".." && !n.contains("/") && !n.contains("\u{0}")
    }

    /// A sha256 as manifests write it: 64 lowercase hex digits.
    public static func isDigest(_ h: String) -> Bool {
        h.utf8.count == 64 && h.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}

/// The envelope every dsconv manifest shares: `{"format", "version", "layout", "files": [...]}`
/// plus the fields of its kind (Formats/output-directories.md). Written last into an output, so
/// a directory without it is not a finished output.
public struct OutputManifest: Sendable {
    public let path: String
    public let json: JSONValue
    public let format: String
    public let version: Int
    /// How the tensors are named and laid out (e.g. "hf", "deepseek"); nil where the format has one layout.
    public let layout: String?

    /// Reads `directory/fileName`: I/O failures stay I/O errors, anything else is a manifest
    /// error naming the file and the field. The format must match and the version be supported.
    public init(directory: String, fileName: String, format: String, versions: ClosedRange<Int>) throws(SafeTensorsError) {
        path = directory + "/" + fileName
        let bytes = try readWholeFile(path)
        do { json = try JSONParser.parse(bytes) } catch {
            throw .manifestInvalid(file: path, reason: "not valid JSON: \(error.description)")
        }
        guard case .object = json else { throw .manifestInvalid(file: path, reason: "not a JSON object") }
        guard json["format"]?.stringValue == format else {
            throw .manifestInvalid(file: path, reason: "\"format\" is \(json["format"]?.serialized() ?? "missing"), expected \"\(format)\"")
        }
        guard let v = json["version"]?.integerValue else { throw .manifestInvalid(file: path, reason: "missing \"version\"") }
        guard versions.contains(Int(v)) else {
            throw .manifestInvalid(file: path, reason: "version \(v) is not supported (this dsconv reads \(format) version \(versions.lowerBound == versions.upperBound ? "\(versions.lowerBound)" : "\(versions.lowerBound)–\(versions.upperBound)"))")
        }
        self.format = format
        version = Int(v)
        layout = json["layout"]?.stringValue
    }

    public func fail(_ reason: String) -> SafeTensorsError { .manifestInvalid(file: path, reason: reason) }

    /// A list of `{name, size, sha256}` records; every entry must be well formed (none is skipped).
    public func files(_ value: JSONValue?, field: String, allowEmpty: Bool = false) throws(SafeTensorsError) -> [FileRecord] {
        guard let list = value?.arrayValue else { throw fail("missing \"\(field)\" list") }
        if list.isEmpty && !allowEmpty { throw fail("\"\(field)\" is empty") }
        var out: [FileRecord] = []
        for (i, f) in list.enumerated() {
            guard let n = f["name"]?.stringValue, FileRecord.isPlainName(n), let s = f["size"]?.integerValue, s >= 0,
                  let h = f["sha256"]?.stringValue, FileRecord.isDigest(h)
            else { throw fail("\(field)[\(i)]: a plain file name, a size and a sha256 are required") }
            out.append(FileRecord(name: n, size: Int(s), sha256: h))
        }
        return out
    }
}

extension OutputDirectory {
    /// Writes a manifest (last, atomically: temp file, fsync, rename).
    public func writeManifest(_ name: String, _ json: JSONValue) throws(SafeTensorsError) {
        try writeFileAtomically(path(name), json.serialized(pretty: true) + "\n")
    }
}
