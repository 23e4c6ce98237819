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
            let scan = model.weights[r].store.scan(threads: threads, progress: progress)
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
        let dir = directory + "/" + rank.directory
        return rank.files.compactMap { f in
            f.mismatch(in: dir).map { Problem(kind: .checksum, file: rank.directory + "/" + f.name, tensor: "", message: $0) }
        }
    }
}
