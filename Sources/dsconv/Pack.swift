import ArgumentParser
import Checkpoints
import Compression
import DeepSeek
import Foundation
import JSON
import SafeTensors

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compress a checkpoint losslessly: seekable zstd per file, BF16 exponents entropy-coded on their own.")

    @Argument(help: "Checkpoint directory.")
    var source: String

    @Option(help: "Output directory.")
    var out: String

    @OptionGroup var zstd: ZstdLevelOption
    var level: Int32 { zstd.level }

    @Option(help: "BF16 transform: bf16-exp-huff (default: exponent plane Huffman-coded, fast), bf16-exp-rans (smallest), bf16-planes or none.")
    var transform = FrameTransform.bf16ExpHuff

    @Option(name: .customLong("frame-size"), help: "Original bytes per frame, e.g. 2MiB (1–4 MiB is typical).")
    var frameSize = "2MiB"

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        guard let f = parseSize(frameSize), f >= 4096, f % 2 == 0, f <= 1 << 30 else { throw ValidationError("--frame-size must be an even size between 4KiB and 1GiB") }
    }

    func run() throws {
        try runCommand(json: json) {
            // Headers and index must be valid before anything is written; the checkpoint's shards are
            // packed, other files (configs, tokenizer, stray safetensors) copied.
            let ckpt = try OpenedCheckpoint.open(source, threads: threads.count).plain(for: "pack")
            let weightFiles = Set(ckpt.weights.files.map { basename($0.path) })
            var options = PackOptions()
            options.level = level
            options.bf16Transform = transform
            options.frameSize = parseSize(frameSize) ?? (2 << 20)
            options.threads = threads.count
            let start = Date()
            let manifest = try OutputDirectory.write(out, force: force, inputs: [source], producer: "dsconv pack") { output in
                try PackDirectory.pack(source, weightFiles: weightFiles, into: output, options: options) { name, s in
                    note(String(format: "pack %@: %@ → %@ (%.2f bits per 16-bit weight, %d frames)", name, formatBytes(s.originalSize),
                                formatBytes(s.packedSize), 16 * Double(s.packedSize) / Double(max(s.originalSize, 1)), s.frames))
                }
            }
            let original = manifest.files.reduce(0) { $0 + $1.size }, packed = manifest.files.reduce(0) { $0 + $1.packedSize }
            let seconds = Date().timeIntervalSince(start)
            note(String(format: "wrote %@: %@ → %@ (%.1f%%, %.2f bits per 16-bit weight) in %.1f s", out, formatBytes(original), formatBytes(packed),
                        100 * Double(packed) / Double(max(original, 1)), 16 * Double(packed) / Double(max(original, 1)), seconds))
            if json {
                printJSON(["out": .string(out), "original_bytes": JSONValue(original), "packed_bytes": JSONValue(packed),
                           "bits_per_16bit_weight": .number(16 * Double(packed) / Double(max(original, 1))), "seconds": .number(seconds)])
            }
            return Exit.ok
        }
    }
}
