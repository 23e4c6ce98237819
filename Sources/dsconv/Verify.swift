import ArgumentParser
import Checkpoints
import DeepSeek
import Foundation
import JSON
import ModelText
import Kernels
import SafeTensors

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a checkpoint (schema, headers, NaN/Inf, tokenizer files); with --prompt, also generate on CPU.",
        discussion: """
            Exits 0 when clean, 1 when problems were found (or the reference comparison fails), 2 when the \
            input cannot be read as a checkpoint.
            """)

    @Argument(help: "Checkpoint directory.")
    var directory: String

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var threads: ThreadOptions

    @Option(help: "Generate from this text: wrapped in the model's chat template as one user message unless --raw.")
    var prompt: String?

    @Option(name: .customLong("prompt-ids"), help: "Generate from these token ids (comma-separated), as they are.")
    var promptIDs: String?

    @Flag(name: .customLong("int8-activations"), help: "Decode symmetric int4 and int8 weights (groups of 64 or more, or per channel) with the activations quantized to int8 per 64 columns and integer dot products (AVX-512 VNNI), as llama.cpp's Q4_0 and Q8_0 do; the weights left in BF16 (lm_head) meet the activations rounded to bf16, as llama.cpp's BF16 tensors do: faster, not exact. With --reference, our logits are then taken token by token through the decode path, so the KL is what it costs.")
    var int8Activations = false

    @Flag(help: "Tokenize --prompt as it is (BOS added), without the chat template.")
    var raw = false

    @Option(name: .customLong("max-new-tokens"), help: "Tokens to generate.")
    var maxNewTokens = 32

    @Option(help: "Sampling temperature (default: greedy).")
    var temperature: Float?

    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (with --temperature).")
    var topP: Float = 1

    @Option(help: "Sampling seed.")
    var seed: UInt64 = 0

    @Option(help: "Source checkpoint to compare logits against, over the prompt and generated tokens.")
    var reference: String?

    @Option(name: .customLong("logits-out"), help: "Write the f32 logits at the last prompt position as a one-tensor safetensors file.")
    var logitsOut: String?

    @Option(name: .customLong("max-kl"), help: "With --reference: fail (exit 1) when the mean KL(reference ‖ ours) exceeds this.")
    var maxKL = 0.1

    @Option(name: .customLong("min-top1"), help: "With --reference: fail (exit 1) when top-1 agreement falls below this.")
    var minTop1 = 0.5

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    func validate() throws {
        if prompt != nil && promptIDs != nil { throw ValidationError("give --prompt or --prompt-ids, not both") }
        let generating = prompt != nil || promptIDs != nil
        if !generating && (reference != nil || logitsOut != nil || raw || temperature != nil) {
            throw ValidationError("--reference, --logits-out, --raw and --temperature need --prompt or --prompt-ids")
        }
        if maxNewTokens < 0 { throw ValidationError("--max-new-tokens must not be negative") }
        if let t = temperature, t < 0 { throw ValidationError("--temperature must not be negative") }
        if topP <= 0 || topP > 1 { throw ValidationError("--top-p must be in (0, 1]") }
        if !(maxKL >= 0) { throw ValidationError("--max-kl must be a non-negative number") }
        if !(minTop1 >= 0 && minTop1 <= 1) { throw ValidationError("--min-top1 must be in [0, 1]") }
    }

    func run() throws {
        try runCommand(json: json) {
            let checkpoint = try OpenedCheckpoint.open(directory, threads: threads.count)
            let progress = Progress("scan")
            let start = Date()
            var report = try checkpoint.integrity { done, total in progress.update(done: done, total: total) }
            let seconds = Date().timeIntervalSince(start)
            report.problems += textProblems(checkpoint.textDirectory)
            for p in report.problems { note("problem: \(p)") }
            note(String(format: "%@: %d tensors, %@ scanned in %.2f s (%.2f GB/s): %@", directory, report.tensorsChecked,
                        formatBytes(report.bytesScanned), seconds, Double(report.bytesScanned) / max(seconds, 1e-9) / 1e9,
                        report.ok ? "OK" : "\(report.problems.count) problem(s)"))
            guard prompt != nil || promptIDs != nil else {
                if json { printJSON(report.json) }
                return report.ok ? Exit.ok : Exit.problems
            }
            guard report.ok else {
                if json { printJSON(report.json) }
                note("not generating: the checkpoint failed its integrity checks")
                return Exit.problems
            }
            return try generate(checkpoint, integrity: report)
        }
    }

    /// The tokenizer and the chat template must load, not only exist (a present but broken file
    /// would fail `verify --prompt` and every engine).
    func textProblems(_ dir: String) -> [Problem] {
        var problems: [Problem] = []
        if pathExists(dir + "/tokenizer.json") {
            do { _ = try TextFrontEnd.tokenizer(dir) } catch {
                problems.append(Problem(kind: .tokenizer, file: "tokenizer.json", tensor: "", message: "does not load: \(error)"))
            }
        }
        if pathExists(dir + "/tokenizer_config.json") {
            do { _ = try TextFrontEnd.template(dir) } catch {
                problems.append(Problem(kind: .tokenizer, file: "tokenizer_config.json", tensor: "", message: "chat template does not load: \(error)"))
            }
        }
        return problems
    }

    func promptTokens(_ textDirectory: String) throws -> [Int] {
        if let promptIDs {
            let ids = promptIDs.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else { throw ModelError.badInput("--prompt-ids: expected comma-separated integers, got \"\(promptIDs)\"") }
            return ids.compactMap { $0 }
        }
        let text = prompt ?? ""
        let tokenizer = try TextFrontEnd.tokenizer(textDirectory)
        if raw { return tokenizer.encode(text) }
        let messages: JSONValue = [["role": "user", "content": .string(text)]]
        let rendered = try TextFrontEnd.render(textDirectory, messages: messages, tools: nil, addGenerationPrompt: true)
        return tokenizer.encode(rendered, addSpecialTokens: false)
    }

    func generate(_ checkpoint: OpenedCheckpoint, integrity: IntegrityReport) throws -> Int32 {
        let ids = try promptTokens(checkpoint.textDirectory)
        let sampling: Sampling = temperature.map { .random(temperature: $0, topP: topP, seed: seed) } ?? .greedy
        if int8Activations {
            // Say when the flag changes nothing: no int4 weight qualifies, or the CPU lacks VNNI.
            let schemes = Array(checkpoint.schema.quantizedRoles.values)
            let taking = schemes.filter { s in
                Linear.int8ActivationsApply(bits: s.bits, groupSize: s.groupSize, symmetric: s.symmetric)
            }.count
            note(taking > 0
                 ? "int8 activations: \(taking) of \(schemes.count) quantized projections decode with int8-quantized inputs (not exact)"
                 : "int8 activations: no projection qualifies (symmetric int4 or int8 with groups of 64 or more or per channel, on a CPU with AVX-512 VNNI); decoding exactly")
        }
        let model = try checkpoint.model(backend: int8Activations ? .fastInt8Activations : .fast)
        let result = try Generator(model: model).generate(prompt: ids, maxNewTokens: maxNewTokens, sampling: sampling)
        let prefillRate = Double(ids.count) / max(result.prefillSeconds, 1e-9)
        let decodeSteps = max(result.tokens.count - 1, 0)
        let decodeRate = decodeSteps > 0 ? Double(decodeSteps) / max(result.decodeSeconds, 1e-9) : 0
        let kvBytes = KVCache(config: checkpoint.config).bytesPerToken
        if let logitsOut {
            let inputs = [directory] + (reference.map { [$0] } ?? [])
            try OutputFile.write(logitsOut, force: force, inputs: inputs, isOurs: OutputFile.isDsconvSafeTensors) { path in
                try writeLogits(result.promptLastLogits, to: path)
            }
        }
        var comparison: LogitComparison?
        var failures: [String] = []
        if !result.promptLastLogits.allSatisfy(\.isFinite) {
            failures.append("the logits hold NaN or Inf (the model's numbers break down)")
        }
        if let reference {
            let verdict = try ReferenceVerdict(model: model, sequence: ids + result.tokens, reference: reference, threads: threads.count,
                                               stepwise: int8Activations, maxKL: maxKL, minTop1: minTop1)
            comparison = verdict.comparison
            failures += verdict.failures
        }
        let text = (try? TextFrontEnd.tokenizer(checkpoint.textDirectory))?.decode(result.tokens, skipSpecialTokens: true)
        note("prompt ids: \(ids)")
        note("generated ids: \(result.tokens)\(result.stoppedAtEOS ? " (EOS)" : "")")
        if let text, !json { print(text) }
        note(String(format: "prefill %.1f tokens/s (%d tokens), decode %.2f tokens/s, KV cache %d bytes/token",
                    prefillRate, ids.count, decodeRate, kvBytes))
        if let c = comparison {
            note(String(format: "reference: top-1 agreement %.4f over %d positions, KL mean %.3g max %.3g, max |Δlogit| %.3g",
                        c.top1Agreement, c.positions, c.klMean, c.klMax, c.maxAbsLogitDiff))
        }
        if json {
            var o = JSONObject()
            o["prompt_ids"] = JSONValue(ids)
            o["generated_ids"] = JSONValue(result.tokens)
            o["text"] = text.map { .string($0) } ?? .null
            o["prefill_tokens_per_second"] = .number(prefillRate)
            o["decode_tokens_per_second"] = .number(decodeRate)
            o["kv_bytes_per_token"] = JSONValue(kvBytes)
            o["reference"] = comparison?.json ?? .null
            o["integrity"] = integrity.json
            o["ok"] = .bool(failures.isEmpty)
            o["problems"] = .array(failures.map { .string($0) })
            printJSON(.object(o))
        }
        for f in failures { note("problem: \(f)") }
        return failures.isEmpty ? Exit.ok : Exit.problems
    }

    func writeLogits(_ logits: [Float], to path: String) throws {
        let writer = try SafeTensorsWriter(path: path, tensors: [TensorSpec(name: "logits", dtype: .f32, shape: [logits.count])],
                                           metadata: ["format": "pt", "producer": "dsconv verify --logits-out"])
        do {
            try logits.withUnsafeBytes { try writer.write("logits", from: .bytes($0)) }
            try writer.finish()
        } catch {
            writer.abort()
            throw error
        }
    }
}
