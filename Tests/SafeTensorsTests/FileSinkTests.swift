import Foundation
import TestSupport
import Testing

@testable import SafeTensors

/// The direct (O_DIRECT, double-buffered) sink writes exactly the bytes given, whatever their
/// sizes against its buffer and the 4 KiB alignment, on a disk file system and on tmpfs (which
/// refuses O_DIRECT: the same buffers over ordinary writes).
@Suite struct FileSinkTests {
    func pattern(_ n: Int, seed: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ seed &* 7 &+ ($0 >> 9)) } }

    @Test(arguments: [false, true]) func directWritesEveryByteAtAnySize(onTmpfs: Bool) throws {
        let base = onTmpfs ? "/dev/shm" : NSTemporaryDirectory()
        guard FileManager.default.fileExists(atPath: base) else { return }
        let dir = base + "/dsconv-filesink-\(getpid())-\(onTmpfs)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let buffer = 64 << 10
        // Pieces that cross buffer and alignment boundaries, empty files, exact multiples.
        let cases: [[Int]] = [[], [0], [1], [4095], [4096], [4097], [buffer], [buffer + 1], [3 * buffer + 17],
                              [100, buffer - 100, 1, 5000, 2 * buffer, 3], [buffer * 5]]
        for (n, sizes) in cases.enumerated() {
            let path = dir + "/f\(n)"
            var seen: [UInt8] = []
            let sink = try FileSink(path: path, bufferSize: buffer, direct: true) { seen += $0 }
            var expected: [UInt8] = []
            for (i, size) in sizes.enumerated() {
                let piece = pattern(size, seed: n * 10 + i)
                expected += piece
                try piece.withUnsafeBytes { try sink.write($0) }
            }
            #expect(sink.bytesWritten == expected.count)
            try sink.close()
            let written = try #require(FileManager.default.contents(atPath: path))
            #expect(written.count == expected.count, "case \(sizes): \(written.count) bytes on disk, expected \(expected.count)")
            #expect([UInt8](written) == expected, "case \(sizes): contents differ")
            #expect(seen == expected)
        }
    }

    /// A failed write is a typed error naming the file, never a partial success.
    @Test func directWriteErrorsNameTheFile() throws {
        guard FileManager.default.fileExists(atPath: "/dev/full") else { return }
        let sink = try FileSink(path: "/dev/full", bufferSize: 4096, direct: true)
        var failed: SafeTensorsError?
        do {
            for _ in 0..<4 { try [UInt8](repeating: 1, count: 4096).withUnsafeBytes { try sink.write($0) } }
            try sink.close()
        } catch let e as SafeTensorsError {
            failed = e
        }
        let e = try #require(failed)
        #expect("\(e)".contains("/dev/full"))
    }
}
