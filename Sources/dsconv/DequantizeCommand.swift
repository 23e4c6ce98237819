import ArgumentParser
import Checkpoints
import DeepSeek
import Foundation
import JSON
import Kernels
import ModelQuantizer
import SafeTensors

struct Dequantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a quantized (compressed-tensors) checkpoint back as BF16, each weight exactly as compressed-tensors decompresses it.")

    @Argument(help: "Quantized checkpoint directory.")
    var source: String

    @Option(help: "Output directory.")
    var out: String

    @OptionGroup var shardSize: ShardSizeOption
    var maxShardSize: String { shardSize.maxShardSize }

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    func run() throws {
        try runCommand {
            let ckpt = try OpenedCheckpoint.open(source, threads: 1).plain(for: "dequantize")
            let dequantizer = try Dequantizer(source: ckpt)
            let progress = Progress("dequantize")
            try OutputDirectory.write(out, force: force, inputs: [source], producer: "dsconv dequantize") { output in
                try dequantizer.write(into: output, maxShardSize: shardSize.bytes) { progress.update(done: $0, total: $1) }
            }
            note("wrote \(out): \(dequantizer.schema.tensors.count) tensors, BF16")
            return Exit.ok
        }
    }
}
