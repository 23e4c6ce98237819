import DeepSeek
import Foundation
import SafeTensors

/// Text cut into model inputs for calibration and evaluation: tokenized without special tokens,
/// cut into consecutive non-overlapping pieces of `length − 1` tokens, each window BOS + piece;
/// a last partial piece is dropped (llama.cpp's perplexity windows).
enum TokenWindows {
    static func make(textFile: String, tokenizerDirectory: String, length: Int, limit: Int?, bos: Int?) throws -> [[Int]] {
        guard length >= 2 else { throw ModelError.badInput("--seq-len \(length): at least 2 expected") }
        let text: String
        do {
            text = String(decoding: try readWholeFile(textFile), as: UTF8.self)
        } catch {
            throw ModelError.badInput("\(textFile): cannot read the text (\(error))")
        }
        let tokenizer = try TextFrontEnd.tokenizer(tokenizerDirectory)
        let ids = tokenizer.encode(text, addSpecialTokens: false)
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
