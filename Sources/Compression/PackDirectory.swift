import Foundation
import JSON
import Kernels
import SafeTensors

/// `dsconv-pack-manifest.json`: written last into a packed directory.
public struct PackManifest: Sendable {
    public static let fileName = "dsconv-pack-manifest.json"

    public struct Packed: Sendable {
        public let name: String
        public let size: Int
        public let sha256: String
        public let packed: String
        public let packedSize: Int
        public let packedSHA256: String

        public init(name: String, size: Int, sha256: String, packed: String, packedSize: Int, packedSHA256: String) {
            self.name = name
            self.size = size
            self.sha256 = sha256
            self.packed = packed
            self.packedSize = packedSize
            self.packedSHA256 = packedSHA256
        }
    }

    /// A file copied as it is.
    public typealias Copied = FileRecord

    public let level: Int
    public let transform: FrameTransform
    public let files: [Packed]
    public let copied: [Copied]

    public var json: JSONValue {
        ["format": .string(Self.format), "version": JSONValue(Self.version), "level": JSONValue(level), "bf16_transform": .string(transform.rawValue),
         "files": .array(files.map { ["name": .string($0.name), "size": JSONValue($0.size), "sha256": .string($0.sha256),
                                      "packed": .string($0.packed), "packed_size": JSONValue($0.packedSize), "packed_sha256": .string($0.packedSHA256)] }),
         "copied": .array(copied.map(\.json))]
    }

    public init(level: Int, transform: FrameTransform, files: [Packed], copied: [Copied]) {
        self.level = level
        self.transform = transform
        self.files = files
        self.copied = copied
    }

    public static let format = "dsconv-pack"
    public static let version = 1

    /// Reads and checks a manifest: I/O failures stay I/O errors; every entry must be well formed.
    public init(directory: String) throws(SafeTensorsError) {
        let m = try OutputManifest(directory: directory, fileName: Self.fileName, format: Self.format, versions: Self.version...Self.version)
        let json = m.json
        guard let fileList = json["files"]?.arrayValue, !fileList.isEmpty else { throw m.fail("missing or empty \"files\"") }
        level = Int(json["level"]?.integerValue ?? 0)
        guard let t = FrameTransform(rawValue: json["bf16_transform"]?.stringValue ?? FrameTransform.none.rawValue) else {
            throw m.fail("\"bf16_transform\" \(json["bf16_transform"]?.serialized() ?? "") is not one of \(FrameTransform.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        transform = t
        var files: [Packed] = []
        for (i, f) in fileList.enumerated() {
            guard let n = f["name"]?.stringValue, let s = f["size"]?.integerValue, s >= 0, let h = f["sha256"]?.stringValue,
                let p = f["packed"]?.stringValue, let ps = f["packed_size"]?.integerValue, ps >= 0, let ph = f["packed_sha256"]?.stringValue,
                FileRecord.isPlainName(n), FileRecord.isPlainName(p), FileRecord.isDigest(h), FileRecord.isDigest(ph)
            else { throw m.fail("files[\(i)]: name, size, sha256, packed, packed_size and packed_sha256 are required (plain names, hex digests)") }
            files.append(Packed(name: n, size: Int(s), sha256: h, packed: p, packedSize: Int(ps), packedSHA256: ph))
        }
        self.files = files
        copied = try m.files(json["copied"] ?? .array([]), field: "copied", allowEmpty: true)
    }

    public static func isPacked(_ directory: String) -> Bool { pathExists(directory + "/" + fileName) }
}

/// Packs and unpacks whole checkpoint directories.
public enum PackDirectory {
    /// The weight files (`weightFiles`, names in `source`) are packed; every other regular file is
    /// copied as it is.
    public static func pack(_ source: String, weightFiles: Set<String>, into out: OutputDirectory, options: PackOptions,
                            progress: ((String, PackedFileSummary) -> Void)? = nil) throws -> PackManifest {
        var packed: [PackManifest.Packed] = []
        var copied: [PackManifest.Copied] = []
        for name in try listDirectory(source).sorted() where !name.hasPrefix(".") {
            let path = source + "/" + name
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            if weightFiles.contains(name) {
                let s = try Packer.pack(path, to: out.path(name + ".zst"), options: options)
                packed.append(.init(name: name, size: s.originalSize, sha256: s.originalSHA256, packed: name + ".zst",
                                    packedSize: s.packedSize, packedSHA256: s.packedSHA256))
                progress?(name, s)
            } else {
                try copyFile(from: path, to: out.path(name))
                copied.append(try FileRecord(hashing: name, in: source))
            }
        }
        let manifest = PackManifest(level: Int(options.level), transform: options.bf16Transform, files: packed, copied: copied)
        try out.writeManifest(PackManifest.fileName, manifest.json)
        return manifest
    }

    /// Restores every file byte for byte and checks each against the manifest's sha256.
    public static func unpack(_ directory: String, into out: OutputDirectory, threads: Int, progress: ((String) -> Void)? = nil) throws {
        let manifest = try PackManifest(directory: directory)
        for f in manifest.files {
            let packed = try PackedFile(path: directory + "/" + f.packed)
            let digest = try Packer.unpack(packed, to: out.path(f.name), threads: threads)
            guard digest == f.sha256 else {
                throw CompressionError.format(file: directory + "/" + f.packed,
                                              message: "restored \(f.name) has sha256 \(digest), the manifest says \(f.sha256)")
            }
            progress?(f.name)
        }
        for c in manifest.copied {
            if let problem = c.mismatch(in: directory) { throw CompressionError.format(file: directory + "/" + c.name, message: problem) }
            try copyFile(from: directory + "/" + c.name, to: out.path(c.name))
        }
        // A manifest with an entry removed would restore an incomplete model: every shard the
        // restored index names must have been restored.
        let index = out.path("model.safetensors.index.json")
        if pathExists(index), let map = (try? JSONParser.parse(try readWholeFile(index)))?["weight_map"]?.objectValue {
            let restored = Set(manifest.files.map(\.name))
            for shard in Set(map.pairs.compactMap { $0.value.stringValue }).sorted() where !restored.contains(shard) {
                throw CompressionError.format(file: directory + "/" + PackManifest.fileName,
                                              message: "the index names \(shard), which the manifest does not list: the packed directory is incomplete")
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
