import Foundation
import JSON
import TestSupport
import Testing

/// Runs the built `dsconv` binary as a user would, checking exit codes, stdout JSON and stderr.
enum CLI {
    static let fixtures = Fixtures.root

    /// The dsconv executable this package built, next to the test bundle; never one from PATH.
    static let binary: String = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("dsconv").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        // The package's own build folder (tests run from a bundle outside it).
        let root = URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent()
        for config in ["debug", "release"] {
            let candidate = root.appendingPathComponent(".build/\(config)/dsconv").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        fatalError("the dsconv executable was not built: run `swift build` before the CLI tests (Scripts/test does)")
    }()

    struct Result {
        let code: Int32
        let stdout: String
        let stderr: String
    }

    static func run(_ args: [String], cwd: String? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        // Output goes to files, not pipes: reading pipes through FileHandle traps on EINTR.
        let base = NSTemporaryDirectory() + "dsconv-cli-out-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        p.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        p.standardError = FileHandle(forWritingAtPath: base + ".err")
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let o = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        let e = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        return Result(code: p.terminationStatus, stdout: o, stderr: e)
    }

    /// A small synthetic checkpoint (several shards) with the real tokenizer files.
    /// Rewrites a JSON object file (a manifest, a config) through `change`.
    static func editJSON(_ path: String, _ change: (inout JSONObject) -> Void) throws {
        guard case .object(var o) = try JSONParser.parse(String(contentsOfFile: path, encoding: .utf8)) else {
            Issue.record("\(path) is not a JSON object")
            return
        }
        change(&o)
        try JSONValue.object(o).serialized(pretty: true).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Overwrites the first bytes of a tensor's data in a checkpoint (found through its index).
    static func overwrite(_ model: String, tensor name: String, with new: [UInt8]) throws {
        let index = try JSONParser.parse(String(contentsOfFile: model + "/model.safetensors.index.json", encoding: .utf8))
        let file = try #require(index["weight_map"]?[name]?.stringValue)
        let path = model + "/" + file
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONParser.parse([UInt8](data[8..<(8 + n)]))
        let begin = try #require(header[name]?["data_offsets"]?.arrayValue?[0].integerValue)
        var bytes = [UInt8](data)
        bytes.replaceSubrange((8 + n + Int(begin))..<(8 + n + Int(begin) + new.count), with: new)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Overwrites the first element of a BF16 tensor of a checkpoint with `bits` (0x7FC1: a NaN).
    static func poison(_ model: String, tensor name: String, bits: UInt16 = 0x7FC1) throws {
        try overwrite(model, tensor: name, with: [UInt8(bits & 0xFF), UInt8(bits >> 8)])
    }

    static func smallCheckpoint(in dir: String) throws -> String {
        let out = dir + "/model"
        let r = try run(["synth", "--like", "deepseek-v2.5", "--layers", "2", "--hidden", "64", "--experts", "8",
                         "--vocab", "256", "--max-shard-size", "60KB", "--tokenizer", fixtures + "/tiny-dsv2.5", "--out", out])
        #expect(r.code == 0, "synth failed: \(r.stderr)")
        return out
    }
}

@Suite struct InspectVerifyCLITests {
    @Test func inspectFixtureJSON() throws {
        let r = try CLI.run(["inspect", CLI.fixtures + "/tiny-dsv2.5", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        let j = try JSONParser.parse(r.stdout)
        #expect(j["model_type"] == "deepseek_v2")
        #expect(j["num_hidden_layers"] == 3)
        #expect(j["tensors"] == 137)
        #expect(j["parameters_total"] == 13_410_992)
        #expect(j["dtypes"]?["BF16"] == 26_821_984)
        #expect(j["shards"]?.arrayValue?.count == 6)
        #expect(j["weight_bytes_per_gpu"]?["1"] == 26_821_984)
        #expect((j["weight_bytes_per_gpu"]?["8"]?.integerValue ?? 0) < 26_821_984 / 4)
    }

    @Test func verifyFixtureJSON() throws {
        let r = try CLI.run(["verify", CLI.fixtures + "/tiny-dsv2.5", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        let j = try JSONParser.parse(r.stdout)
        #expect(j["ok"] == true)
        #expect(j["problems"]?.arrayValue?.isEmpty == true)
        #expect(j["tensors_checked"] == 137)
        #expect(j["bytes_scanned"] == 26_821_984)
        // Piped: no progress bar escape codes.
        #expect(!r.stderr.contains("\r"))
    }

    @Test func verifySynthAndNaN() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        let clean = try CLI.run(["verify", model, "--json"])
        #expect(clean.code == 0, "\(clean.stderr)")
        // Find a tensor and put a NaN in it.
        let index = try JSONParser.parse(String(contentsOfFile: model + "/model.safetensors.index.json", encoding: .utf8))
        let name = "model.layers.1.self_attn.kv_b_proj.weight"
        let file = try #require(index["weight_map"]?[name]?.stringValue)
        try CLI.poison(model, tensor: name)
        let bad = try CLI.run(["verify", model, "--json"])
        #expect(bad.code == 1)
        let j = try JSONParser.parse(bad.stdout)
        #expect(j["ok"] == false)
        let p = try #require(j["problems"]?.arrayValue?.first)
        #expect(p["tensor"]?.stringValue == name)
        #expect(p["kind"]?.stringValue == "non_finite")
        #expect(p["file"]?.stringValue == file)
        let human = try CLI.run(["verify", model])
        #expect(human.code == 1)
        #expect(human.stderr.contains(name))
    }
}

/// Every bad input of the foundation issue: one clear line naming the file, exit code 2.
@Suite struct BadInputCLITests {
    /// Damages one shard of a fresh small checkpoint, runs verify, and checks the error.
    func expectDamaged(_ mutate: (String, inout [UInt8], inout String) throws -> Void, mentions: String,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        let shard = model + "/model-00002-of-" + (try FileManager.default.contentsOfDirectory(atPath: model)
            .first { $0.hasPrefix("model-00001-of-") }!.dropFirst("model-00001-of-".count))
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: shard)))
        var index = try String(contentsOfFile: model + "/model.safetensors.index.json", encoding: .utf8)
        try mutate(shard, &bytes, &index)
        try Data(bytes).write(to: URL(fileURLWithPath: shard))
        try index.write(toFile: model + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        for command in [["verify", model], ["inspect", model], ["verify", model, "--json"]] {
            let r = try CLI.run(command)
            // Damaged checkpoint data: exit 1, as every command gives it (ExitCodeCLITests).
            #expect(r.code == 1, "\(command[0]): exit \(r.code), stderr: \(r.stderr)", sourceLocation: sourceLocation)
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "expected one line: \(r.stderr)", sourceLocation: sourceLocation)
            #expect(r.stderr.hasPrefix("error: "), sourceLocation: sourceLocation)
            #expect(r.stderr.contains(mentions), "\(r.stderr) should mention \(mentions)", sourceLocation: sourceLocation)
            #expect(!r.stderr.contains("Fatal error"), sourceLocation: sourceLocation)
        }
    }

    func headerLength(_ bytes: [UInt8]) -> Int { (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) } }

    func rewriteHeader(_ bytes: inout [UInt8], _ edit: (String) -> String) {
        let n = headerLength(bytes)
        var text = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        text = edit(text)
        var h = Array(text.utf8)
        while h.count < n { h.append(0x20) }
        bytes.replaceSubrange(8..<(8 + n), with: h)
        for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: h.count >> (8 * i)) }
    }

    @Test func truncatedShard() throws {
        try expectDamaged({ _, b, _ in b.removeLast(100) }, mentions: "truncated")
    }

    @Test func headerLengthLargerThanFile() throws {
        try expectDamaged({ _, b, _ in
            let big = UInt64(b.count + 10)
            for i in 0..<8 { b[i] = UInt8(truncatingIfNeeded: big >> (8 * UInt64(i))) }
        }, mentions: "past the end")
    }

    @Test func overlappingOffsets() throws {
        try expectDamaged({ _, b, _ in
            rewriteHeader(&b) { text in
                // Shift the second tensor's begin back by 2 bytes and keep it in bounds.
                guard let j = try? JSONParser.parse(text), let o = j.objectValue else { return text }
                let entries = o.pairs.filter { $0.key != "__metadata__" }
                    .sorted { ($0.value["data_offsets"]?.arrayValue?[0].integerValue ?? 0) < ($1.value["data_offsets"]?.arrayValue?[0].integerValue ?? 0) }
                let second = entries[1]
                let b0 = second.value["data_offsets"]!.arrayValue![0].integerValue!
                let e0 = second.value["data_offsets"]!.arrayValue![1].integerValue!
                return text.replacingOccurrences(of: "\"data_offsets\":[\(b0),\(e0)]", with: "\"data_offsets\":[\(b0 - 2),\(e0 - 2)]")
            }
        }, mentions: "overlap")
    }

    @Test func gappedOffsets() throws {
        try expectDamaged({ _, b, _ in
            rewriteHeader(&b) { text in
                guard let j = try? JSONParser.parse(text), let o = j.objectValue else { return text }
                let first = o.pairs.first { $0.value["data_offsets"]?.arrayValue?[0] == 0 }!
                let e0 = first.value["data_offsets"]!.arrayValue![1].integerValue!
                // First tensor starts 2 bytes late (same length): a hole at 0 and an overlap later; the hole is found first.
                return text.replacingOccurrences(of: "\"data_offsets\":[0,\(e0)]", with: "\"data_offsets\":[2,\(e0 + 2)]")
            }
        }, mentions: "hole")
    }

    @Test func headerNotJSON() throws {
        try expectDamaged({ _, b, _ in b[8] = UInt8(ascii: "x") }, mentions: "not valid JSON")
    }

    @Test func unknownDType() throws {
        try expectDamaged({ _, b, _ in rewriteHeader(&b) { $0.replacingOccurrences(of: "\"BF16\"", with: "\"BF17\"") } }, mentions: "unknown dtype \"BF17\"")
    }

    @Test func shapeByteCountOverflows() throws {
        try expectDamaged({ _, b, _ in
            rewriteHeader(&b) { text in
                guard let r = text.range(of: "\"shape\":[") else { return text }
                let end = text[r.upperBound...].firstIndex(of: "]")!
                let old = String(text[r.upperBound..<end])
                _ = old
                var t = text
                t.replaceSubrange(r.upperBound..<end, with: "99999999999,99999999999")
                return t
            }
        }, mentions: "overflows")
    }

    @Test func indexNamesMissingFile() throws {
        try expectDamaged({ _, _, index in
            index = index.replacingOccurrences(of: "\"model.norm.weight\": \"model-", with: "\"model.norm.weight\": \"gone-model-")
        }, mentions: "does not exist")
    }

    @Test func indexEntryInAnotherFile() throws {
        try expectDamaged({ _, _, index in
            let j = try JSONParser.parse(index)
            let file = j["weight_map"]!["model.norm.weight"]!.stringValue!
            let other = j["weight_map"]!["model.embed_tokens.weight"]!.stringValue!
            index = index.replacingOccurrences(of: "\"model.norm.weight\": \"\(file)\"", with: "\"model.norm.weight\": \"\(other)\"")
        }, mentions: "but lives in")
    }

    @Test func configMissingRequiredField() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        var text = try String(contentsOfFile: model + "/config.json", encoding: .utf8)
        text = text.split(separator: "\n").filter { !$0.contains("\"num_attention_heads\"") }.joined(separator: "\n")
        try text.write(toFile: model + "/config.json", atomically: true, encoding: .utf8)
        let r = try CLI.run(["verify", model])
        #expect(r.code == 2)
        #expect(r.stderr.contains("config.json") && r.stderr.contains("num_attention_heads"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
    }

    @Test func synthRefusesExistingOutput() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        let r = try CLI.run(["synth", "--like", "deepseek-v2.5", "--layers", "1", "--hidden", "64", "--experts", "8", "--vocab", "256", "--out", model])
        #expect(r.code == 2)
        #expect(r.stderr.contains("already exists"))
        let missing = try CLI.run(["verify", dir + "/nope"])
        #expect(missing.code == 2)
    }
}
