import ArgumentParser
import DeepSeek
import Kernels
import ModelText

/// The calibration data flags `calibrate` and `quantize --method gptq|awq` share.
struct CalibrationOptions: ParsableArguments {
    @Option(help: "Calibration text (tokenized without special tokens, cut into windows; default: the builtin set rendered through the chat template).")
    var text: String?

    @Option(help: "Calibration windows (at most).")
    var samples = 128

    @Option(name: .customLong("seq-len"), help: "Tokens per calibration window (BOS included).")
    var seqLen = 512

    @Option(name: .customLong("expert-tokens"), help: "Routed experts: routed (each sees its own tokens) or all (every token through every expert; only routed outputs count).")
    var expertTokens = ExpertTokens.routed

    @Flag(name: .customLong("bf16-activations"), help: "Run the calibration passes' products with the activations rounded to bf16 on AMX-BF16 or AVX-512 BF16 tiles (f32 accumulation): faster prefill, not exact; the statistics and Hessians still see the f32 inputs.")
    var bf16Activations = false

    var allTokensThroughExperts: Bool { expertTokens == .all }
    var backend: LinearBackend { bf16Activations ? .bf16Activations : .fast }

    func validate() throws {
        if samples < 1 { throw ValidationError("--samples must be at least 1") }
        if seqLen < 2 { throw ValidationError("--seq-len must be at least 2") }
    }

    /// The windows, from `--text` or the builtin set, and a note saying which.
    func windows(source: String, config: ModelConfig) throws -> [[Int]] {
        let windows = try text.map { try TokenWindows.make(textFile: $0, tokenizerDirectory: source, length: seqLen, limit: samples,
                                                           bos: config.bosTokenId) }
            ?? TokenWindows.builtin(tokenizerDirectory: source, length: seqLen, limit: samples)
        note("calibration: \(windows.count) windows of \(seqLen) tokens from \(text ?? "the builtin calibration set (chat, code, math, 8 languages)")")
        return windows
    }
}
