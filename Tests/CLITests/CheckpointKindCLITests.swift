import Foundation
import JSON
import TestSupport
import Testing

/// Every command opens its input through one detector (`Checkpoints.CheckpointKind`): each kind
/// runs where it can, and a command given the wrong kind says what it got and what to do.
@Suite struct CheckpointKindCLITests {
    let fm = FileManager.default

    @Test func everyKindIsDetectedOnceAndRefusedWhereItCannotBeRead() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        #expect(try CLI.run(["pack", model, "--out", dir + "/p"]).code == 0)
        #expect(try CLI.run(["reshard", model, "--tp", "2", "--out", dir + "/r"]).code == 0)

        // inspect and verify read every kind; verify --prompt runs each as the same model.
        var generated: [[Int]] = []
        for (d, layout) in [(model, "safetensors"), (dir + "/p", "packed"), (dir + "/r", "reshard tp 2")] {
            let i = try CLI.run(["inspect", d, "--json"])
            #expect(i.code == 0, "\(i.stderr)")
            #expect(try JSONParser.parse(i.stdout)["layout"]?.stringValue?.hasPrefix(layout) == true)
            let v = try CLI.run(["verify", d, "--prompt-ids", "1,2,3,4", "--max-new-tokens", "4", "--reference", model, "--json"])
            #expect(v.code == 0, "\(d): \(v.stderr)")
            let j = try JSONParser.parse(v.stdout)
            generated.append(j["generated_ids"]?.arrayValue?.compactMap { $0.integerValue.map(Int.init) } ?? [])
            #expect(j["reference"]?["top1_agreement"]?.doubleValue == 1)
        }
        #expect(generated.count == 3 && Set(generated.map { $0.description }).count == 1, "\(generated)")

        // The wrong kind for a command: exit 2, naming the kind and the way out; nothing written.
        let refusals: [([String], String)] = [
            (["reshard", dir + "/p", "--tp", "2", "--out", dir + "/x"], "packed directory"),
            (["pack", dir + "/r", "--out", dir + "/x"], "reshard output"),
            (["merge", model, "--out", dir + "/x"], "a safetensors checkpoint"),
            (["unpack", model, "--out", dir + "/x"], "a safetensors checkpoint"),
            (["unpack", dir + "/r", "--out", dir + "/x"], "reshard output"),
        ]
        for (args, kind) in refusals {
            let r = try CLI.run(args)
            #expect(r.code == 2 && r.stderr.contains(kind), "\(args[0]) \(args[1]): \(r.code) \(r.stderr)")
            #expect(!fm.fileExists(atPath: dir + "/x"))
        }
    }

    /// The pack manifest read is as strict as the reshard one: version required, entries well formed.
    @Test func packManifestVersionAndEntriesAreRequired() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        #expect(try CLI.run(["pack", model, "--out", dir + "/p"]).code == 0)
        let path = dir + "/p/dsconv-pack-manifest.json"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        let cases: [(String, (inout JSONObject) -> Void, String)] = [
            ("no version", { $0["version"] = nil }, "missing \"version\""),
            ("a copied entry without its sha256", { o in
                guard case .array(var copied)? = o["copied"], case .object(var c0) = copied[0] else { return }
                c0["sha256"] = nil
                copied[0] = .object(c0)
                o["copied"] = .array(copied)
            }, "copied[0]"),
            ("an unknown transform", { $0["bf16_transform"] = "bf16-magic" }, "bf16_transform"),
        ]
        for (what, change, message) in cases {
            try original.write(toFile: path, atomically: true, encoding: .utf8)
            try CLI.editJSON(path, change)
            for args in [["verify", dir + "/p"], ["unpack", dir + "/p", "--out", dir + "/u"]] {
                let r = try CLI.run(args)
                #expect(r.code == 1 && r.stderr.contains(message), "\(what), \(args[0]): \(r.stderr)")
            }
            #expect(!fm.fileExists(atPath: dir + "/u"))
        }
    }
}
