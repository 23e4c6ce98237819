import CKernels
import Foundation
import JSON
import Kernels
import SafeTensors
import TestSupport
import Testing

@testable import Compression

enum PackFixtures {
    static let root = Fixtures.root
    static let tiny = Fixtures.tiny
    static let weightFiles: Set<String> = Set((1...6).map { "model-0000\($0)-of-00006.safetensors" })


    static func pack(_ transform: FrameTransform, into dir: String, frameSize: Int = 64 << 10) throws -> String {
        var options = PackOptions()
        options.bf16Transform = transform
        options.frameSize = frameSize
        options.threads = 2
        let out = try OutputDirectory(dir + "/packed-\(transform.rawValue)", force: false)
        _ = try PackDirectory.pack(tiny, weightFiles: weightFiles, into: out, options: options)
        try out.commit()
        return out.finalPath
    }
}

@Suite struct TransformTests {
    func roundTrip(_ values: [UInt16], _ t: FrameTransform) -> Bool {
        let encoded = values.withUnsafeBytes { t.apply($0) }
        var back = [UInt16](repeating: 0, count: values.count)
        let ok = back.withUnsafeMutableBytes { dst in encoded.withUnsafeBytes { t.invert($0, into: dst) } }
        return ok && back == values
    }

    @Test func exponentCoderRoundTrips() {
        var x: UInt64 = 7
        func next() -> UInt64 { x = x &* 6364136223846793005 &+ 1442695040888963407; return x >> 33 }
        let normal = (0..<100_003).map { _ -> UInt16 in Conversion.bf16(Float(Int(next() % 2001) - 1000) / 5000 * Float(next() % 7 + 1)) }
        for t in FrameTransform.allCases {
            #expect(roundTrip(normal, t), "\(t)")
            for n in 1...9 { #expect(roundTrip(Array(normal.prefix(n)), t), "\(t) n=\(n)") }
            #expect(roundTrip([UInt16](repeating: 0x3F80, count: 1000), t), "\(t) one symbol")
            #expect(roundTrip((0..<65536).map { UInt16($0) }, t), "\(t) every bit pattern")
        }
    }

    @Test func exponentCoderDetectsCorruption() {
        let values = (0..<5000).map { UInt16(truncatingIfNeeded: ($0 * 2654435761) >> 7) & 0x7FFF | 0x3000 }
        var encoded = values.withUnsafeBytes { FrameTransform.bf16ExpRans.apply($0) }
        var out = [UInt16](repeating: 0, count: values.count)
        encoded[encoded.count / 3] ^= 0x5A
        let ok = out.withUnsafeMutableBytes { dst in encoded.withUnsafeBytes { FrameTransform.bf16ExpRans.invert($0, into: dst) } }
        // Either the decoder notices, or (the byte was in the raw sign/mantissa part) the values differ.
        #expect(!ok || out != values)
        let truncated = Array(encoded.prefix(encoded.count / 2))
        let ok2 = out.withUnsafeMutableBytes { dst in truncated.withUnsafeBytes { FrameTransform.bf16ExpRans.invert($0, into: dst) } }
        #expect(!ok2)
    }
}

@Suite struct PackUnpackTests {
    @Test(arguments: FrameTransform.allCases) func roundTripIsByteIdentical(_ t: FrameTransform) throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let packed = try PackFixtures.pack(t, into: dir)
        let manifest = try PackManifest(directory: packed)
        #expect(manifest.files.count == 6)
        #expect(manifest.copied.contains { $0.name == "config.json" })
        #expect(manifest.copied.contains { $0.name == "reference-logits.safetensors" })
        let out = try OutputDirectory(dir + "/restored", force: false)
        try PackDirectory.unpack(packed, into: out, threads: 2)
        try out.commit()
        for name in try FileManager.default.contentsOfDirectory(atPath: PackFixtures.tiny) {
            let a = try Data(contentsOf: URL(fileURLWithPath: PackFixtures.tiny + "/" + name))
            let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/restored/" + name))
            #expect(a == b, "\(name) differs after unpack (\(t))")
        }
        if t == .bf16ExpRans || t == .bf16ExpHuff {
            let original = manifest.files.reduce(0) { $0 + $1.size }, size = manifest.files.reduce(0) { $0 + $1.packedSize }
            #expect(16 * Double(size) / Double(original) < 10.7, "bits per weight \(16 * Double(size) / Double(original))")
        }
    }

    @Test func singleTensorRandomAccess() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let packed = try PackFixtures.pack(.bf16ExpRans, into: dir, frameSize: 8 << 10)
        let source = try ShardedCheckpoint(directory: PackFixtures.tiny)
        for name in ["lm_head.weight", "model.layers.2.mlp.experts.11.down_proj.weight", "model.norm.weight"] {
            let loc = try #require(source[name])
            let file = try PackedFile(path: packed + "/" + basenameOf(loc.file.path) + ".zst")
            #expect(file.info(name)?.shape == loc.info.shape)
            let bytes = try file.tensorData(name, threads: 2)
            #expect(bytes.elementsEqual(loc.data), "\(name)")
        }
    }

    func basenameOf(_ p: String) -> String { String(p.split(separator: "/").last ?? "") }
}

@Suite struct PackedBadInputTests {
    /// Packs, damages one packed file, and expects unpack to fail without leaving an output.
    func expectUnpackFails(_ damage: (inout [UInt8], PackedFile) throws -> Void, mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let packed = try PackFixtures.pack(.bf16ExpRans, into: dir)
        let path = packed + "/model-00001-of-00006.safetensors.zst"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        try damage(&bytes, try PackedFile(path: path))
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            let out = try OutputDirectory(dir + "/restored", force: false)
            do {
                try PackDirectory.unpack(packed, into: out, threads: 2)
                try out.commit()
                Issue.record("unpack should fail", sourceLocation: sourceLocation)
            } catch {
                out.abort()
                let text = "\(error)"
                for m in mentions { #expect(text.contains(m), "\(text) should mention \(m)", sourceLocation: sourceLocation) }
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/restored"), sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: dir + "/restored.partial"), sourceLocation: sourceLocation)
    }

    @Test func corruptedFrameNamesFileAndOffset() throws {
        try expectUnpackFails({ b, f in
            let frame = f.frames[3]
            b[frame.offset + frame.compressedSize / 2] ^= 0xFF
        }, mentions: ["model-00001-of-00006.safetensors.zst", "byte offset"])
    }

    @Test func truncatedFile() throws {
        try expectUnpackFails({ b, _ in b.removeLast(1000) }, mentions: ["model-00001-of-00006.safetensors.zst", "truncated"])
    }

    @Test func seekTableDisagreesWithFrames() throws {
        try expectUnpackFails({ b, f in
            // Entry 2's compressed size, one byte larger (and entry 3 one smaller): the sum still tiles.
            let footer = b.count - 9
            let count = Int(b[footer]) | Int(b[footer + 1]) << 8 | Int(b[footer + 2]) << 16 | Int(b[footer + 3]) << 24
            let tableStart = footer - count * 8
            func add(_ entry: Int, _ delta: Int) {
                let o = tableStart + entry * 8
                var v = Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24
                v += delta
                for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
            }
            add(2, 1)
            add(3, -1)
        }, mentions: ["seek table disagrees", "byte offset"])
    }

    @Test func manifestChecksumMismatch() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let packed = try PackFixtures.pack(.bf16Planes, into: dir)
        let mpath = packed + "/" + PackManifest.fileName
        let text = try String(contentsOfFile: mpath, encoding: .utf8)
        let m = try PackManifest(directory: packed)
        try text.replacingOccurrences(of: m.files[2].sha256, with: String(repeating: "0", count: 64)).write(toFile: mpath, atomically: true, encoding: .utf8)
        let out = try OutputDirectory(dir + "/restored", force: false)
        #expect(throws: CompressionError.self) { try PackDirectory.unpack(packed, into: out, threads: 2) }
        out.abort()
        #expect(!FileManager.default.fileExists(atPath: dir + "/restored"))
    }
}
