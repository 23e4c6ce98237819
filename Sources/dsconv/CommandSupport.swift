import ArgumentParser
import Failures
import Compression
import DeepSeek
import Foundation
import JSON
import Kernels
import SafeTensors
import Sharding

/// Exit codes every subcommand uses.
enum Exit {
    static let ok: Int32 = 0
    static let problems: Int32 = 1
    static let badInput: Int32 = 2
    static let ioFailure: Int32 = 3
}

/// Flags shared by heavy subcommands.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    var count: Int { max(1, threads ?? availableCores) }

    /// More threads than this only cost memory (each holds scratch) and thread creation.
    static let maximum = 1024

    func validate() throws {
        if let t = threads, t < 1 || t > Self.maximum { throw ValidationError("--threads must be between 1 and \(Self.maximum)") }
    }
}

/// Runs a subcommand body, turning thrown errors into one line on stderr and the exit code of
/// their kind (`FailureKind`). With `json`, a failure still prints one object on stdout:
/// `{"ok": false, "exit_code", "problems": [{"kind", "message"}]}`.
func runCommand(json: Bool = false, _ body: () throws -> Int32) throws {
    let code: Int32
    var message: String?
    var kind = FailureKind.input
    do {
        code = try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        kind = FailureKind(error)
        message = (error as? PlanError)?.message ?? "\(error)"
        code = kind.exitCode
    }
    if let message {
        printError(message)
        if json {
            printJSON(["ok": .bool(false), "exit_code": JSONValue(Int(code)),
                       "problems": [["kind": .string(kind.rawValue), "message": .string(message)]]])
        }
    }
    if code != 0 { throw ExitCode(code) }
}

func printError(_ message: String) {
    writeStderr("error: \(message)\n")
}

/// Unbuffered stderr, retrying on EINTR (Foundation's FileHandle traps on it).
func writeStderr(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 { if errno == EINTR { continue } else { return } }
        offset += n
    }
}

/// Human output goes to stderr so that `--json` stdout stays one object.
func note(_ message: String) {
    writeStderr(message + "\n")
}

func printJSON(_ value: JSONValue) {
    print(value.serialized(pretty: true))
}

/// "5GB", "200KB", "1.5GiB", "1048576" → bytes. Decimal units as Hugging Face uses them. At least
/// one byte and at most 1 PB (`maximumSize`); anything else, NaN and overflow included, is nil.
func parseSize(_ text: String) -> Int? {
    let t = text.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Double)] = [("TIB", 1_099_511_627_776), ("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024),
                                     ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
    for (u, m) in units where t.hasSuffix(u) {
        guard let v = Double(t.dropLast(u.count)), v.isFinite, v > 0 else { return nil }
        let bytes = v * m
        guard bytes >= 1, bytes <= Double(maximumSize) else { return nil }
        return Int(bytes)
    }
    return Int(t).flatMap { $0 > 0 && $0 <= maximumSize ? $0 : nil }
}

/// The largest size a flag accepts (1 PB): far above any checkpoint, far below Int overflow.
let maximumSize = 1_000_000_000_000_000

func formatBytes(_ n: Int) -> String {
    let d = Double(n)
    if d >= 1e12 { return String(format: "%.2f TB", d / 1e12) }
    if d >= 1e9 { return String(format: "%.2f GB", d / 1e9) }
    if d >= 1e6 { return String(format: "%.2f MB", d / 1e6) }
    if d >= 1e3 { return String(format: "%.1f KB", d / 1e3) }
    return "\(n) B"
}

func formatCount(_ n: Int) -> String {
    let d = Double(n)
    if d >= 1e9 { return String(format: "%.2fB", d / 1e9) }
    if d >= 1e6 { return String(format: "%.2fM", d / 1e6) }
    if d >= 1e3 { return String(format: "%.1fK", d / 1e3) }
    return "\(n)"
}

/// A progress bar on a TTY (stderr), otherwise one line per step.
final class Progress: @unchecked Sendable {
    let label: String
    let isTTY = isatty(2) == 1
    private let lock = NSLock()
    private var lastDraw = 0.0
    private let start = Date()

    init(_ label: String) { self.label = label }

    /// Fractional progress for byte-driven work; draws at most 10 times a second, TTY only.
    func update(done: Int, total: Int) {
        guard isTTY else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = Date().timeIntervalSince(start)
        guard now - lastDraw > 0.1 || done >= total else { return }
        lastDraw = now
        let frac = total > 0 ? Double(done) / Double(total) : 1
        let width = 30
        let filled = Int(frac * Double(width))
        let rate = now > 0 ? Double(done) / now / 1e9 : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        writeStderr(String(format: "\r%@ %@ %5.1f%% %.2f GB/s", label, bar, frac * 100, rate))
        if done >= total { writeStderr("\n") }
    }

    /// A named step (tensor): a line when piped, the bar's caption on a TTY.
    func step(_ index: Int, of total: Int, _ text: String) {
        if isTTY {
            lock.lock()
            defer { lock.unlock() }
            let line = "\r\(label) [\(index)/\(total)] \(text)"
            writeStderr((line.count > 120 ? String(line.prefix(120)) : line + String(repeating: " ", count: 120 - line.count)))
            if index == total { writeStderr("\n") }
        } else {
            // Off a TTY (logs, CI): the first step, the last, and at most one line a second between.
            lock.lock()
            let now = Date().timeIntervalSince(start)
            let due = index <= 1 || index >= total || now - lastDraw >= 1
            if due { lastDraw = now }
            lock.unlock()
            if due { note("\(label) [\(index)/\(total)] \(text)") }
        }
    }
}
