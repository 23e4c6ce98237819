import Foundation
import JSON
import TestSupport
import Testing

@testable import SafeTensors

@Suite struct WriterAndIndexTests {
    let specs = [
        TensorSpec(name: "w.a", dtype: .bf16, shape: [4, 8]),
        TensorSpec(name: "w.b", dtype: .f32, shape: [16]),
        TensorSpec(name: "w.c", dtype: .i8, shape: [3, 5]),
        TensorSpec(name: "w.d", dtype: .bf16, shape: [64]),
    ]

    func bytes(for spec: TensorSpec) -> [UInt8] {
        (0..<spec.byteCount).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ spec.name.count) }
    }

    @Test func writeReadRoundTripSharded() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = ShardedWriter(directory: dir, tensors: specs, maxShardSize: 100)
        #expect(writer.layout.shards.count == 3)
        for s in specs {
            let b = bytes(for: s)
            if s.dtype == .f32 {
                // Producer in two pieces.
                try writer.write(s.name, from: .producer { w in
                    try b.withUnsafeBytes { buf in
                        try w.write(UnsafeRawBufferPointer(rebasing: buf[0..<10]))
                        try w.write(UnsafeRawBufferPointer(rebasing: buf[10...]))
                    }
                })
            } else {
                try b.withUnsafeBytes { try writer.write(s.name, from: .bytes($0)) }
            }
        }
        try writer.finish()
        let names = try listDirectory(dir).sorted()
        #expect(names == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                          "model-00003-of-00003.safetensors", "model.safetensors.index.json"])
        let ckpt = try ShardedCheckpoint(directory: dir)
        #expect(ckpt.tensors.count == 4)
        for s in specs {
            let loc = try #require(ckpt[s.name])
            #expect(loc.info.shape == s.shape)
            #expect(loc.info.dtype == s.dtype)
            #expect(Array(loc.data) == bytes(for: s))
        }
        // Data sections are 8-byte aligned.
        for f in ckpt.files { #expect(f.header.dataStart % 8 == 0) }
    }

    @Test func writerRefusesOutOfOrderAndShortWrites() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try SafeTensorsWriter(path: dir + "/x.safetensors", tensors: Array(specs.prefix(2)))
        #expect(throws: SafeTensorsError.self) { try bytes(for: specs[1]).withUnsafeBytes { try w.write("w.b", from: .bytes($0)) } }
        #expect(throws: SafeTensorsError.self) { try w.write("w.a", from: .producer { _ in }) }
        #expect(throws: SafeTensorsError.self) { try w.finish() }
        w.abort()
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.safetensors"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.safetensors.tmp"))
    }

    /// Writes a two-file checkpoint and returns its directory.
    func twoShardCheckpoint() throws -> String {
        let dir = temporaryDirectory()
        let writer = ShardedWriter(directory: dir, tensors: specs, maxShardSize: 80)
        for s in specs { try bytes(for: s).withUnsafeBytes { try writer.write(s.name, from: .bytes($0)) } }
        try writer.finish()
        return dir
    }

    func rewriteIndex(_ dir: String, _ edit: (inout String) -> Void) throws {
        let path = dir + "/model.safetensors.index.json"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        edit(&text)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test func indexNamingMissingFile() throws {
        let dir = try twoShardCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rewriteIndex(dir) { $0 = $0.replacingOccurrences(of: "\"w.a\": \"model-00001-of-00003.safetensors\"", with: "\"w.a\": \"model-00009-of-00009.safetensors\"") }
        #expect { try ShardedCheckpoint(directory: dir) } throws: { e in
            guard case .indexMissingFile(_, "w.a", "model-00009-of-00009.safetensors") = e as? SafeTensorsError else { return false }
            return true
        }
    }

    @Test func indexEntryInOtherFile() throws {
        let dir = try twoShardCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let original = try String(contentsOfFile: dir + "/model.safetensors.index.json", encoding: .utf8)
        let wa = try #require(try JSONParser.parse(original)["weight_map"]?["w.a"]?.stringValue)
        let other = try #require(try JSONParser.parse(original)["weight_map"]?["w.d"]?.stringValue)
        #expect(wa != other)
        try rewriteIndex(dir) { $0 = $0.replacingOccurrences(of: "\"w.a\": \"\(wa)\"", with: "\"w.a\": \"\(other)\"") }
        #expect { try ShardedCheckpoint(directory: dir) } throws: { e in
            guard case .indexTensorNotInFile(_, "w.a", other, wa) = e as? SafeTensorsError else { return false }
            return (e as! SafeTensorsError).description.contains("lives in \(wa)")
        }
    }

    @Test func indexMissingATensorAndDuplicateEntry() throws {
        let dir = try twoShardCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let original = try String(contentsOfFile: dir + "/model.safetensors.index.json", encoding: .utf8)
        try rewriteIndex(dir) { text in
            text = text.split(separator: "\n").filter { !$0.contains("\"w.b\"") }.joined(separator: "\n")
        }
        #expect { try ShardedCheckpoint(directory: dir) } throws: { e in
            guard case .tensorNotIndexed(_, "w.b", _) = e as? SafeTensorsError else { return false }
            return true
        }
        try original.replacingOccurrences(of: "\"w.b\":", with: "\"w.a\": \"model-00001-of-00003.safetensors\",\n    \"w.b\":")
            .write(toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        #expect { try ShardedCheckpoint(directory: dir) } throws: { e in
            guard case .indexInvalid(_, let reason) = e as? SafeTensorsError else { return false }
            return reason.contains("indexed twice")
        }
    }

    @Test func outputDirectoryIsAtomic() throws {
        let base = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let out = try OutputDirectory(base + "/out", force: false)
        try writeFileAtomically(out.path("a.txt"), "hello")
        #expect(!FileManager.default.fileExists(atPath: base + "/out"))
        try out.commit()
        #expect(FileManager.default.fileExists(atPath: base + "/out/a.txt"))
        #expect(throws: SafeTensorsError.outputExists(path: base + "/out")) { try OutputDirectory(base + "/out", force: false) }
        let again = try OutputDirectory(base + "/out", force: true)
        again.abort()
        #expect(!FileManager.default.fileExists(atPath: base + "/out.partial"))
        #expect(FileManager.default.fileExists(atPath: base + "/out/a.txt"))
    }

    @Test func jsonParserEdgeCases() throws {
        let v = try JSONParser.parse(#"{"a":[1,-2.5e3,true,null,"\u00e9\ud83d\ude00\n"],"b":{}}"#)
        #expect(v["a"]?.arrayValue?[0] == .integer(1))
        #expect(v["a"]?.arrayValue?[1] == .number(-2500))
        #expect(v["a"]?.arrayValue?[4] == .string("é😀\n"))
        #expect(throws: JSONParseError.self) { try JSONParser.parse("[1,]") }
        #expect(throws: JSONParseError.self) { try JSONParser.parse("01") }
        #expect(throws: JSONParseError.self) { try JSONParser.parse(String(repeating: "[", count: 1000)) }
        let round = try JSONParser.parse(v.serialized())
        #expect(round == v)
    }
}
