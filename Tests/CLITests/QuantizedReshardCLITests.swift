import Foundation
import JSON
import SafeTensors
import TestSupport
import Testing

/// Quantized (compressed-tensors pack-quantized) checkpoints through reshard, the tensor-parallel
/// engine and merge: packed words, scales and zero points cut only at whole words and groups,
/// each rank's weight_shape its own logical shape, and merge byte-identical to the source.
@Suite struct QuantizedReshardCLITests {
    let fm = FileManager.default
    static let trained = CLI.fixtures + "/trained-dsv2.5"

    func expectSameTensors(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let x = try ShardedCheckpoint(directory: a), y = try ShardedCheckpoint(directory: b)
        #expect(x.tensors.count == y.tensors.count, sourceLocation: sourceLocation)
        for t in x.tensors {
            let u = try y.require(t.info.name)
            #expect(u.info.dtype == t.info.dtype && u.info.shape == t.info.shape && u.data.elementsEqual(t.data),
                    "\(t.info.name) differs", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [["--bits", "4", "--group-size", "32"], ["--bits", "4", "--group-size", "32", "--asymmetric"], ["--bits", "8"]])
    func reshardRunAndMergeBack(scheme: [String]) throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let q = try CLI.run(["quantize", Self.trained] + scheme + ["--out", dir + "/q"])
        #expect(q.code == 0, "\(q.stderr)")
        for experts in ["tp", "ep"] {
            let out = dir + "/r-" + experts
            let r = try CLI.run(["reshard", dir + "/q", "--tp", "2", "--experts", experts, "--out", out])
            #expect(r.code == 0, "\(scheme) \(experts): \(r.stderr)")
            #expect(try CLI.run(["verify", out]).code == 0)
            // Each rank's weight_shape is its own logical shape (an o_proj split by columns).
            let rank = try ShardedCheckpoint(directory: out + "/rank-01")
            let shape = try rank.require("model.layers.0.self_attn.o_proj.weight_shape")
            #expect((0..<2).map { shape.data.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) } == [128, 64])
            // The engine on the ranks computes what the quantized model computes.
            let v = try CLI.run(["verify", out, "--prompt-ids", "100000,563,2128,317", "--max-new-tokens", "4",
                                 "--reference", dir + "/q", "--json"])
            #expect(v.code == 0, "\(v.stderr)")
            let j = try JSONParser.parse(v.stdout)
            #expect(j["reference"]?["top1_agreement"]?.doubleValue == 1)
            #expect((j["reference"]?["kl_max"]?.doubleValue ?? 1) <= 1e-6, "\(j["reference"] ?? .null)")
            let m = try CLI.run(["merge", out, "--out", out + "-merged"])
            #expect(m.code == 0, "\(m.stderr)")
            try expectSameTensors(dir + "/q", out + "-merged")
        }
    }

    /// A split that would put one group on two ranks is refused before anything is written.
    @Test func aGroupStraddlingTwoRanksIsRefused() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        #expect(try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--out", dir + "/q"]).code == 0)
        // Expert down_proj is 64 wide: 16 columns per rank at tp 4, half a group.
        let r = try CLI.run(["reshard", dir + "/q", "--tp", "4", "--out", dir + "/r"])
        #expect(r.code == 2 && r.stderr.contains("not a multiple of its group size 32") && r.stderr.contains("--experts ep"), "\(r.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/r"))
    }
}

/// `quantize --compress`: packed shards written in the same pass, run as they are, and unpacked
/// byte for byte into what the plain quantize writes.
@Suite struct QuantizeCompressCLITests {
    let fm = FileManager.default

    @Test func packedQuantizedOutputRunsAndUnpacksToThePlainOne() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let trained = CLI.fixtures + "/trained-dsv2.5"
        #expect(try CLI.run(["quantize", trained, "--bits", "4", "--group-size", "32", "--out", dir + "/q"]).code == 0)
        let c = try CLI.run(["quantize", trained, "--bits", "4", "--group-size", "32", "--compress", "--out", dir + "/qc"])
        #expect(c.code == 0, "\(c.stderr)")
        let names = try fm.contentsOfDirectory(atPath: dir + "/qc")
        #expect(names.contains("dsconv-pack-manifest.json") && names.contains { $0.hasSuffix(".safetensors.zst") })
        #expect(!names.contains { $0.hasSuffix(".safetensors") })
        let v = try CLI.run(["verify", dir + "/qc", "--prompt-ids", "100000,563,2128", "--max-new-tokens", "4", "--reference", dir + "/q", "--json"])
        #expect(v.code == 0, "\(v.stderr)")
        #expect(try JSONParser.parse(v.stdout)["reference"]?["kl_max"]?.doubleValue == 0)
        #expect(try CLI.run(["unpack", dir + "/qc", "--out", dir + "/u"]).code == 0)
        for name in try fm.contentsOfDirectory(atPath: dir + "/q") where !name.hasPrefix(".") {
            #expect(fm.contentsEqual(atPath: dir + "/q/" + name, andPath: dir + "/u/" + name), "\(name) differs after unpack")
        }
    }
}

/// Every method end to end on a V2-Lite-shaped model (q_proj, greedy routing), whose 10944-wide
/// dense down_proj no power-of-two group of 128 divides: `--group-fallback` gives it g64.
@Suite struct LiteQuantizeCLITests {
    let fm = FileManager.default

    @Test func everyMethodOnV2LiteWithTheGroupFallback() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let s = try CLI.run(["synth", "--like", "deepseek-v2-lite", "--layers", "2", "--experts", "8", "--hidden", "128", "--intermediate", "10944",
                             "--moe-intermediate", "64", "--tokenizer", CLI.fixtures + "/tiny-dsv2.5", "--out", dir + "/lite"])
        #expect(s.code == 0, "\(s.stderr)")
        for method in ["rtn", "gptq", "awq"] {
            let q = try CLI.run(["quantize", dir + "/lite", "--bits", "4", "--group-fallback", "--method", method, "--samples", "4", "--seq-len", "64",
                                 "--out", dir + "/q-" + method, "--json"])
            #expect(q.code == 0, "\(method): \(q.stderr)")
            let tensors = try JSONParser.parse(q.stdout)["tensors"]?.arrayValue ?? []
            let down = tensors.first { $0["name"]?.stringValue == "model.layers.0.mlp.down_proj.weight" }
            #expect(down?["treatment"]?.stringValue == "int4 g64 sym", "\(method): \(down ?? .null)")
            let v = try CLI.run(["verify", dir + "/q-" + method, "--prompt", "Hi", "--max-new-tokens", "4", "--reference", dir + "/lite",
                                 "--min-top1", "0", "--max-kl", "1", "--json"])
            #expect(v.code == 0, "\(method): \(v.stderr)")
        }
    }
}
