import Compression
import Foundation
import JSON
import Kernels
import SafeTensors

/// A `dsconv pack` output read directly: headers from each file's header frame, tensors
/// decompressed on demand (only their frames) and kept in a bounded cache, so the forward pass
/// runs on packed weights without unpacking the checkpoint.
public final class PackedCheckpoint: WeightSource, @unchecked Sendable {
    public let directory: String
    public let config: ModelConfig
    public let schema: TensorSchema
    public let manifest: PackManifest
    public let files: [PackedFile]
    private let byName: [String: (file: PackedFile, info: TensorInfo)]
    private let cache = WeightCache()
    public let threads: Int

    /// Shapes to check tensors against instead of the config's schema (a tensor-parallel rank).
    private let expectedShapes: [String: [Int]]?

    public init(directory: String, threads: Int, expectedShapes: [String: [Int]]? = nil) throws {
        self.directory = directory
        self.threads = threads
        self.expectedShapes = expectedShapes
        config = try ModelConfig.load(path: directory + "/config.json")
        schema = TensorSchema(config: config)
        manifest = try PackManifest(directory: directory)
        files = try manifest.files.map { try PackedFile(path: directory + "/" + $0.packed) }
        var map: [String: (PackedFile, TensorInfo)] = [:]
        for f in files {
            for t in f.tensors {
                if let other = map[t.name] { throw SafeTensorsError.tensorInTwoFiles(tensor: t.name, first: other.0.path, second: f.path) }
                map[t.name] = (f, t)
            }
        }
        byName = map
    }

    public var tensorEntries: [(file: String, info: TensorInfo)] {
        files.flatMap { f in f.tensors.map { (file: basename(f.path), info: $0) } }
    }

    public func matrix(_ role: TensorRole) throws -> WeightMatrix {
        guard let (file, info) = byName[role.name] else {
            throw ModelError.badTensor(file: directory, tensor: role.name, message: "missing from the packed checkpoint")
        }
        if let expected = expectedShapes?[role.name] ?? schema[role.name]?.shape, expected != info.shape {
            throw ModelError.badTensor(file: file.path, tensor: role.name, message: "shape \(info.shape), expected \(expected)")
        }
        let owned = try cache.value(role.name) { OwnedBytes(try file.tensorData(role.name, threads: threads)) }
        guard let format = info.dtype.weightFormat else {
            throw ModelError.badTensor(file: file.path, tensor: role.name, message: "dtype \(info.dtype.rawValue) cannot be computed with")
        }
        return WeightMatrix(bytes: owned.bytes, format: format, rows: info.shape[0], cols: info.shape.count == 2 ? info.shape[1] : 1, owner: owned)
    }

    /// A tensor's original bytes, decompressed (not cached).
    public func bytes(_ name: String) throws -> OwnedBytes {
        guard let (file, _) = byName[name] else {
            throw ModelError.badTensor(file: directory, tensor: name, message: "missing from the packed checkpoint")
        }
        return OwnedBytes(try file.tensorData(name, threads: threads))
    }

    public func info(_ name: String) -> TensorInfo? { byName[name]?.info }

    /// Integrity of a packed checkpoint: every file fully decoded and checked against the
    /// manifest's sha256, the schema from the headers, NaN/Inf in every floating tensor, tokenizer.
    public func integrity(progress: (@Sendable (Int, Int) -> Void)? = nil) -> IntegrityReport {
        var report = decodeAndScan(progress: progress)
        report.problems = IntegrityCheck.schemaProblems(schema: schema, expectedDType: config.expectedDType, tensors: tensorEntries,
                                                        indexName: "model.safetensors.index.json") + report.problems
        report.problems += IntegrityCheck.tokenizerProblems(directory: directory)
        report.problems += copiedFileProblems()
        return report
    }

    /// The files copied as they are (config.json, tokenizer files, chat template) against the
    /// manifest's sha256: a tampered chat template must not pass, or run under `verify --prompt`.
    public func copiedFileProblems() -> [Problem] {
        manifest.copied.compactMap { c in
            let path = directory + "/" + c.name
            guard let f = try? MappedFile(path: path) else {
                return Problem(kind: .checksum, file: c.name, tensor: "", message: "missing (listed in the pack manifest)")
            }
            let digest = SHA256.hex(f.bytes)
            guard digest == c.sha256, f.size == c.size else {
                return Problem(kind: .checksum, file: c.name, tensor: "",
                               message: "sha256 \(digest) (\(f.size) bytes), the pack manifest says \(c.sha256) (\(c.size) bytes)")
            }
            return nil
        }
    }

    /// Every frame decoded (zstd checksums, rANS checks), each file's sha256 against the manifest,
    /// and the NaN/Inf scan.
    public func decodeAndScan(progress: (@Sendable (Int, Int) -> Void)? = nil) -> IntegrityReport {
        var report = IntegrityReport()
        let total = files.reduce(0) { $0 + $1.originalSize }
        var done = 0
        for (f, m) in zip(files, manifest.files) {
            var hash = SHA256()
            var failed = false
            for frame in f.frames {
                do {
                    let bytes = try PackedFile.decode(frame, in: f.mapped.bytes, path: f.path)
                    bytes.withUnsafeBytes { hash.update($0) }
                } catch {
                    report.problems.append(Problem(kind: .checksum, file: basename(f.path), tensor: "", message: "\(error)"))
                    failed = true
                    break
                }
                done += frame.originalSize
                progress?(done, total)
            }
            if !failed, case let digest = hash.finalizeHex(), digest != m.sha256 {
                report.problems.append(Problem(kind: .checksum, file: basename(f.path), tensor: "",
                                               message: "decoded \(m.name) has sha256 \(digest), the manifest says \(m.sha256)"))
            }
            if failed { continue }
            for t in f.tensors {
                guard let format = t.dtype.scanFormat, let data = try? f.tensorData(t.name, threads: threads) else { continue }
                let r = data.withUnsafeBytes { NonFiniteScan.count($0, format: format) }
                if r.count > 0 {
                    report.problems.append(Problem(kind: .nonFinite, file: basename(f.path), tensor: t.name,
                                                   message: "\(r.count) NaN/Inf value(s), first at flat index \(r.first ?? 0)"))
                }
                report.bytesScanned += t.byteCount
            }
            report.tensorsChecked += f.tensors.count
        }
        return report
    }
}

/// Bytes owned by an object, so a weight view can keep them alive.
public final class OwnedBytes: @unchecked Sendable {
    private let storage: UnsafeMutableRawBufferPointer
    public init(_ bytes: [UInt8]) {
        let s = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { s.copyMemory(from: $0) }
        storage = s
        count = bytes.count
    }
    /// Uninitialized storage of `byteCount` bytes, to be filled through `mutableBytes`.
    public init(byteCount: Int) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        count = byteCount
    }
    public var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]) }
    deinit { storage.deallocate() }
    public let count: Int
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }
}
