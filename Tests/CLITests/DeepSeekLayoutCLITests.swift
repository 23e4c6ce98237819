import Foundation
import JSON
import TestSupport
import Testing

/// `reshard --layout deepseek` end to end: written, verified and run as DeepSeek's engine would,
/// merged back; bad combinations refused before anything is written.
@Suite struct DeepSeekLayoutCLITests {
    let fm = FileManager.default

    @Test func reshardVerifyRunAndMerge() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        let r = try CLI.run(["reshard", model, "--tp", "2", "--layout", "deepseek", "--out", dir + "/ds", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(try JSONParser.parse(r.stdout)["experts"]?.stringValue == "ep")
        let files = try fm.contentsOfDirectory(atPath: dir + "/ds").filter { $0.hasSuffix(".safetensors") }.sorted()
        #expect(files == ["model0-mp2.safetensors", "model1-mp2.safetensors"])
        let v = try CLI.run(["verify", dir + "/ds", "--prompt-ids", "1,2,3,4", "--max-new-tokens", "4", "--reference", model, "--json"])
        #expect(v.code == 0, "\(v.stderr)")
        let j = try JSONParser.parse(v.stdout)
        #expect(j["reference"]?["top1_agreement"]?.doubleValue == 1)
        #expect((j["reference"]?["kl_mean"]?.doubleValue ?? 1) <= 1e-9)
        let i = try CLI.run(["inspect", dir + "/ds", "--json"])
        #expect(try JSONParser.parse(i.stdout)["layout"]?.stringValue == "reshard tp 2, experts ep, layout deepseek")
        #expect(try CLI.run(["merge", dir + "/ds", "--out", dir + "/m"]).code == 0)
        #expect(try CLI.run(["verify", dir + "/m"]).code == 0)
        // A flipped byte in a rank file fails verify (sha256) and merge.
        let path = dir + "/ds/model1-mp2.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 3] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(try CLI.run(["verify", dir + "/ds"]).code == 1)
        #expect(try CLI.run(["merge", dir + "/ds", "--out", dir + "/m2"]).code == 1, "the same damage, the same code as verify")
    }

    @Test func badCombinationsAreRefusedBeforeWriting() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        let cases: [([String], String)] = [
            (["--tp", "3", "--layout", "deepseek"], "not divisible by tp 3"),
            (["--tp", "2", "--layout", "deepseek", "--experts", "tp"], "--experts ep"),
            (["--tp", "2", "--layout", "deepseek", "--compress"], "--compress"),
            (["--tp", "2", "--layout", "megatron"], "Please provide one of 'hf' and 'deepseek'"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(["reshard", model] + args + ["--out", dir + "/x"])
            #expect(r.code == 2 && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(!fm.fileExists(atPath: dir + "/x") && !fm.fileExists(atPath: dir + "/x.partial"))
        }
    }
}
