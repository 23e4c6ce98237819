import Foundation
import SafeTensors
import TestSupport
import Testing

@testable import DeepSeek

@Suite struct IntegrityTests {
    @Test func fixtureIsClean() throws {
        let report = IntegrityCheck.run(try Checkpoint(directory: Fixtures.tiny), threads: 2)
        #expect(report.ok, "\(report.problems)")
        #expect(report.tensorsChecked == 137)
        #expect(report.bytesScanned == 26_821_984)
    }

    @Test func nanInBF16TensorIsNamed() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try copyDirectory(Fixtures.tiny, to: dir + "/m")
        let ckpt0 = try Checkpoint(directory: dir + "/m")
        let target = try #require(ckpt0.weights["model.layers.1.mlp.experts.3.up_proj.weight"])
        let offset = target.file.fileRange(target.info).lowerBound + 2 * 17
        let path = target.file.path
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[offset] = 0xC0; bytes[offset + 1] = 0x7F  // bf16 0x7FC0 = NaN
        bytes[offset + 20] = 0x80; bytes[offset + 21] = 0xFF  // bf16 0xFF80 = -Inf
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let report = IntegrityCheck.run(try Checkpoint(directory: dir + "/m"), threads: 2)
        #expect(!report.ok)
        #expect(report.problems.count == 1)
        let p = try #require(report.problems.first)
        #expect(p.kind == .nonFinite)
        #expect(p.tensor == "model.layers.1.mlp.experts.3.up_proj.weight")
        #expect(p.message.contains("2 NaN/Inf") && p.message.contains("index 17"))
    }

    @Test func schemaProblemsAreReported() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try copyDirectory(Fixtures.tiny, to: dir + "/m")
        // The config now claims 20 experts (4 × 3 expert tensors missing per MoE layer) and a narrower KV latent.
        var text = try String(contentsOfFile: dir + "/m/config.json", encoding: .utf8)
        text = text.replacingOccurrences(of: "\"n_routed_experts\": 16", with: "\"n_routed_experts\": 20")
        text = text.replacingOccurrences(of: "\"kv_lora_rank\": 32", with: "\"kv_lora_rank\": 24")
        try text.write(toFile: dir + "/m/config.json", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: dir + "/m/tokenizer_config.json")
        let report = IntegrityCheck.run(try Checkpoint(directory: dir + "/m"), threads: 2)
        let kinds = Dictionary(grouping: report.problems, by: \.kind).mapValues(\.count)
        #expect(kinds[.missingTensor] == 2 * 4 * 3)
        #expect(kinds[.wrongShape] == 3 * 3 + 2)  // kv_a, kv_a_layernorm, kv_b in 3 layers; the router in 2
        #expect(kinds[.tokenizer] == 1)
        #expect(report.problems.contains { $0.kind == .missingTensor && $0.tensor == "model.layers.2.mlp.experts.19.down_proj.weight" })
    }

    @Test func synthIsDeterministicAndClean() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sizes = SynthSizes(layers: 2, experts: 8, hidden: 64, vocab: 512)
        let config = try Synth.config(like: .deepseekV25, sizes: sizes)
        for (name, threads) in [("a", 1), ("b", 2)] {
            let out = try OutputDirectory(dir + "/" + name, force: false)
            try Synth.write(config: config, seed: 7, out: out, maxShardSize: 100_000, tokenizerFrom: Fixtures.tiny, threads: threads)
            try out.commit()
        }
        let a = try Checkpoint(directory: dir + "/a")
        let b = try Checkpoint(directory: dir + "/b")
        #expect(a.weights.files.count > 1)
        for (x, y) in zip(a.weights.files, b.weights.files) { #expect(Array(x.mapped.bytes) == Array(y.mapped.bytes)) }
        let report = IntegrityCheck.run(a, threads: 2)
        #expect(report.ok, "\(report.problems)")
        // Linear weights have std ≈ 1/sqrt(fan_in).
        let w = try #require(a.weights["model.layers.1.mlp.experts.0.gate_proj.weight"])
        let values = stride(from: 0, to: w.info.byteCount, by: 2).map { i -> Float in
            Float(bitPattern: UInt32(w.data.load(fromByteOffset: i, as: UInt16.self)) << 16)
        }
        let mean = values.reduce(0, +) / Float(values.count)
        let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(values.count)).squareRoot()
        #expect(abs(std - 1 / 8) < 0.01, "std \(std)")
    }
}

@Suite struct ProblemPrintingTests {
    @Test func controlCharactersInNamesAreEscaped() {
        let p = Problem(kind: .unexpectedTensor, file: "model\u{7}.safetensors", tensor: "evil\u{1b}[2Jname\nnext", message: "not part of the model")
        #expect(p.description == "model\\u{07}.safetensors: tensor evil\\u{1b}[2Jname\\u{0a}next: not part of the model")
        #expect(Problem.printable("日本語 ok") == "日本語 ok")
    }
}
