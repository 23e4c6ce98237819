import ArgumentParser
import DeepSeek
import Foundation
import JSON
import SafeTensors

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a checkpoint: schema, index and headers, NaN/Inf scan, tokenizer files.",
        discussion: "Exits 0 when clean, 1 when problems were found, 2 when the input cannot be read as a checkpoint.")

    @Argument(help: "Checkpoint directory.")
    var directory: String

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try runCommand {
            let ckpt = try Checkpoint(directory: directory)
            let progress = Progress("scan")
            let start = Date()
            let report = IntegrityCheck.run(ckpt, threads: threads.count) { done, total in
                progress.update(done: done, total: total)
            }
            let seconds = Date().timeIntervalSince(start)
            if json {
                printJSON(report.json)
            } else {
                for p in report.problems { note("problem: \(p)") }
                note(String(format: "%@: %d tensors, %@ scanned in %.2f s (%.2f GB/s): %@", directory, report.tensorsChecked,
                            formatBytes(report.bytesScanned), seconds, Double(report.bytesScanned) / max(seconds, 1e-9) / 1e9,
                            report.ok ? "OK" : "\(report.problems.count) problem(s)"))
            }
            return report.ok ? Exit.ok : Exit.problems
        }
    }
}
