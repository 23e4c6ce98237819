import Foundation
import JSON
import TestSupport
import Testing

@Suite struct ReshardCLITests {
    static let tiny = CLI.fixtures + "/tiny-dsv2.5"

    @Test func reshardMergeAndVerifySharded() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dry = try CLI.run(["reshard", Self.tiny, "--tp", "2", "--dry-run", "--json"])
        #expect(dry.code == 0, "\(dry.stderr)")
        let plan = try JSONParser.parse(dry.stdout)
        #expect(plan["bytes_per_rank"]?.arrayValue?.count == 2)
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))

        let r = try CLI.run(["reshard", Self.tiny, "--tp", "2", "--experts", "ep", "--out", dir + "/out"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stderr.contains("[137/137]"))
        #expect(FileManager.default.fileExists(atPath: dir + "/out/dsconv-manifest.json"))
        let again = try CLI.run(["reshard", Self.tiny, "--tp", "2", "--out", dir + "/out"])
        #expect(again.code == 2 && again.stderr.contains("already exists"))

        let v = try CLI.run(["verify", dir + "/out", "--prompt", "Write a short poem about the sea.", "--max-new-tokens", "8",
                             "--reference", Self.tiny, "--json"])
        #expect(v.code == 0, "\(v.stderr)")
        let j = try JSONParser.parse(v.stdout)
        #expect(j["reference"]?["top1_agreement"]?.doubleValue == 1)
        #expect((j["reference"]?["relative_l2"]?.doubleValue ?? 1) <= 1e-5)
        #expect(j["generated_ids"]?.arrayValue?.prefix(4).map { $0.integerValue ?? 0 } == [64989, 49907, 54958, 46918])

        let m = try CLI.run(["merge", dir + "/out", "--out", dir + "/merged"])
        #expect(m.code == 0, "\(m.stderr)")
        let clean = try CLI.run(["verify", dir + "/merged", "--json"])
        #expect(clean.code == 0, "\(clean.stderr)")
    }

    @Test func refusals() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let three = try CLI.run(["reshard", Self.tiny, "--tp", "3", "--out", dir + "/a"])
        #expect(three.code == 2)
        #expect(three.stderr.contains("3 ways") && three.stderr.contains("dim 0"), "\(three.stderr)")
        let ep = try CLI.run(["reshard", Self.tiny, "--tp", "32", "--experts", "ep", "--out", dir + "/b"])
        #expect(ep.code == 2 && ep.stderr.contains("n_routed_experts 16"), "\(ep.stderr)")
        let group = try CLI.run(["reshard", Self.tiny, "--tp", "2", "--group-size", "128", "--dry-run"])
        #expect(group.code == 2 && group.stderr.contains("group-size 128"), "\(group.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/a") && !FileManager.default.fileExists(atPath: dir + "/b"))
    }

    @Test func sourceWithNaNIsRefusedAndNothingIsLeft() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        let index = try JSONParser.parse(String(contentsOfFile: model + "/model.safetensors.index.json", encoding: .utf8))
        let name = "model.layers.1.mlp.shared_experts.up_proj.weight"
        let file = try #require(index["weight_map"]?[name]?.stringValue)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: model + "/" + file)))
        let n = (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) }
        let header = try JSONParser.parse(Array(bytes[8..<(8 + n)]))
        let begin = Int(try #require(header[name]?["data_offsets"]?.arrayValue?[0].integerValue))
        bytes[8 + n + begin] = 0x80; bytes[8 + n + begin + 1] = 0x7F  // +Inf
        try Data(bytes).write(to: URL(fileURLWithPath: model + "/" + file))
        let r = try CLI.run(["reshard", model, "--tp", "2", "--out", dir + "/out"])
        #expect(r.code == 1, "\(r.stderr)")
        #expect(r.stderr.contains(name))
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.partial"))
    }

    @Test func fullDiskLeavesNoOutput() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A 2 MB file-size limit stands in for a full disk: the first large write fails (EFBIG).
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "ulimit -f 2048; exec \"$0\" reshard \"$1\" --tp 2 --out \"$2\" 2>\"$3\"", CLI.binary, Self.tiny, dir + "/out", dir + "/err"]
        try p.run()
        p.waitUntilExit()
        let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
        #expect(p.terminationStatus == 3, "exit \(p.terminationStatus): \(err)")
        #expect(err.contains("write failed"), "\(err)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.partial"))
    }
}

@Suite struct ReshardCompressCLITests {
    @Test func compressedReshardRunsMergesAndUnpacks() throws {
        let tiny = CLI.fixtures + "/tiny-dsv2.5"
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["reshard", tiny, "--tp", "2", "--compress", "--out", dir + "/packed"])
        #expect(r.code == 0, "\(r.stderr)")
        let rank = dir + "/packed/rank-01"
        #expect(FileManager.default.fileExists(atPath: rank + "/model-00001-of-00001.safetensors.zst"))
        #expect(!FileManager.default.fileExists(atPath: rank + "/model-00001-of-00001.safetensors"))
        // Packing while writing gives the same file as packing the plain reshard afterwards.
        let plain = try CLI.run(["reshard", tiny, "--tp", "2", "--out", dir + "/plain"])
        #expect(plain.code == 0)
        let pack = try CLI.run(["pack", dir + "/plain/rank-01", "--out", dir + "/plain-packed"])
        #expect(pack.code == 0, "\(pack.stderr)")
        #expect(FileManager.default.contentsEqual(atPath: rank + "/model-00001-of-00001.safetensors.zst",
                                                  andPath: dir + "/plain-packed/model-00001-of-00001.safetensors.zst"))
        // The packed shards run as a 2-rank engine, merge back, and unpack byte for byte.
        let v = try CLI.run(["verify", dir + "/packed", "--prompt", "Write a short poem about the sea.", "--max-new-tokens", "4",
                             "--reference", tiny, "--json"])
        #expect(v.code == 0, "\(v.stderr)")
        let j = try JSONParser.parse(v.stdout)
        #expect(j["reference"]?["top1_agreement"]?.doubleValue == 1)
        let m = try CLI.run(["merge", dir + "/packed", "--out", dir + "/merged"])
        #expect(m.code == 0, "\(m.stderr)")
        let mv = try CLI.run(["verify", dir + "/merged", "--json"])
        #expect(mv.code == 0, "\(mv.stderr)")
        let u = try CLI.run(["unpack", rank, "--out", dir + "/unpacked"])
        #expect(u.code == 0, "\(u.stderr)")
        #expect(FileManager.default.contentsEqual(atPath: dir + "/unpacked/model-00001-of-00001.safetensors",
                                                  andPath: dir + "/plain/rank-01/model-00001-of-00001.safetensors"))
    }
}
