import ArgumentParser
import DeepSeek
import Foundation
import ModelQuantizer
import SafeTensors

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run calibration text through the model layer by layer; write per-channel activation statistics of every Linear and per-expert routed counts (HDF5).")

    @Argument(help: "Source checkpoint directory.")
    var source: String

    @Option(help: "Calibration text (tokenized without special tokens, cut into windows; default: the builtin set rendered through the chat template).")
    var text: String?

    @Option(help: "Windows (at most).")
    var samples = 128

    @Option(name: .customLong("seq-len"), help: "Tokens per window (BOS included).")
    var seqLen = 512

    @Option(name: .customLong("expert-tokens"), help: "routed (each expert sees its own tokens) or all (every token through every expert).")
    var expertTokens = "routed"

    @Option(help: "Output statistics file (.h5).")
    var out: String

    @Flag(help: "Replace an existing statistics file that dsconv wrote.")
    var force = false

    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        guard ["routed", "all"].contains(expertTokens) else { throw ValidationError("--expert-tokens must be routed or all") }
        if samples < 1 { throw ValidationError("--samples must be at least 1") }
        if seqLen < 2 { throw ValidationError("--seq-len must be at least 2") }
    }

    func run() throws {
        try runCommand {
            let ckpt = try Checkpoint(directory: source)
            let windows = try text.map { try TokenWindows.make(textFile: $0, tokenizerDirectory: source, length: seqLen, limit: samples,
                                                               bos: ckpt.config.bosTokenId) }
                ?? TokenWindows.builtin(tokenizerDirectory: source, length: seqLen, limit: samples)
            note("calibration: \(windows.count) windows of \(seqLen) tokens from \(text ?? "the builtin calibration set")")
            let start = Date()
            let stats = try CalibrationStatistics.collect(source: ckpt, windows: windows, threads: threads.count,
                                                          allTokensThroughExperts: expertTokens == "all") { note($0) }
            let seconds = Date().timeIntervalSince(start)
            try OutputFile.write(out, force: force, inputs: [source] + (text.map { [$0] } ?? []), isOurs: CalibrationStatistics.isCalibrationFile) { path in
                try stats.write(to: path, config: ckpt.config, attributes: ["source": source, "text": text ?? "builtin", "expert_tokens": expertTokens],
                                numbers: ["windows": windows.count, "seq_len": seqLen])
            }
            note(String(format: "wrote %@: %d modules, %d tokens in %.1f s (%.0f tokens/s)", out, stats.modules.count, stats.tokens, seconds,
                        Double(stats.tokens) / max(seconds, 1e-9)))
            for (l, counts) in stats.routed.sorted(by: { $0.key < $1.key }) {
                let never = counts.enumerated().filter { $0.element == 0 }.map(\.offset)
                note("layer \(l): routed tokens per expert min \(counts.min() ?? 0), max \(counts.max() ?? 0)"
                     + (never.isEmpty ? "" : "; never routed: experts \(never)"))
            }
            return Exit.ok
        }
    }
}
