import ChatTemplate
import DeepSeek
import JSON
import SafeTensors
import Tokenizer

/// Loading the tokenizer and chat template of a model directory, shared by commands.
public enum TextFrontEnd {
    public static func tokenizer(_ dir: String) throws -> Tokenizer {
        do { return try Tokenizer(directory: dir) } catch let e as TokenizerError { throw ModelError.badInput(e.description) }
    }

    /// tokenizer_config.json's chat template (without needing tokenizer.json).
    public static func template(_ dir: String) throws -> (ChatTemplate, bos: String?, eos: String?) {
        let path = dir + "/tokenizer_config.json"
        let config: JSONValue
        do { config = try JSONParser.parse(try readWholeFile(path)) } catch let e as SafeTensorsError {
            throw ModelError.missingFile(file: path, what: "the tokenizer config with the chat template: \(e)")
        } catch {
            throw ModelError.badInput("\(path): \(error)")
        }
        var source = config["chat_template"]?.stringValue
        if source == nil, let named = config["chat_template"]?.arrayValue {
            // The list form: [{"name": "default", "template": ...}, ...].
            source = named.first { $0["name"]?.stringValue == "default" }?["template"]?.stringValue ?? named.first?["template"]?.stringValue
        }
        guard let source else { throw ModelError.badInput("\(path): no chat_template") }
        func token(_ v: JSONValue?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
        do {
            return (try ChatTemplate(source), token(config["bos_token"]), token(config["eos_token"]))
        } catch let e as TemplateError {
            throw ModelError.badInput("\(path): \(e)")
        }
    }

    public static func render(_ dir: String, messages: JSONValue, tools: JSONValue?, addGenerationPrompt: Bool) throws -> String {
        let (template, bos, eos) = try template(dir)
        do {
            return try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt, bosToken: bos, eosToken: eos, tools: tools)
        } catch let e as TemplateError {
            throw ModelError.badInput("\(dir)/tokenizer_config.json: \(e)")
        }
    }
}
