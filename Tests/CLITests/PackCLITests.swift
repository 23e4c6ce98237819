import Foundation
import JSON
import TestSupport
import Testing

@Suite struct PackCLITests {
    static let tiny = CLI.fixtures + "/tiny-dsv2.5"

    @Test func packVerifyRunAndUnpack() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try CLI.run(["pack", Self.tiny, "--out", dir + "/packed", "--json"])
        #expect(p.code == 0, "\(p.stderr)")
        let j = try JSONParser.parse(p.stdout)
        #expect((j["bits_per_16bit_weight"]?.doubleValue ?? 16) < 10.7)
        #expect(FileManager.default.fileExists(atPath: dir + "/packed/model-00001-of-00006.safetensors.zst"))

        let v = try CLI.run(["verify", dir + "/packed", "--prompt", "Write a short poem about the sea.", "--max-new-tokens", "8",
                             "--reference", Self.tiny, "--json"])
        #expect(v.code == 0, "\(v.stderr)")
        let r = try JSONParser.parse(v.stdout)
        #expect(r["reference"]?["max_abs_logit_diff"]?.doubleValue == 0)
        #expect(r["integrity"]?["ok"] == true)

        let u = try CLI.run(["unpack", dir + "/packed", "--out", dir + "/restored"])
        #expect(u.code == 0, "\(u.stderr)")
        for name in try FileManager.default.contentsOfDirectory(atPath: Self.tiny) {
            #expect(FileManager.default.contentsEqual(atPath: Self.tiny + "/" + name, andPath: dir + "/restored/" + name), "\(name)")
        }
    }

    @Test func damagedPackIsReported() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try CLI.run(["pack", Self.tiny, "--out", dir + "/packed"])
        let path = dir + "/packed/model-00002-of-00006.safetensors.zst"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let v = try CLI.run(["verify", dir + "/packed", "--json"])
        #expect(v.code == 1, "\(v.stderr)")
        let u = try CLI.run(["unpack", dir + "/packed", "--out", dir + "/restored"])
        #expect(u.code == 1, "the same damage, the same code as verify: \(u.stderr)")
        #expect(u.stderr.contains("model-00002-of-00006.safetensors.zst") && u.stderr.contains("byte offset"), "\(u.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/restored"))
    }
}

@Suite struct InspectLayoutsCLITests {
    @Test func inspectReadsPackedAndReshardOutputs() throws {
        let tiny = CLI.fixtures + "/tiny-dsv2.5"
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try CLI.run(["pack", tiny, "--out", dir + "/packed"]).code == 0)
        #expect(try CLI.run(["reshard", tiny, "--tp", "2", "--out", dir + "/tp2"]).code == 0)
        for (path, layout, shards) in [(dir + "/packed", "packed", 6), (dir + "/tp2", "reshard tp 2", 2)] {
            let r = try CLI.run(["inspect", path, "--json"])
            #expect(r.code == 0, "\(r.stderr)")
            let j = try JSONParser.parse(r.stdout)
            #expect(j["parameters_total"] == 13_410_992)
            #expect(j["tensors"] == 137)
            #expect(j["dtypes"]?["BF16"] == 26_821_984)
            #expect(j["layout"]?.stringValue?.hasPrefix(layout) == true)
            #expect(j["shards"]?.arrayValue?.count == shards)
        }
    }
}
