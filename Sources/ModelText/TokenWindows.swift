import DeepSeek
import Foundation
import JSON
import SafeTensors

/// Text cut into model inputs for calibration and evaluation: tokenized without special tokens,
/// cut into consecutive non-overlapping pieces of `length − 1` tokens, each window BOS + piece;
/// a last partial piece is dropped (llama.cpp's perplexity windows).
public enum TokenWindows {
    public static func make(textFile: String, tokenizerDirectory: String, length: Int, limit: Int?, bos: Int?) throws -> [[Int]] {
        let text: String
        do {
            text = String(decoding: try readWholeFile(textFile), as: UTF8.self)
        } catch {
            throw ModelError.badInput("\(textFile): cannot read the text (\(error))")
        }
        let ids = try TextFrontEnd.tokenizer(tokenizerDirectory).encode(text, addSpecialTokens: false)
        return try cut(ids, source: textFile, length: length, limit: limit, bos: bos)
    }

    /// The builtin calibration set: every conversation rendered through the model's chat template
    /// (which writes BOS itself), tokenized, concatenated, and cut into windows of `length`.
    public static func builtin(tokenizerDirectory: String, length: Int, limit: Int?) throws -> [[Int]] {
        let tokenizer = try TextFrontEnd.tokenizer(tokenizerDirectory)
        var ids: [Int] = []
        for conversation in BuiltinCalibration.conversations {
            let messages = JSONValue.array(conversation.map { ["role": .string($0.role), "content": .string($0.content)] })
            let rendered = try TextFrontEnd.render(tokenizerDirectory, messages: messages, tools: nil, addGenerationPrompt: false)
            ids += tokenizer.encode(rendered, addSpecialTokens: false)
        }
        return try cut(ids, source: "the builtin calibration set", length: length, limit: limit, bos: nil)
    }

    public static func cut(_ ids: [Int], source textFile: String, length: Int, limit: Int?, bos: Int?) throws -> [[Int]] {
        guard length >= 2 else { throw ModelError.badInput("--seq-len \(length): at least 2 expected") }
        let piece = length - (bos == nil ? 0 : 1)
        var windows: [[Int]] = []
        var i = 0
        while i + piece <= ids.count, windows.count < (limit ?? Int.max) {
            windows.append((bos.map { [$0] } ?? []) + ids[i..<(i + piece)])
            i += piece
        }
        guard !windows.isEmpty else {
            throw ModelError.badInput("\(textFile): \(ids.count) tokens, fewer than one window of \(length); give a longer text or a smaller --seq-len")
        }
        return windows
    }
}
