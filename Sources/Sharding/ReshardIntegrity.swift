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
        report.problems += planProblems(manifest: manifest, plan: model.plan)
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

    /// The manifest's slices against the plan that config.json and the manifest's tp / expert mode
    /// imply, recomputed here: a manifest edited to describe another split must not pass.
    public static func planProblems(manifest: ReshardManifest, plan: ShardPlan) -> [Problem] {
        struct Key: Hashable { let rank: Int; let dim: Int?; let offset: Int; let length: Int }
        var planned: [String: Set<Key>] = [:]
        for (r, slices) in plan.ranks.enumerated() {
            for s in slices { planned[s.name, default: []].insert(Key(rank: r, dim: s.dim, offset: s.offset, length: s.length)) }
        }
        var problems: [Problem] = []
        var seen = Set<String>()
        for t in manifest.tensors {
            seen.insert(t.name)
            let recorded = Set(t.slices.map { Key(rank: $0.rank, dim: $0.dim, offset: $0.offset, length: $0.length) })
            guard let expected = planned[t.name] else {
                problems.append(Problem(kind: .layout, file: ReshardManifest.fileName, tensor: t.name, message: "not part of the model config.json describes"))
                continue
            }
            if recorded != expected {
                problems.append(Problem(kind: .layout, file: ReshardManifest.fileName, tensor: t.name,
                                        message: "slices differ from the tp \(plan.tp) / experts \(plan.experts.rawValue) plan config.json implies"))
            }
        }
        for name in planned.keys.sorted() where !seen.contains(name) {
            problems.append(Problem(kind: .layout, file: ReshardManifest.fileName, tensor: name, message: "missing from the manifest"))
        }
        return problems
    }

    /// Every file of a rank against the manifest's size and sha256 (read once, pages released).
    public static func checksumProblems(directory: String, rank: ReshardManifest.Rank) throws -> [Problem] {
        let dir = directory + "/" + rank.directory
        return rank.files.compactMap { f in
            f.mismatch(in: dir).map { Problem(kind: .checksum, file: rank.directory + "/" + f.name, tensor: "", message: $0) }
        }
    }
}
