import Foundation
import JSON
import Kernels
import SafeTensors

/// A `dsconv pack` output read directly as a tensor store: headers from each file's header frame,
/// tensors decoded on demand (only their frames), so the forward pass, merge and verify run on
/// packed files without unpacking them.
public final class PackedStore: TensorStore, @unchecked Sendable {
    public let directory: String
    public let manifest: PackManifest
    public let files: [PackedFile]
    public let threads: Int
    private let byName: [String: (file: PackedFile, info: TensorInfo)]

    public init(directory: String, threads: Int) throws {
        self.directory = directory
        self.threads = threads
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

    public var listing: [StoredTensor] {
        files.flatMap { f in f.tensors.map { StoredTensor(file: basename(f.path), info: $0) } }
    }

    public var listingName: String { ShardedCheckpoint.indexFileName }

    public var servesMappedBytes: Bool { false }

    public func info(_ name: String) -> TensorInfo? { byName[name]?.info }

    public func path(of name: String) -> String? { byName[name]?.file.path }

    /// A tensor's original bytes, decoded from its frames (not cached).
    public func bytes(_ name: String) throws -> TensorBytes {
        guard let (file, _) = byName[name] else { throw SafeTensorsError.tensorNotFound(tensor: name) }
        let owned = OwnedBytes(try file.tensorData(name, threads: threads))
        return TensorBytes(bytes: owned.bytes, owner: owned, isMapped: false)
    }

    /// Every frame decoded (zstd checksums, rANS checks), each file's sha256 against the manifest,
    /// the NaN/Inf scan, and the copied files against the manifest.
    public func scan(threads: Int, progress: (@Sendable (Int, Int) -> Void)?) -> IntegrityReport {
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
                guard let format = t.dtype.scanFormat, let data = try? f.tensorData(t.name, threads: self.threads) else { continue }
                let r = data.withUnsafeBytes { NonFiniteScan.count($0, format: format) }
                if r.count > 0 {
                    report.problems.append(Problem(kind: .nonFinite, file: basename(f.path), tensor: t.name,
                                                   message: "\(r.count) NaN/Inf value(s), first at flat index \(r.first ?? 0)"))
                }
                report.bytesScanned += t.byteCount
            }
            report.tensorsChecked += f.tensors.count
        }
        report.problems += copiedFileProblems()
        return report
    }

    /// The files copied as they are (config.json, tokenizer files, chat template) against the
    /// manifest's sha256: a tampered chat template must not pass, or run under `verify --prompt`.
    public func copiedFileProblems() -> [Problem] {
        manifest.copied.compactMap { c in
            c.mismatch(in: directory).map { Problem(kind: .checksum, file: c.name, tensor: "", message: $0) }
        }
    }
}

/// Opens the tensors of a directory, whichever way they are stored.
public enum TensorStores {
    public enum Storage: Sendable { case plain, packed }

    /// How a directory stores its tensors: packed (it has a pack manifest) or plain safetensors
    /// shards. The one place that tells them apart (`CheckpointKind.detect` asks it too).
    public static func storage(of directory: String) -> Storage { PackManifest.isPacked(directory) ? .packed : .plain }

    public static func open(_ directory: String, threads: Int) throws -> any TensorStore {
        switch storage(of: directory) {
        case .packed: return try PackedStore(directory: directory, threads: threads)
        case .plain: return try ShardedCheckpoint(directory: directory)
        }
    }
}
