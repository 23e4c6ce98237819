import ArgumentParser
import ChatTemplate
import DeepSeek
import Foundation
import JSON
import ModelText
import SafeTensors
import Tokenizer

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Token ids → text with the model's tokenizer.")

    @Option(help: "Model directory (tokenizer.json).")
    var model: String

    @Flag(name: .customLong("skip-special-tokens"), help: "Drop special tokens (BOS, EOS, ...).")
    var skipSpecialTokens = false

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @Argument(help: "Token ids (space- or comma-separated).")
    var ids: [String]

    func run() throws {
        try runCommand(json: json) {
            let parts = ids.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let values = parts.map { Int($0) }
            guard values.allSatisfy({ $0 != nil }) else { throw ModelError.badInput("ids must be integers, got \(ids.joined(separator: " "))") }
            let list = values.compactMap { $0 }
            let text = try TextFrontEnd.tokenizer(model).decode(list, skipSpecialTokens: skipSpecialTokens)
            if json { printJSON(["ids": JSONValue(list), "text": .string(text)]) } else { print(text) }
            return Exit.ok
        }
    }
}
