import Foundation
import HDF5
import JSON
import TestSupport
import Testing

/// calibrate → the HDF5 statistics file, read back with libhdf5.
@Suite struct CalibrateCLITests {
    static let trained = CLI.fixtures + "/trained-dsv2.5"
    let fm = FileManager.default

    @Test func statisticsFileHoldsEveryLinearAndTheRouting() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let r = try CLI.run(["calibrate", Self.trained, "--text", Self.trained + "/calibration.txt", "--seq-len", "128", "--samples", "3",
                             "--out", dir + "/stats.h5"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stderr.contains("routed tokens per expert"))
        let f = try HDF5File(reading: dir + "/stats.h5")
        #expect(try f.stringAttribute("format") == "dsconv-calibration")
        #expect(try f.intAttribute("tokens") == 3 * 128)
        #expect(try f.intAttribute("hidden_size") == 128)
        #expect(try f.stringAttribute("expert_tokens") == "routed")
        // Attention and shared experts see every token; the input norm's output feeds q_a.
        let qa = "/model.layers.2.self_attn.q_a_proj"
        #expect(try f.readInt64s(qa + "/tokens") == [384])
        let mean = try f.readFloats(qa + "/mean_abs"), maxAbs = try f.readFloats(qa + "/max_abs"), sq = try f.readDoubles(qa + "/sum_sq")
        #expect(mean.count == 128 && maxAbs.count == 128 && sq.count == 128)
        #expect(zip(mean, maxAbs).allSatisfy { $0 <= $1 && $0 > 0 })
        // Σx² ≥ tokens · mean|x|² (Cauchy–Schwarz), per channel.
        #expect(zip(sq, mean).allSatisfy { $0 >= 384 * Double($1) * Double($1) * 0.999 })
        // Routed counts: each token goes to num_experts_per_tok (4) experts; expert e's module saw them.
        let routed = try f.readInt64s("/routing/layer_3")
        #expect(routed.count == 16 && routed.reduce(0, +) == 384 * 4)
        #expect(try f.readInt64s("/model.layers.3.mlp.experts.5.down_proj/tokens") == [routed[5]])
        #expect(f.exists("/model.layers.0.mlp.down_proj") && !f.exists("/model.layers.0.mlp.experts.0.up_proj"))
    }

    @Test func builtinSetIsRenderedThroughTheChatTemplate() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let r = try CLI.run(["calibrate", Self.trained, "--seq-len", "128", "--samples", "2", "--out", dir + "/s.h5"])
        #expect(r.code == 0 && r.stderr.contains("builtin calibration set"), "\(r.stderr)")
        let f = try HDF5File(reading: dir + "/s.h5")
        #expect(try f.stringAttribute("text") == "builtin")
        #expect(try f.intAttribute("tokens") == 256)
        let q = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--method", "gptq", "--seq-len", "128",
                             "--samples", "2", "--out", dir + "/q"])
        #expect(q.code == 0 && q.stderr.contains("builtin calibration set"), "\(q.stderr)")
    }

    @Test func refusesOutputsInsideTheModelAndMissingText() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let inside = try CLI.run(["calibrate", Self.trained, "--text", Self.trained + "/calibration.txt", "--out", Self.trained + "/stats.h5"])
        #expect(inside.code == 2 && inside.stderr.contains("inside the input"), "\(inside.stderr)")
        #expect(!fm.fileExists(atPath: Self.trained + "/stats.h5"))
        let missing = try CLI.run(["calibrate", Self.trained, "--text", dir + "/nope.txt", "--out", dir + "/s.h5"])
        #expect(missing.code == 2 && missing.stderr.contains("nope.txt"), "\(missing.stderr)")
        fm.createFile(atPath: dir + "/short.txt", contents: Data("too short".utf8))
        let short = try CLI.run(["calibrate", Self.trained, "--text", dir + "/short.txt", "--out", dir + "/s.h5"])
        #expect(short.code == 2 && short.stderr.contains("fewer than one window"), "\(short.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/s.h5"))
    }
}

/// `quantize --stats`: one calibration serves many quantizations (AWQ searched on the file's
/// per-channel moments), and a file that does not fit is refused.
@Suite struct QuantizeFromStatisticsCLITests {
    static let trained = CLI.fixtures + "/trained-dsv2.5"
    let fm = FileManager.default

    func klMean(_ model: String) throws -> Double {
        let r = try CLI.run(["eval", model, "--reference", Self.trained, "--text", CLI.fixtures + "/eval-heldout.txt", "--seq-len", "256", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        return try JSONParser.parse(r.stdout)["kl_mean"]?.doubleValue ?? .infinity
    }

    @Test func awqFromStatisticsBeatsRoundToNearest() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let c = try CLI.run(["calibrate", Self.trained, "--text", Self.trained + "/calibration.txt", "--seq-len", "256", "--samples", "16",
                             "--out", dir + "/stats.h5"])
        #expect(c.code == 0, "\(c.stderr)")
        let s = try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--method", "awq", "--stats", dir + "/stats.h5",
                             "--out", dir + "/awq"])
        #expect(s.code == 0 && s.stderr.contains("per-channel moments"), "\(s.stderr)")
        #expect(try CLI.run(["quantize", Self.trained, "--bits", "4", "--group-size", "32", "--out", dir + "/rtn"]).code == 0)
        // Measured 0.93× RTN's KL with these 4096 calibration tokens (text-driven AWQ: 0.80×).
        let awq = try klMean(dir + "/awq"), rtn = try klMean(dir + "/rtn")
        #expect(awq < 0.97 * rtn, "AWQ from statistics KL \(awq) vs RTN \(rtn)")
    }

    @Test func statisticsThatDoNotFitAreRefused() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        #expect(try CLI.run(["calibrate", CLI.fixtures + "/tiny-dsv2.5", "--seq-len", "64", "--samples", "1", "--out", dir + "/tiny.h5"]).code == 0)
        let cases: [([String], String)] = [
            (["--method", "awq", "--stats", dir + "/tiny.h5"], "statistics from another model"),
            (["--method", "awq", "--stats", Self.trained + "/config.json"], "not an HDF5 file"),
            (["--method", "gptq", "--stats", dir + "/tiny.h5"], "Hessian"),
            (["--stats", dir + "/tiny.h5"], "--method awq only"),
            (["--method", "awq", "--stats", dir + "/tiny.h5", "--text", Self.trained + "/calibration.txt"], "not both"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(["quantize", Self.trained, "--bits", "4"] + args + ["--out", dir + "/q"])
            #expect(r.code == 2 && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(!fm.fileExists(atPath: dir + "/q"))
        }
    }
}
