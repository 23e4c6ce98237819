import Foundation
import JSON
import TestSupport
import Testing

/// Issue #9 §2: manifests are checked end to end — checksums before a merge, names that stay
/// inside their directory, known versions only, complete file lists.
@Suite struct ManifestIntegrityCLITests {
    let fm = FileManager.default

    func manifest(_ path: String) throws -> JSONValue { try JSONParser.parse(String(contentsOfFile: path, encoding: .utf8)) }

    func edit(_ path: String, _ change: (inout JSONObject) -> Void) throws { try CLI.editJSON(path, change) }

    @Test func mergeRefusesFlippedBitsAndSwappedRankFiles() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        #expect(try CLI.run(["reshard", model, "--tp", "2", "--out", dir + "/r"]).code == 0)
        let shard = try #require(try fm.contentsOfDirectory(atPath: dir + "/r/rank-00").sorted().first { $0.hasSuffix(".safetensors") })
        // Two rank files swapped: each is a valid safetensors file, only the checksums tell.
        try fm.moveItem(atPath: dir + "/r/rank-00/" + shard, toPath: dir + "/swap")
        try fm.moveItem(atPath: dir + "/r/rank-01/" + shard, toPath: dir + "/r/rank-00/" + shard)
        try fm.moveItem(atPath: dir + "/swap", toPath: dir + "/r/rank-01/" + shard)
        let swapped = try CLI.run(["merge", dir + "/r", "--out", dir + "/m"])
        #expect(swapped.code == 1 && swapped.stderr.contains("differ from the manifest") && swapped.stderr.contains(shard), "\(swapped.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/m"))
        // Swap back, then flip one bit in the data.
        try fm.moveItem(atPath: dir + "/r/rank-00/" + shard, toPath: dir + "/swap")
        try fm.moveItem(atPath: dir + "/r/rank-01/" + shard, toPath: dir + "/r/rank-00/" + shard)
        try fm.moveItem(atPath: dir + "/swap", toPath: dir + "/r/rank-01/" + shard)
        #expect(try CLI.run(["merge", dir + "/r", "--out", dir + "/ok"]).code == 0)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/r/rank-01/" + shard)))
        bytes[bytes.count - 3] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/r/rank-01/" + shard))
        let flipped = try CLI.run(["merge", dir + "/r", "--out", dir + "/m"])
        #expect(flipped.code == 1 && flipped.stderr.contains("rank-01/" + shard), "\(flipped.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/m"))
    }

    @Test func manifestNamesVersionsAndEntriesAreChecked() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        #expect(try CLI.run(["reshard", model, "--tp", "2", "--out", dir + "/r"]).code == 0)
        let path = dir + "/r/dsconv-manifest.json"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        let cases: [(String, (inout JSONObject) -> Void, String)] = [
            ("a file name reaching outside", { o in
                guard case .array(var ranks)? = o["ranks"], case .object(var r0) = ranks[0], case .array(var files)? = r0["files"],
                      case .object(var f0) = files[0] else { return }
                f0["name"] = "../../../etc/passwd"
                files[0] = .object(f0); r0["files"] = .array(files); ranks[0] = .object(r0); o["ranks"] = .array(ranks)
            }, "a plain file name"),
            ("an unknown version", { $0["version"] = 99 }, "version 99 is not supported"),
            ("no tensors", { $0["tensors"] = nil }, "missing or empty \"tensors\""),
        ]
        // A manifest describing another split than config.json implies (two ranks' pieces of a
        // row-split tensor swapped): verify reports it, merge refuses it.
        try original.write(toFile: path, atomically: true, encoding: .utf8)
        try edit(path) { o in
            guard case .array(var tensors)? = o["tensors"], case .object(var t0) = tensors[0], case .array(var slices)? = t0["slices"],
                  slices.count == 2, case .object(var s0) = slices[0], case .object(var s1) = slices[1] else { return }
            let a = s0["offset"], b = s1["offset"]
            s0["offset"] = b; s1["offset"] = a
            slices = [.object(s0), .object(s1)]; t0["slices"] = .array(slices); tensors[0] = .object(t0); o["tensors"] = .array(tensors)
        }
        let swapped = try CLI.run(["verify", dir + "/r"])
        #expect(swapped.code == 1 && swapped.stderr.contains("slices differ from the tp 2"), "\(swapped.stderr)")
        let merged = try CLI.run(["merge", dir + "/r", "--out", dir + "/m"])
        #expect(merged.code == 1 && merged.stderr.contains("refusing to merge"), "\(merged.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/m"))
        for (what, change, message) in cases {
            try original.write(toFile: path, atomically: true, encoding: .utf8)
            try edit(path, change)
            for args in [["verify", dir + "/r"], ["merge", dir + "/r", "--out", dir + "/m"]] {
                let r = try CLI.run(args)
                #expect(r.code == 1 && r.stderr.contains(message), "\(what), \(args[0]): \(r.stderr)")
            }
            #expect(!fm.fileExists(atPath: dir + "/m"))
        }
    }

    @Test func unpackRefusesAManifestWithAnEntryRemovedAndUnknownVersions() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        #expect(try CLI.run(["pack", model, "--out", dir + "/p"]).code == 0)
        let path = dir + "/p/dsconv-pack-manifest.json"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        try edit(path) { o in
            guard case .array(let files)? = o["files"] else { return }
            o["files"] = .array(Array(files.dropFirst()))
        }
        let dropped = try CLI.run(["unpack", dir + "/p", "--out", dir + "/u"])
        #expect(dropped.code == 1 && dropped.stderr.contains("does not list"), "\(dropped.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/u"))
        try original.write(toFile: path, atomically: true, encoding: .utf8)
        try edit(path) { $0["version"] = 7 }
        let version = try CLI.run(["unpack", dir + "/p", "--out", dir + "/u"])
        #expect(version.code == 1 && version.stderr.contains("version 7 is not supported"), "\(version.stderr)")
    }

    @Test func aTamperedCopiedFileFailsVerifyOfThePackedDirectory() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        #expect(try CLI.run(["pack", model, "--out", dir + "/p"]).code == 0)
        #expect(try CLI.run(["verify", dir + "/p"]).code == 0)
        var template = try String(contentsOfFile: dir + "/p/tokenizer_config.json", encoding: .utf8)
        template = template.replacingOccurrences(of: "add_generation_prompt", with: "add_generation_prompt ")
        try template.write(toFile: dir + "/p/tokenizer_config.json", atomically: true, encoding: .utf8)
        let r = try CLI.run(["verify", dir + "/p"])
        #expect(r.code == 1 && r.stderr.contains("tokenizer_config.json") && r.stderr.contains("manifest says"), "\(r.stderr)")
        let p = try CLI.run(["verify", dir + "/p", "--prompt", "hi", "--max-new-tokens", "1"])
        #expect(p.code == 1 && p.stderr.contains("not generating"), "\(p.stderr)")
    }
}
