import Foundation
import ArgumentParser
import JSON

@main
struct Dsconv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dsconv",
        abstract: "Verify, re-shard, quantize, compress and run DeepSeek-V2 / V2.5 checkpoints on a CPU host.",
        discussion: "Exit codes: 0 ok · 1 damaged checkpoint data (or verification below its thresholds) · 2 bad usage or input · 3 I/O failure.",
        subcommands: [Inspect.self, Verify.self, Reshard.self, Merge.self, Pack.self, Unpack.self, Calibrate.self, Quantize.self, Dequantize.self, Eval.self, Tokenize.self, Detokenize.self, Synth.self]
    )

    /// A file-size limit (or a full quota) must surface as a write error with exit code 3, not
    /// kill the process with SIGXFSZ halfway through an output.
    static func main() {
        signal(SIGXFSZ, SIG_IGN)
        do {
            var command = try parseAsRoot(nil)
            try command.run()
        } catch {
            // Usage errors are argument-parser's EX_USAGE (64); the documented code is 2.
            let code = exitCode(for: error)
            if code.rawValue == 64 {
                let message = fullMessage(for: error)
                if !message.isEmpty { FileHandle.standardError.write((message + "\n").data(using: .utf8) ?? Data()) }
                // --json promises one JSON object on stdout, on failure too: usage errors included.
                if CommandLine.arguments.dropFirst().contains("--json") {
                    let first = message.split(separator: "\n").first.map(String.init) ?? "bad usage"
                    printJSON(["ok": .bool(false), "exit_code": JSONValue(2),
                               "problems": [["kind": .string("input"), "message": .string(first.replacingOccurrences(of: "Error: ", with: ""))]]])
                }
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
