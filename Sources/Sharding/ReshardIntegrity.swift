import DeepSeek
import Kernels
import SafeTensors

/// `dsconv verify` on a reshard output: every file's sha256 against the manifest, every rank's
/// tensors against the plan, the NaN/Inf scan per rank, the tokenizer files.
public enum ReshardIntegrity {
    public static func run(directory: String, threads: Int, progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> IntegrityReport {
        let manifest = try ReshardManifest(directory: directory)
        let model = try TensorParallelModel(directory: directory, threads: threads)
        var report = IntegrityReport()
        for (r, rank) in manifest.ranks.enumerated() {
            let dir = directory + "/" + rank.directory
            report.problems += try checksumProblems(directory: directory, rank: rank)
            for p in model.weights[r].problems() { report.problems.append(Problem(kind: .layout, file: rank.directory, tensor: "", message: p)) }
            let scan = model.weights[r].files.scan(threads: threads, progress: progress)
            report.problems += scan.problems.map { Problem(kind: $0.kind, file: rank.directory + "/" + $0.file, tensor: $0.tensor, message: $0.message) }
            report.bytesScanned += scan.bytesScanned
            report.tensorsChecked += scan.tensorsChecked
            report.problems += IntegrityCheck.tokenizerProblems(directory: dir).map {
                Problem(kind: $0.kind, file: rank.directory + "/" + $0.file, tensor: $0.tensor, message: $0.message)
            }
        }
        return report
    }

    /// Every file of a rank against the manifest's size and sha256 (read once, pages released).
    public static func checksumProblems(directory: String, rank: ReshardManifest.Rank) throws -> [Problem] {
        var problems: [Problem] = []
        let dir = directory + "/" + rank.directory
        for f in rank.files {
            guard pathExists(dir + "/" + f.name) else {
                problems.append(Problem(kind: .checksum, file: rank.directory + "/" + f.name, tensor: "", message: "missing"))
                continue
            }
            let mapped = try MappedFile(path: dir + "/" + f.name)
            var h = SHA256()
            var offset = 0
            while offset < mapped.size {
                let end = min(mapped.size, offset + (64 << 20))
                h.update(UnsafeRawBufferPointer(rebasing: mapped.bytes[offset..<end]))
                mapped.adviseDone(offset..<end)
                offset = end
            }
            let digest = h.finalizeHex()
            if mapped.size != f.size || digest != f.sha256 {
                problems.append(Problem(kind: .checksum, file: rank.directory + "/" + f.name, tensor: "",
                                        message: "sha256 \(digest) (\(mapped.size) bytes), manifest says \(f.sha256) (\(f.size) bytes)"))
            }
        }
        return problems
    }
}
