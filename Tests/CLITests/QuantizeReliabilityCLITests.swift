import Foundation
import HDF5
import JSON
import TestSupport
import Testing

/// The quantization surfaces under hostile use: inputs named by any flag are never inside the
/// output they would be replaced with.
@Suite struct QuantizeReliabilityCLITests {
    let fm = FileManager.default
    static let trained = CLI.fixtures + "/trained-dsv2.5"

    /// A copy of the trained fixture in `dir` with a NaN in one weight: its path and that tensor.
    static func poisonedCopy(in dir: String, as name: String) throws -> (model: String, tensor: String) {
        let model = dir + "/" + name
        try FileManager.default.copyItem(atPath: trained, toPath: model)
        let tensor = "model.layers.0.self_attn.o_proj.weight"
        try CLI.poison(model, tensor: tensor)
        return (model, tensor)
    }

    @Test func aCalibrationTextInsideTheOutputIsRefusedAndKept() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let out = dir + "/q"
        #expect(try CLI.run(["quantize", Self.trained, "--bits", "8", "--out", out]).code == 0)
        let notes = out + "/notes.txt"
        try fm.copyItem(atPath: Self.trained + "/calibration.txt", toPath: notes)
        let r = try CLI.run(["quantize", Self.trained, "--bits", "4", "--method", "awq", "--text", notes, "--samples", "1",
                             "--seq-len", "32", "--out", out, "--force"])
        #expect(r.code == 2, "\(r.stderr)")
        #expect(fm.fileExists(atPath: notes), "the calibration text was deleted")
    }

    /// NaN logits on either side: eval exits 1 naming the side, never a perfect score.
    @Test func evalRefusesNonFiniteLogits() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let clean = Self.trained
        let bad = dir + "/bad"
        try fm.copyItem(atPath: clean, toPath: bad)
        try CLI.poison(bad, tensor: "lm_head.weight")
        let text = dir + "/text.txt"
        try String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 20).write(toFile: text, atomically: true, encoding: .utf8)
        for (ours, ref, side) in [(bad, clean, bad), (clean, bad, "reference")] {
            let r = try CLI.run(["eval", ours, "--reference", ref, "--text", text, "--seq-len", "32", "--windows", "2", "--json"])
            #expect(r.code == 1, "\(side): \(r.stderr)")
            let j = try JSONParser.parse(r.stdout)
            #expect(j["ok"] == false && j["exit_code"] == 1, "\(r.stdout)")
            #expect(r.stderr.contains("non-finite logits") && r.stderr.contains(side), "\(r.stderr)")
        }
    }

    /// calibrate refuses a source with a NaN weight (as reshard and quantize do) and writes nothing;
    /// an output it may not write is refused too, the text it names kept.
    @Test func calibrateRefusesDamagedSourcesAndBadOutputs() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let (model, name) = try Self.poisonedCopy(in: dir, as: "model")
        let text = dir + "/text.txt"
        try String(repeating: "Calibration text, plain and simple. ", count: 40).write(toFile: text, atomically: true, encoding: .utf8)
        let r = try CLI.run(["calibrate", model, "--text", text, "--samples", "2", "--seq-len", "32", "--out", dir + "/stats.h5"])
        #expect(r.code == 1 && r.stderr.contains(name) && r.stderr.contains("NaN"), "\(r.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/stats.h5") && !fm.fileExists(atPath: dir + "/stats.h5.partial"))
        let clean = Self.trained
        let same = try CLI.run(["calibrate", clean, "--text", text, "--samples", "2", "--seq-len", "32", "--out", text, "--force"])
        #expect(same.code == 2, "\(same.stderr)")
        #expect((try? String(contentsOfFile: text, encoding: .utf8))?.hasPrefix("Calibration text") == true)
    }

    /// Hostile statistics files: every value is validated, exit 2 naming the dataset; a FIFO is
    /// refused at once.
    @Test func statisticsFilesAreValidated() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let config = try JSONParser.parse(String(contentsOfFile: Self.trained + "/config.json", encoding: .utf8))
        let hidden = Int(config["hidden_size"]?.integerValue ?? 0)
        let module = "/model.layers.0.mlp.gate_proj"
        func stats(_ name: String, meanAbs: [Float], sumSq: [Double], tokens: [Int64]) throws -> String {
            let path = dir + "/" + name + ".h5"
            let f = try HDF5File(creating: path)
            try f.setAttribute("format", "dsconv-calibration")
            try f.setAttribute("version", Int64(1))
            try f.setAttribute("hidden_size", Int64(hidden))
            try f.setAttribute("num_hidden_layers", config["num_hidden_layers"]?.integerValue ?? 0)
            try f.setAttribute("n_routed_experts", config["n_routed_experts"]?.integerValue ?? 0)
            try f.createGroup(module)
            try f.write(module + "/mean_abs", meanAbs)
            try f.write(module + "/sum_sq", sumSq)
            try f.write(module + "/tokens", tokens)
            try f.flush()
            return path
        }
        let ones = [Float](repeating: 1, count: hidden), squares = [Double](repeating: 4, count: hidden)
        var nan = ones
        nan[3] = .nan
        var negative = squares
        negative[5] = -1
        let cases: [(String, [Float], [Double], [Int64], String)] = [
            ("nan", nan, squares, [4], "mean_abs[3]"),
            ("negative", ones, negative, [4], "sum_sq[5]"),
            ("zero-tokens", ones, squares, [0], "/tokens"),
            ("huge-tokens", ones, squares, [Int64.max], "/tokens"),
            ("short", Array(ones.dropLast()), squares, [4], "mean_abs has"),
        ]
        for (name, m, q, t, message) in cases {
            let path = try stats(name, meanAbs: m, sumSq: q, tokens: t)
            let r = try CLI.run(["quantize", Self.trained, "--bits", "4", "--method", "awq", "--stats", path, "--out", dir + "/q"])
            #expect(r.code == 2 && r.stderr.contains(message), "\(name): \(r.stderr)")
            #expect(!fm.fileExists(atPath: dir + "/q"))
        }
        let fifo = dir + "/fifo.h5"
        #expect(mkfifo(fifo, 0o600) == 0)
        let r = try CLI.run(["quantize", Self.trained, "--bits", "4", "--method", "awq", "--stats", fifo, "--out", dir + "/q"])
        #expect(r.code == 2 && r.stderr.contains("not a regular file"), "\(r.stderr)")
    }

    /// quantization_config entries dsconv cannot honour are refused (exit 2, naming the field),
    /// never decoded as something else; patterns that could backtrack for ever never run.
    @Test func hostileQuantizationConfigsAndPatterns() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let q = dir + "/q"
        #expect(try CLI.run(["quantize", Self.trained, "--bits", "4", "--out", q]).code == 0)
        let original = try String(contentsOfFile: q + "/config.json", encoding: .utf8)
        let edits: [(String, (inout JSONObject) -> Void, String)] = [
            ("transform", { $0["transform_config"] = ["config_groups": [:]] }, "transform_config"),
            ("sparsity", { $0["sparsity_config"] = ["format": "sparse-24-bitmask"] }, "sparsity_config"),
            ("ignore-number", { $0["ignore"] = [1] }, "ignore[0]"),
            ("ignore-string", { $0["ignore"] = "lm_head" }, "ignore"),
            ("ignore-bad-regex", { $0["ignore"] = ["re:("] }, "not a valid regular expression"),
            ("ignore-catastrophic", { $0["ignore"] = ["re:(a+)+$"] }, "exponential backtracking"),
            ("group-7", { qc in
                guard case .object(var groups)? = qc["config_groups"], case .object(var g0)? = groups["group_0"],
                      case .object(var w)? = g0["weights"] else { return }
                w["group_size"] = 7
                g0["weights"] = .object(w)
                groups["group_0"] = .object(g0)
                qc["config_groups"] = .object(groups)
            }, "does not divide"),
        ]
        for (name, edit, message) in edits {
            guard case .object(var c) = try JSONParser.parse(original), case .object(var qc)? = c["quantization_config"] else {
                Issue.record("config.json unreadable")
                return
            }
            edit(&qc)
            c["quantization_config"] = .object(qc)
            try (JSONValue.object(c).serialized(pretty: true) + "\n").write(toFile: q + "/config.json", atomically: true, encoding: .utf8)
            for command in [["verify", q], ["inspect", q], ["dequantize", q, "--out", dir + "/d"]] {
                let r = try CLI.run(command)
                #expect(r.code == 2 && r.stderr.contains(message), "\(name), \(command[0]): \(r.code) \(r.stderr)")
            }
        }
        let ignore = try CLI.run(["quantize", Self.trained, "--bits", "4", "--ignore", "(.*)*x$", "--out", dir + "/i"])
        #expect(ignore.code == 2 && ignore.stderr.contains("exponential backtracking"), "\(ignore.stderr)")
        let huge = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "1099511627776", "--out", dir + "/h"])
        #expect(huge.code == 2 && huge.stderr.contains("wider than every input"), "\(huge.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/i") && !fm.fileExists(atPath: dir + "/h"))
    }

    /// A weight_shape that contradicts config.json: verify reports it (exit 1), as dequantize refuses it.
    @Test func weightShapeMustMatchTheConfig() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let q = dir + "/q"
        #expect(try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--out", q]).code == 0)
        let name = "model.layers.0.mlp.down_proj.weight_shape"
        try CLI.overwrite(q, tensor: name, with: [0xE7, 0x03])  // 999 where the rows are
        let v = try CLI.run(["verify", q])
        #expect(v.code == 1 && v.stderr.contains(name) && v.stderr.contains("999"), "\(v.stderr)")
    }

    /// Flag validation under --json: exit 2 and still one JSON object on stdout.
    @Test func usageErrorsUnderJSONPrintOneObject() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        for args in [["quantize", Self.trained, "--bits", "3", "--out", dir + "/q", "--json"],
                     ["quantize", Self.trained, "--bits", "4", "--group-size", "0", "--out", dir + "/q", "--json"],
                     ["quantize", Self.trained, "--bits", "4", "--method", "gptq", "--stats", dir + "/s.h5", "--out", dir + "/q", "--json"],
                     ["eval", Self.trained, "--reference", Self.trained, "--text", Self.trained + "/calibration.txt", "--windows", "0", "--json"]] {
            let r = try CLI.run(args)
            #expect(r.code == 2, "\(args): \(r.stderr)")
            let j = try? JSONParser.parse(r.stdout)
            #expect(j?["ok"] == false && j?["exit_code"] == 2, "\(args): stdout \(r.stdout)")
        }
    }

    /// reshard --group-size on a quantized source is refused, not silently ignored; a NaN in a
    /// quantized source names the tensor once (no doubled suffix).
    @Test func reshardGroupSizeOnQuantizedAndNaNNames() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        #expect(try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--out", dir + "/q"]).code == 0)
        let r = try CLI.run(["reshard", dir + "/q", "--tp", "2", "--group-size", "64", "--out", dir + "/r"])
        #expect(r.code == 2 && r.stderr.contains("already quantized"), "\(r.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/r"))
        let model = dir + "/m"
        try fm.copyItem(atPath: Self.trained, toPath: model)
        try CLI.poison(model, tensor: "model.layers.1.mlp.experts.3.up_proj.weight")
        let q = try CLI.run(["quantize", model, "--bits", "4", "--group-size", "32", "--out", dir + "/q2"])
        #expect(q.code == 1 && q.stderr.contains("experts.3.up_proj.weight") && !q.stderr.contains("weight.weight"), "\(q.stderr)")
    }

    /// eval checks a reshard output's checksums before running it (as verify does): exit 1.
    @Test func evalRefusesDamagedReshardRanks() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        #expect(try CLI.run(["reshard", Self.trained, "--tp", "2", "--out", dir + "/r"]).code == 0)
        let rank = dir + "/r/rank-01"
        let shard = try #require(try fm.contentsOfDirectory(atPath: rank).filter { $0.hasSuffix(".safetensors") }.sorted().last)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: rank + "/" + shard)))
        bytes[bytes.count - 5] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: rank + "/" + shard))
        let r = try CLI.run(["eval", dir + "/r", "--reference", Self.trained, "--text", Self.trained + "/calibration.txt",
                             "--seq-len", "32", "--windows", "1"])
        #expect(r.code == 1 && r.stderr.contains("sha256"), "\(r.stderr)")
    }

    /// calibrate on a full disk (a 16 KB file-size limit stands in): exit 3, nothing left; the
    /// statistics file is built in memory and written by dsconv's own writer, never by libhdf5.
    @Test func calibrateOnAFullDiskExitsThreeLeavingNothing() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "ulimit -f 16; exec \"$0\" calibrate \"$1\" --text \"$1/calibration.txt\" --samples 2 --seq-len 32 --out \"$2\" 2>\"$3\"",
                       CLI.binary, Self.trained, dir + "/s.h5", dir + "/err"]
        try p.run()
        p.waitUntilExit()
        let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
        #expect(p.terminationStatus == 3, "exit \(p.terminationStatus): \(err.suffix(300))")
        #expect(!fm.fileExists(atPath: dir + "/s.h5") && !fm.fileExists(atPath: dir + "/s.h5.partial"))
    }

    /// A single-file output onto a directory dsconv wrote says so (exit 2), not "no marker".
    @Test func statisticsOutputOntoADsconvDirectory() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        #expect(try CLI.run(["quantize", Self.trained, "--bits", "8", "--out", dir + "/q"]).code == 0)
        let r = try CLI.run(["calibrate", Self.trained, "--samples", "1", "--seq-len", "16", "--out", dir + "/q", "--force"])
        #expect(r.code == 2 && r.stderr.contains("directory") && !r.stderr.contains("marker"), "\(r.stderr)")
        #expect(fm.fileExists(atPath: dir + "/q/config.json"))
    }

    /// GPTQ and AWQ calibrate before the writer's own check: a NaN source is refused as read
    /// (exit 1, the tensor named), never a trap converting NaN to an integer.
    @Test func calibratedMethodsRefuseNaNSources() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let (model, name) = try Self.poisonedCopy(in: dir, as: "m")
        for method in ["gptq", "awq"] {
            let r = try CLI.run(["quantize", model, "--bits", "4", "--group-size", "32", "--method", method, "--text", Self.trained + "/calibration.txt",
                                 "--samples", "1", "--seq-len", "16", "--out", dir + "/q-" + method])
            #expect(r.code == 1 && r.stderr.contains(name), "\(method): \(r.code) \(r.stderr.suffix(300))")
            #expect(!fm.fileExists(atPath: dir + "/q-" + method))
        }
    }
}
