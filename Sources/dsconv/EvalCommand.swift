import ArgumentParser
import Checkpoints
import DeepSeek
import Foundation
import JSON
import ModelText
import Kernels

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Teacher-force a model and its reference over a text: KL(ref‖ours) mean and p99, top-1 agreement, perplexity of both.")

    @Argument(help: "The model to evaluate (quantized, packed, resharded or plain).")
    var directory: String

    @Option(help: "The reference checkpoint (usually the BF16 source).")
    var reference: String

    @Option(help: "Evaluation text (tokenized without special tokens).")
    var text: String

    @Option(name: .customLong("seq-len"), help: "Tokens per window, BOS included.")
    var seqLen = 512

    @Option(help: "Windows to score (at most; default: the whole text).")
    var windows: Int?

    @Flag(name: .customLong("bf16-activations"), help: "Run the evaluated model's prefill products with the activations rounded to bf16 on AMX-BF16 or AVX-512 BF16 tiles (f32 accumulation): faster, not exact; the reference keeps the exact path, so the KL is what the rounding costs.")
    var bf16Activations = false

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        if seqLen < 2 { throw ValidationError("--seq-len must be at least 2") }
        if let w = windows, w < 1 { throw ValidationError("--windows must be at least 1") }
    }

    func run() throws {
        try runCommand(json: json) {
            let oursCheckpoint = try OpenedCheckpoint.open(directory, threads: threads.count)
            let refCheckpoint = try OpenedCheckpoint.open(reference, threads: threads.count)
            // Reshard and packed outputs carry checksums: check them before running, as verify does.
            for (c, side) in [(oursCheckpoint, directory), (refCheckpoint, reference)] where c.kind != .plain {
                let report = try c.integrity()
                if let p = report.problems.first {
                    throw ModelError.badTensor(file: p.file, tensor: p.tensor,
                                               message: "\(p.message) (\(report.problems.count) problem(s) in \(side): dsconv verify \(side))")
                }
            }
            let ours = try oursCheckpoint.model(backend: bf16Activations ? .bf16Activations : .fast), ref = try refCheckpoint.model()
            if bf16Activations { note("--bf16-activations: products of \(Linear.bf16GemmThreshold) rows or more on \(Linear.bf16KindName)") }
            guard ours.config.vocabSize == ref.config.vocabSize else {
                throw ModelError.badInput("--reference \(reference): vocabulary \(ref.config.vocabSize) differs from \(ours.config.vocabSize)")
            }
            let pieces = try TokenWindows.make(textFile: text, tokenizerDirectory: refCheckpoint.textDirectory, length: seqLen, limit: windows,
                                               bos: ref.config.bosTokenId)
            var eval = TeacherForcedEval()
            let start = Date()
            let progress = Progress("eval")
            for (i, w) in pieces.enumerated() {
                eval.add(ours: try ours.allLogits(w), reference: try ref.allLogits(w), tokens: w)
                progress.step(i + 1, of: pieces.count, String(format: "window %d: KL mean so far %.4g", i + 1, eval.klMean))
            }
            note(String(format: "%@ vs %@: %d positions in %.1f s: KL mean %.4g, p99 %.4g, top-1 %.4f, ppl %.3f (reference %.3f)",
                        directory, reference, eval.positions, Date().timeIntervalSince(start), eval.klMean, eval.klP99,
                        eval.top1Agreement, eval.perplexity, eval.perplexityReference))
            // NaN or Inf logits make KL, agreement and perplexity meaningless: damaged data, exit 1.
            if !eval.isFinite {
                let which = [eval.nonFiniteOurs > 0 ? "\(eval.nonFiniteOurs) in \(directory)" : nil,
                             eval.nonFiniteReference > 0 ? "\(eval.nonFiniteReference) in the reference \(reference)" : nil].compactMap { $0 }
                let message = "non-finite logits (NaN/Inf): " + which.joined(separator: ", ") + "; the figures above mean nothing"
                note("error: " + message)
                if json {
                    guard case .object(var o) = eval.json else { return Exit.problems }
                    o["ok"] = false
                    o["exit_code"] = JSONValue(Int(Exit.problems))
                    o["problems"] = .array([.string(message)])
                    printJSON(.object(o))
                }
                return Exit.problems
            }
            if json { printJSON(eval.json) }
            return Exit.ok
        }
    }
}
