import ArgumentParser
import Checkpoints
import Compression
import DeepSeek
import Foundation
import JSON
import SafeTensors
import Sharding

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Merge a reshard output back into one checkpoint (tensors byte-identical to the source).")

    @Argument(help: "Reshard output directory.")
    var directory: String

    @Option(help: "Output checkpoint directory.")
    var out: String

    @OptionGroup var shardSize: ShardSizeOption
    var maxShardSize: String { shardSize.maxShardSize }

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try runCommand {
            _ = try OpenedCheckpoint.open(directory, threads: threads.count).reshardManifest(for: "merge")
            let merger: Merger
            do { merger = try Merger(directory: directory, threads: threads.count) } catch let e as PlanError { throw ModelError.badInput(e.message) }
            let progress = Progress("merge")
            try OutputDirectory.write(out, force: force, inputs: [directory], producer: "dsconv merge") { output in
                try merger.write(into: output, maxShardSize: parseSize(maxShardSize) ?? 5_000_000_000) { i, n, name in progress.step(i, of: n, name) }
            }
            note("wrote \(out): \(merger.manifest.tensors.count) tensors from \(merger.manifest.tp) ranks")
            return Exit.ok
        }
    }
}
