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

    public struct Copied: Sendable {
        public let name: String
        public let size: Int
        public let sha256: String

        public init(name: String, size: Int, sha256: String) {
            self.name = name
            self.size = size
            self.sha256 = sha256
        }
    }

    public let level: Int
    public let transform: FrameTransform
    public let files: [Packed]
    public let copied: [Copied]

    public var json: JSONValue {
        ["format": "dsconv-pack", "version": 1, "level": JSONValue(level), "bf16_transform": .string(transform.rawValue),
         "files": .array(files.map { ["name": .string($0.name), "size": JSONValue($0.size), "sha256": .string($0.sha256),
                                      "packed": .string($0.packed), "packed_size": JSONValue($0.packedSize), "packed_sha256": .string($0.packedSHA256)] }),
         "copied": .array(copied.map { ["name": .string($0.name), "size": JSONValue($0.size), "sha256": .string($0.sha256)] })]
    }

    public init(level: Int, transform: FrameTransform, files: [Packed], copied: [Copied]) {
        self.level = level
        self.transform = transform
        self.files = files
        self.copied = copied
    }

    public init(directory: String) throws {
        let path = directory + "/" + Self.fileName
        let json: JSONValue
        do { json = try JSONParser.parse(try readWholeFile(path)) } catch {
            throw CompressionError.format(file: path, message: "\(error)")
        }
        guard json["format"]?.stringValue == "dsconv-pack" else { throw CompressionError.format(file: path, message: "\"format\" is not dsconv-pack") }
        if let v = json["version"], v.integerValue != 1 {
            throw CompressionError.format(file: path, message: "version \(v.serialized()) is not supported (this dsconv reads version 1)")
        }
        guard let fileList = json["files"]?.arrayValue, !fileList.isEmpty else {
            throw CompressionError.format(file: path, message: "missing or empty \"files\"")
        }
        level = Int(json["level"]?.integerValue ?? 0)
        transform = json["bf16_transform"]?.stringValue.flatMap(FrameTransform.init(rawValue:)) ?? .none
        func plain(_ name: String) -> Bool { !name.isEmpty && !name.contains("/") && name != ".." && name != "." && !name.contains("\u{0}") }
        files = try fileList.map { f in
            guard let n = f["name"]?.stringValue, let s = f["size"]?.integerValue, let h = f["sha256"]?.stringValue,
                let p = f["packed"]?.stringValue, let ps = f["packed_size"]?.integerValue, let ph = f["packed_sha256"]?.stringValue,
                plain(n), plain(p)
            else { throw CompressionError.format(file: path, message: "invalid \"files\" entry") }
            return Packed(name: n, size: Int(s), sha256: h, packed: p, packedSize: Int(ps), packedSHA256: ph)
        }
        copied = try (json["copied"]?.arrayValue ?? []).map { f in
            guard let n = f["name"]?.stringValue, let s = f["size"]?.integerValue, let h = f["sha256"]?.stringValue, plain(n) else {
                throw CompressionError.format(file: path, message: "invalid \"copied\" entry")
            }
            return Copied(name: n, size: Int(s), sha256: h)
        }
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
                let f = try MappedFile(path: path)
                copied.append(.init(name: name, size: f.size, sha256: SHA256.hex(f.bytes)))
            }
        }
        let manifest = PackManifest(level: Int(options.level), transform: options.bf16Transform, files: packed, copied: copied)
        try writeFileAtomically(out.path(PackManifest.fileName), manifest.json.serialized(pretty: true) + "\n")
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
            let src = directory + "/" + c.name
            guard pathExists(src) else { throw CompressionError.format(file: src, message: "missing (listed in the manifest)") }
            let m = try MappedFile(path: src)
            let digest = SHA256.hex(m.bytes)
            guard digest == c.sha256 else {
                throw CompressionError.format(file: src, message: "sha256 \(digest), the manifest says \(c.sha256)")
            }
            try copyFile(from: src, to: out.path(c.name))
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
