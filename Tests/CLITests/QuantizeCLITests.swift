import Foundation
import JSON
import TestSupport
import Testing

/// quantize → verify → eval on the trained fixture (realistic activations), and the refusals.
@Suite struct QuantizeCLITests {
    static let trained = CLI.fixtures + "/trained-dsv2.5"
    static let heldOut = CLI.fixtures + "/eval-heldout.txt"
    let fm = FileManager.default

    func eval(_ model: String) throws -> JSONValue {
        let r = try CLI.run(["eval", model, "--reference", Self.trained, "--text", Self.heldOut, "--seq-len", "256", "--windows", "3", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        return try JSONParser.parse(r.stdout)
    }

    @Test func int8AndInt4OutputsVerifyRunAndStayCloseToTheSource() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        // int8 per channel: compressed-tensors layout, config, verify.
        let q8 = try CLI.run(["quantize", Self.trained, "--bits", "8", "--out", dir + "/q8", "--json"])
        #expect(q8.code == 0, "\(q8.stderr)")
        let report = try JSONParser.parse(q8.stdout)
        let tensors = report["tensors"]?.arrayValue ?? []
        #expect(tensors.contains { $0["name"]?.stringValue == "model.layers.1.mlp.experts.3.down_proj.weight" && $0["treatment"]?.stringValue == "int8 per-channel sym" })
        #expect(tensors.contains { $0["name"]?.stringValue == "model.layers.0.self_attn.kv_b_proj.weight" && ($0["treatment"]?.stringValue ?? "").hasPrefix("kept BF16: kv_b_proj") })
        let config = try JSONParser.parse(String(contentsOfFile: dir + "/q8/config.json", encoding: .utf8))
        let q = try #require(config["quantization_config"])
        #expect(q["format"]?.stringValue == "pack-quantized" && q["quant_method"]?.stringValue == "compressed-tensors")
        #expect(q["config_groups"]?["group_0"]?["weights"]?["strategy"]?.stringValue == "channel")
        #expect(q["ignore"]?.arrayValue?.contains(.string("lm_head")) == true)
        #expect(config["hidden_size"]?.integerValue == 128, "the source's config keys are kept")
        let index = try JSONParser.parse(String(contentsOfFile: dir + "/q8/model.safetensors.index.json", encoding: .utf8))
        #expect(index["weight_map"]?["model.layers.2.self_attn.o_proj.weight_packed"] != nil)
        #expect(index["weight_map"]?["model.layers.2.self_attn.o_proj.weight"] == nil)
        let v = try CLI.run(["verify", dir + "/q8", "--json"])
        #expect(v.code == 0, "\(v.stderr)")
        let e8 = try eval(dir + "/q8")
        #expect((e8["kl_mean"]?.doubleValue ?? 1) <= 1e-4, "int8 KL mean \(e8["kl_mean"]?.doubleValue ?? -1) (target ≤ 1e-4)")

        // int4 g32: RTN, then GPTQ calibrated on the fixture's calibration text must halve RTN's KL.
        let rtn = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--out", dir + "/rtn"])
        #expect(rtn.code == 0, "\(rtn.stderr)")
        let gptq = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--method", "gptq",
                                "--text", Self.trained + "/calibration.txt", "--seq-len", "256", "--samples", "8", "--out", dir + "/gptq"])
        #expect(gptq.code == 0, "\(gptq.stderr)")
        #expect(gptq.stderr.contains("calibrated layer 3"))
        // Calibration passes on bf16 activations (AMX / AVX-512 BF16 where present): the same quality target.
        let fast = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--method", "gptq", "--bf16-activations",
                                "--text", Self.trained + "/calibration.txt", "--seq-len", "256", "--samples", "8", "--out", dir + "/gptq-bf16"])
        #expect(fast.code == 0, "\(fast.stderr)")
        let awq = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--method", "awq",
                               "--text", Self.trained + "/calibration.txt", "--seq-len", "256", "--samples", "4", "--out", dir + "/awq"])
        #expect(awq.code == 0, "\(awq.stderr)")
        let klRTN = try eval(dir + "/rtn")["kl_mean"]?.doubleValue ?? 1
        let klGPTQ = try eval(dir + "/gptq")["kl_mean"]?.doubleValue ?? 1
        let klAWQ = try eval(dir + "/awq")["kl_mean"]?.doubleValue ?? 1
        #expect(klRTN < 0.01, "int4 g32 RTN KL \(klRTN)")
        #expect(klGPTQ <= 0.5 * klRTN, "GPTQ KL \(klGPTQ) vs RTN \(klRTN): target ≤ 0.5×")
        let klFast = try eval(dir + "/gptq-bf16")["kl_mean"]?.doubleValue ?? 1
        #expect(klFast <= 0.5 * klRTN, "GPTQ with bf16-activation calibration KL \(klFast) vs RTN \(klRTN): target ≤ 0.5×")
        let shards = ((try? fm.contentsOfDirectory(atPath: dir + "/gptq")) ?? []).filter { $0.hasSuffix(".safetensors") }
        #expect(shards.contains { !fm.contentsEqual(atPath: dir + "/gptq/" + $0, andPath: dir + "/gptq-bf16/" + $0) }, "the flag changed nothing")
        // AWQ's target is ≤ 0.8× RTN on the whole held-out text (Scripts/bench quality); on these
        // three windows and four calibration windows it must at least beat RTN.
        #expect(klAWQ < klRTN, "AWQ KL \(klAWQ) vs RTN \(klRTN)")

        let p = try CLI.run(["verify", dir + "/gptq", "--prompt", "Who are you?", "--max-new-tokens", "4", "--reference", Self.trained, "--json"])
        #expect(p.code == 0, "\(p.stderr)")
        #expect((try JSONParser.parse(p.stdout)["reference"]?["kl_mean"]?.doubleValue ?? 1) < 0.05)
    }

    /// `verify --int8-activations`: int4 decode with int8-quantized activations, compared token by
    /// token through the decode path against the BF16 source.
    @Test func int8ActivationDecodeStaysCloseToTheSource() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let q = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "64", "--out", dir + "/q4"])
        #expect(q.code == 0, "\(q.stderr)")
        var kl: [Double] = []
        for extra in [[], ["--int8-activations"]] {
            let r = try CLI.run(["verify", dir + "/q4", "--prompt", "The history of the city", "--max-new-tokens", "12",
                                 "--reference", Self.trained, "--json"] + extra)
            #expect(r.code == 0, "\(extra): \(r.stderr)")
            // The flag says what it does: how many projections take it, or that none qualifies.
            #expect(r.stderr.contains("int8 activations:") == !extra.isEmpty, "\(r.stderr)")
            let doc = try JSONParser.parse(r.stdout)
            kl.append(doc["reference"]?["kl_mean"]?.doubleValue ?? 1)
        }
        // Weight quantization dominates; int8 activations add little on top of it.
        #expect(kl[0] < 0.02 && kl[1] < 0.02 && kl[1] < 2 * kl[0] + 1e-3, "KL exact \(kl[0]), int8 activations \(kl[1])")
    }

    /// The bf16-activation prefill against the exact path on the trained fixture's held-out text:
    /// what rounding activations to bf16 costs, as KL (measured 1.7e-5 mean, top-1 1.0).
    @Test func bf16ActivationPrefillStaysCloseToTheExactPath() throws {
        let r = try CLI.run(["eval", Self.trained, "--reference", Self.trained, "--text", CLI.fixtures + "/eval-heldout.txt",
                             "--seq-len", "128", "--windows", "3", "--bf16-activations", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stderr.contains("--bf16-activations: products of"), "\(r.stderr)")
        let doc = try JSONParser.parse(r.stdout)
        let kl = doc["kl_mean"]?.doubleValue ?? 1, top1 = doc["top1_agreement"]?.doubleValue ?? 0
        #expect(kl > 0 && kl < 1e-3 && top1 >= 0.98, "KL \(kl), top-1 \(top1)")
    }

    @Test func badInputIsRefusedAndNothingIsWritten() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let three = try CLI.run(["quantize", Self.trained, "--bits", "3", "--out", dir + "/a"])
        #expect(three.code == 2 && three.stderr.contains("--bits 3"), "\(three.stderr)")
        let odd = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "48", "--out", dir + "/a"])
        #expect(odd.code == 2 && odd.stderr.contains("power of two"), "\(odd.stderr)")
        let strict = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "128", "--strict-groups", "--out", dir + "/a"])
        #expect(strict.code == 2 && strict.stderr.contains("not a multiple of --group-size 128"), "\(strict.stderr)")
        let badExperts = try CLI.run(["quantize", Self.trained, "--bits", "4", "--method", "gptq", "--expert-tokens", "some", "--out", dir + "/a"])
        #expect(badExperts.code == 2 && badExperts.stderr.contains("--expert-tokens"), "\(badExperts.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/a"))
        // A source that is already quantized.
        #expect(try CLI.run(["quantize", Self.trained, "--bits", "8", "--out", dir + "/q"]).code == 0)
        let again = try CLI.run(["quantize", dir + "/q", "--bits", "4", "--out", dir + "/qq"])
        #expect(again.code == 2 && again.stderr.contains("already quantized"), "\(again.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/qq"))
        let reshard = try CLI.run(["reshard", dir + "/q", "--tp", "2", "--layout", "deepseek", "--out", dir + "/r"])
        #expect(reshard.code == 2 && reshard.stderr.contains("not compressed-tensors"), "\(reshard.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/r"))
    }

    @Test func groupFallbackAndReportOfWidthsTheGroupDoesNotDivide() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        // g128 on the fixture: 64- and 96-wide inputs are kept BF16 by default, or take a smaller group.
        let keep = try CLI.run(["quantize", Self.trained, "--bits", "4", "--out", dir + "/keep", "--json"])
        #expect(keep.code == 0, "\(keep.stderr)")
        let kept = try JSONParser.parse(keep.stdout)["tensors"]?.arrayValue ?? []
        #expect(kept.contains { $0["name"]?.stringValue == "model.layers.0.self_attn.q_b_proj.weight" && ($0["treatment"]?.stringValue ?? "").contains("not a multiple of group 128") })
        let fb = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-fallback", "--out", dir + "/fb", "--json"])
        #expect(fb.code == 0, "\(fb.stderr)")
        let t = try JSONParser.parse(fb.stdout)["tensors"]?.arrayValue ?? []
        #expect(t.contains { $0["name"]?.stringValue == "model.layers.0.self_attn.q_b_proj.weight" && $0["treatment"]?.stringValue == "int4 g32 sym" })
        let config = try JSONParser.parse(String(contentsOfFile: dir + "/fb/config.json", encoding: .utf8))
        let groups = config["quantization_config"]?["config_groups"]?.objectValue?.pairs.map(\.value) ?? []
        #expect(groups.contains { $0["weights"]?["group_size"]?.integerValue == 32 && $0["targets"]?.arrayValue?.contains(.string("model.layers.0.self_attn.q_b_proj")) == true })
        #expect(try CLI.run(["verify", dir + "/fb"]).code == 0)
    }
}
