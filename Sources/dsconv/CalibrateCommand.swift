import ArgumentParser
import Checkpoints
import DeepSeek
import Foundation
import ModelQuantizer
import SafeTensors

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run calibration text through the model layer by layer; write per-channel activation statistics of every Linear and per-expert routed counts (HDF5).")

    @Argument(help: "Source checkpoint directory.")
    var source: String

    @OptionGroup var calibration: CalibrationOptions

    @Option(help: "Output statistics file (.h5).")
    var out: String

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try runCommand {
            let ckpt = try OpenedCheckpoint.open(source, threads: threads.count).plain(for: "calibrate")
            let windows = try calibration.windows(source: source, config: ckpt.config)
            // The output is checked and locked before the forward pass (hours at full size), and
            // a damaged source (NaN/Inf weights) is refused as reshard and quantize refuse it.
            ckpt.source.refusesNonFinite = true
            let start = Date()
            var collected: CalibrationStatistics?
            try OutputFile.write(out, force: force, inputs: [source] + (calibration.text.map { [$0] } ?? []), isOurs: CalibrationStatistics.isCalibrationFile) { path in
                let stats = try CalibrationStatistics.collect(source: ckpt, windows: windows, threads: threads.count,
                                                              allTokensThroughExperts: calibration.allTokensThroughExperts,
                                                              backend: calibration.backend) { note($0) }
                try stats.write(to: path, config: ckpt.config, attributes: ["source": source, "text": calibration.text ?? "builtin",
                                                                    "expert_tokens": calibration.expertTokens.rawValue],
                                numbers: ["windows": windows.count, "seq_len": calibration.seqLen])
                collected = stats
            }
            guard let stats = collected else { return Exit.problems }
            let seconds = Date().timeIntervalSince(start)
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
