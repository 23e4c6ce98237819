import Foundation
import JSON
import TestSupport
import Testing

/// What engines read beside the weights survives every writer, and the serving statements
/// (`inspect`, `quantize`) and DeepSeek's ModelArgs file come out as the engines need them.
@Suite struct ServingCLITests {
    let fm = FileManager.default
    static let remoteCode = CLI.fixtures + "/remote-code"
    static let sideFiles = ["configuration_deepseek.py", "modeling_deepseek.py", "tokenization_deepseek_fast.py", "LICENSE-MODEL"]

    /// A small model whose config.json has `auto_map` and whose directory holds the remote code
    /// (`Tests/Fixtures/remote-code`), made the way a user's download looks.
    func modelWithRemoteCode(in dir: String) throws -> String {
        let text = dir + "/text"
        try fm.createDirectory(atPath: text, withIntermediateDirectories: true)
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            try fm.copyItem(atPath: CLI.fixtures + "/tiny-dsv2.5/" + f, toPath: text + "/" + f)
        }
        for f in Self.sideFiles { try fm.copyItem(atPath: Self.remoteCode + "/" + f, toPath: text + "/" + f) }
        let out = dir + "/model"
        let r = try CLI.run(["synth", "--like", "deepseek-v2.5", "--layers", "2", "--hidden", "64", "--experts", "8",
                             "--vocab", "256", "--tokenizer", text, "--out", out])
        #expect(r.code == 0, "\(r.stderr)")
        // auto_map into config.json, as the real repositories have it.
        guard case .object(var config) = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: out + "/config.json")))),
              let autoMap = try? JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: Self.remoteCode + "/auto_map.json")))) else {
            Issue.record("config.json or auto_map.json unreadable")
            return out
        }
        config["auto_map"] = autoMap
        try (JSONValue.object(config).serialized(pretty: true) + "\n").write(toFile: out + "/config.json", atomically: true, encoding: .utf8)
        return out
    }

    func expectSideFiles(in dir: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for f in Self.sideFiles {
            let a = try? Data(contentsOf: URL(fileURLWithPath: Self.remoteCode + "/" + f))
            let b = try? Data(contentsOf: URL(fileURLWithPath: dir + "/" + f))
            #expect(a != nil && a == b, "\(what): \(f) missing or changed in \(dir)", sourceLocation: sourceLocation)
        }
    }

    @Test func remoteCodeAndLicenseSurviveEveryWriter() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try modelWithRemoteCode(in: dir)
        try expectSideFiles(in: model, "synth --tokenizer")
        let steps: [([String], String)] = [
            (["quantize", model, "--bits", "4", "--group-size", "32", "--out", dir + "/q"], dir + "/q"),
            (["dequantize", dir + "/q", "--out", dir + "/dq"], dir + "/dq"),
            (["reshard", model, "--tp", "2", "--out", dir + "/r"], dir + "/r/rank-01"),
            (["merge", dir + "/r", "--out", dir + "/m"], dir + "/m"),
            (["reshard", model, "--tp", "2", "--experts", "ep", "--layout", "deepseek", "--out", dir + "/d"], dir + "/d"),
            (["merge", dir + "/d", "--out", dir + "/md"], dir + "/md"),
            (["pack", model, "--out", dir + "/p"], dir + "/p"),
            (["unpack", dir + "/p", "--out", dir + "/u"], dir + "/u"),
        ]
        for (args, out) in steps {
            let r = try CLI.run(args)
            #expect(r.code == 0, "\(args[0]): \(r.stderr)")
            try expectSideFiles(in: out, args[0])
        }
        // The quantized config keeps auto_map (engines import the remote code through it).
        let q = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/q/config.json"))))
        #expect(q["auto_map"]?["AutoModelForCausalLM"]?.stringValue == "modeling_deepseek.DeepseekV2ForCausalLM")
        // Recorded in the reshard manifests; generate-config.json is the deepseek layout's own
        // and does not come back with merge.
        for (out, names) in [(dir + "/r", Self.sideFiles), (dir + "/d", Self.sideFiles + ["generate-config.json"])] {
            let m = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: out + "/dsconv-manifest.json"))))
            let recorded = Set((m["ranks"]?.arrayValue ?? []).flatMap { ($0["files"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue } })
            for n in names { #expect(recorded.contains(n), "\(out): \(n) not in the manifest") }
        }
        #expect(!fm.fileExists(atPath: dir + "/md/generate-config.json"))
        #expect(try CLI.run(["verify", dir + "/d"]).code == 0)
        // A missing remote-code file is named by inspect's transformers statement.
        try fm.removeItem(atPath: dir + "/m/modeling_deepseek.py")
        let i = try CLI.run(["inspect", dir + "/m", "--json"])
        let tf = try JSONParser.parse(i.stdout)["serving"]?["transformers"]
        #expect(tf?["loads"] == .bool(false) && (tf?["rule"]?.stringValue ?? "").contains("modeling_deepseek.py"), "\(tf ?? .null)")
    }

    /// DeepSeek's ModelArgs from the V2.5-structured fixture: every field its model.py reads,
    /// mscale from mscale_all_dim, YaRN switched on; and what model.py cannot express is refused.
    @Test func generateConfigCarriesTheModelArgs() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let r = try CLI.run(["reshard", CLI.fixtures + "/tiny-dsv2.5", "--tp", "2", "--experts", "ep", "--layout", "deepseek", "--out", dir + "/d"])
        #expect(r.code == 0, "\(r.stderr)")
        let g = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/d/generate-config.json"))))
        let expected: [String: JSONValue] = [
            "vocab_size": 102400, "dim": 64, "inter_dim": 128, "moe_inter_dim": 32, "n_layers": 3, "n_dense_layers": 1, "n_heads": 4,
            "n_routed_experts": 16, "n_shared_experts": 2, "n_activated_experts": 4, "n_expert_groups": 4, "n_limited_groups": 2,
            "route_scale": 16.0, "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
            "original_seq_len": 4096, "rope_factor": 40.0, "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "score_func": "softmax",
        ]
        for (k, v) in expected {
            #expect(g[k]?.doubleValue == v.doubleValue && g[k]?.stringValue == v.stringValue, "\(k): \(g[k] ?? .null), expected \(v)")
        }
        #expect((g["max_seq_len"]?.integerValue ?? 0) > 4096, "YaRN applies only above original_seq_len")
        let i = try JSONParser.parse(try CLI.run(["inspect", dir + "/d", "--json"]).stdout)
        #expect(i["serving"]?["deepseek"]?["loads"] == .bool(true))
        #expect((i["serving"]?["deepseek"]?["command"]?.stringValue ?? "").contains("--nproc-per-node 2"))
        // norm_topk_prob: model.py renormalizes sigmoid scores only; refused before writing.
        let src = dir + "/normed"
        try fm.copyItem(atPath: CLI.fixtures + "/tiny-dsv2.5", toPath: src)
        var text = try String(contentsOfFile: src + "/config.json", encoding: .utf8)
        text = text.replacingOccurrences(of: "\"norm_topk_prob\": false", with: "\"norm_topk_prob\": true")
        try text.write(toFile: src + "/config.json", atomically: true, encoding: .utf8)
        let bad = try CLI.run(["reshard", src, "--tp", "2", "--experts", "ep", "--layout", "deepseek", "--out", dir + "/x"])
        #expect(bad.code == 2 && bad.stderr.contains("norm_topk_prob"), "\(bad.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/x") && !fm.fileExists(atPath: dir + "/x.partial"))
    }

    @Test func quantizeRefusesWhatNoEngineLoads() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let cases: [([String], String)] = [
            (["--bits", "8", "--asymmetric"], "no vLLM MoE kernel takes int8 with zero points"),
            (["--bits", "4", "--serve-tp", "3"], "--serve-tp 3"),
            (["--bits", "4", "--serve-gpu", "v100"], "--serve-gpu v100"),
            (["--bits", "4", "--group-size", "per-row"], "or 'channel'"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(["quantize", CLI.fixtures + "/tiny-dsv2.5"] + args + ["--out", dir + "/q"])
            #expect(r.code == 2 && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(!fm.fileExists(atPath: dir + "/q") && !fm.fileExists(atPath: dir + "/q.partial"))
        }
    }
}
