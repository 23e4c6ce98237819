import Foundation
import JSON
import TestSupport
import Testing

/// The quantization surfaces under hostile use: inputs named by any flag are never inside the
/// output they would be replaced with.
@Suite struct QuantizeReliabilityCLITests {
    let fm = FileManager.default
    static let trained = CLI.fixtures + "/trained-dsv2.5"

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
        let model = dir + "/model"
        try fm.copyItem(atPath: Self.trained, toPath: model)
        let name = "model.layers.0.self_attn.o_proj.weight"
        try CLI.poison(model, tensor: name)
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
}
