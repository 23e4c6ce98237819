import ArgumentParser
import ChatTemplate
import DeepSeek
import Foundation
import JSON
import ModelText
import SafeTensors
import Tokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Text → token ids with the model's tokenizer (and chat template), exactly as Hugging Face does.")

    @Option(help: "Model directory (tokenizer.json, tokenizer_config.json).")
    var model: String

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @Flag(name: .customLong("no-special-tokens"), help: "Do not add BOS/EOS.")
    var noSpecialTokens = false

    @Option(help: "Batch mode: a JSONL file of strings or {\"text\": ...} objects; prints {\"ids\": [...]} per line.")
    var jsonl: String?

    @Option(help: "A JSON file with a list of messages (or {\"messages\": [...], \"tools\": [...]}) to render with the chat template.")
    var messages: String?

    @Flag(name: .customLong("add-generation-prompt"), help: "End the rendered chat with the assistant prompt.")
    var addGenerationPrompt = false

    @Flag(name: .customLong("render-only"), help: "Print the rendered chat text only (needs only tokenizer_config.json).")
    var renderOnly = false

    @Argument(help: "Text to tokenize.")
    var text: String?

    func validate() throws {
        let modes = [text != nil, jsonl != nil, messages != nil].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give exactly one of TEXT, --jsonl FILE or --messages FILE") }
        if (addGenerationPrompt || renderOnly) && messages == nil { throw ValidationError("--add-generation-prompt and --render-only need --messages") }
    }

    func run() throws {
        try runCommand(json: json) {
            if let messages {
                let doc: JSONValue
                do { doc = try JSONParser.parse(try readWholeFile(messages)) } catch let e as JSONParseError {
                    throw ModelError.badInput("\(messages): \(e)")
                }
                let list = doc.arrayValue != nil ? doc : (doc["messages"] ?? .null)
                guard let items = list.arrayValue else { throw ModelError.badInput("\(messages): expected a list of messages or {\"messages\": [...]}") }
                for (i, m) in items.enumerated() {
                    guard m["role"]?.stringValue != nil, m.objectValue?.keys.contains("content") == true else {
                        throw ModelError.badInput("\(messages): message \(i) is not a {\"role\": string, \"content\": ...} object")
                    }
                }
                let rendered = try TextFrontEnd.render(model, messages: list, tools: doc["tools"], addGenerationPrompt: addGenerationPrompt)
                if renderOnly {
                    if json { printJSON(["text": .string(rendered)]) } else { print(rendered, terminator: "") }
                    return Exit.ok
                }
                // The template writes BOS itself.
                let ids = try TextFrontEnd.tokenizer(model).encode(rendered, addSpecialTokens: false)
                if json { printJSON(["text": .string(rendered), "ids": JSONValue(ids)]) } else {
                    print(rendered)
                    print(ids.map(String.init).joined(separator: " "))
                }
                return Exit.ok
            }
            let tokenizer = try TextFrontEnd.tokenizer(model)
            if let jsonl {
                let data = try readWholeFile(jsonl)
                var lineNumber = 0
                for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                    lineNumber += 1
                    if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
                    let value: JSONValue
                    do { value = try JSONParser.parse(Array(line)) } catch {
                        throw ModelError.badInput("\(jsonl):\(lineNumber): \(error)")
                    }
                    guard let t = value.stringValue ?? value["text"]?.stringValue else {
                        throw ModelError.badInput("\(jsonl):\(lineNumber): expected a JSON string or {\"text\": ...}")
                    }
                    print(JSONValue.object(JSONObject(["ids": JSONValue(tokenizer.encode(t, addSpecialTokens: !noSpecialTokens))])).serialized())
                }
                return Exit.ok
            }
            let t = text ?? ""
            let ids = tokenizer.encode(t, addSpecialTokens: !noSpecialTokens)
            if json { printJSON(["text": .string(t), "ids": JSONValue(ids)]) } else { print(ids.map(String.init).joined(separator: " ")) }
            return Exit.ok
        }
    }
}
