import Foundation

/// Paths into Tests/Fixtures, found from this file's location so tests run from any directory.
public enum Fixtures {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()  // TestSupport
        url.deleteLastPathComponent()  // Tests
        return url.appendingPathComponent("Fixtures").path
    }()
    public static let tiny = root + "/tiny-dsv2.5"
    public static let tokenizer = root + "/deepseek-v2.5-tokenizer"
}

/// A fresh directory under the system temp directory, named after the calling test.
public func temporaryDirectory(_ tag: String = #function) -> String {
    let safe = tag.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "dsconv-test-\(safe)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A seeded mutation fuzzer for the parsers that read untrusted bytes: each case is a fixture
/// (or a well-formed sample) with random edits — bit flips, byte changes, insertions, deletions,
/// truncations, duplicated spans, and splices of values that break parsers (huge numbers, deep
/// nesting, quotes, NUL). Deterministic for a seed, so a crash it finds replays as a regression
/// test. A parser may throw on any case; it must never trap, hang or allocate without bound.
public struct Mutator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    public mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    public mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }

    static let splices: [[UInt8]] = [
        "99999999999999999999", "-1", "1e308", "9223372036854775807", "[[[[[[[[[[[[[[[[", "{{{{{{{{", "\"", "\\", "\u{0}",
        "{%", "%}", "{{", "}}", "((((((((((", "a{99999999}", "(?:", "NaN", "[]", "{}", ",", ":", "null",
    ].map { Array($0.utf8) }

    /// One to four random edits of `seed`.
    public mutating func mutate(_ seed: [UInt8]) -> [UInt8] {
        var b = seed
        for _ in 0..<(1 + below(4)) {
            let at = below(b.count + 1)
            switch below(8) {
            case 0 where !b.isEmpty: b[min(at, b.count - 1)] ^= UInt8(1 << below(8))
            case 1 where !b.isEmpty: b[min(at, b.count - 1)] = UInt8(truncatingIfNeeded: next())
            case 2: b.insert(UInt8(truncatingIfNeeded: next()), at: at)
            case 3 where !b.isEmpty: b.remove(at: min(at, b.count - 1))
            case 4: b = Array(b.prefix(at))
            case 5 where !b.isEmpty:
                let len = min(1 + below(64), b.count - min(at, b.count - 1))
                let start = min(at, b.count - 1)
                b.insert(contentsOf: b[start..<(start + len)], at: below(b.count + 1))
            default: b.insert(contentsOf: Self.splices[below(Self.splices.count)], at: at)
            }
        }
        return b
    }

    /// Runs `body` on `iterations` mutations of the seeds; returns executions per second.
    @discardableResult
    public mutating func run(seeds: [[UInt8]], iterations: Int, _ body: ([UInt8]) -> Void) -> Double {
        let start = Date()
        for s in seeds { body(s) }
        for i in 0..<iterations { body(mutate(seeds[i % seeds.count])) }
        return Double(iterations + seeds.count) / max(Date().timeIntervalSince(start), 1e-9)
    }
}
