import Foundation
import JSON
import Kernels
import SafeTensors
import TestSupport
import Testing

@testable import DeepSeek

/// Records activations and routing of one forward pass.
final class Recorder: ForwardObserver {
    var activations: [String: Matrix] = [:]
    var routing: [Int: Routing] = [:]
    func record(_ name: String, _ value: Matrix) { activations[name] = value }
    func routed(layer: Int, _ r: Routing) { routing[layer] = r }
}

/// ‖a − b‖ / ‖b‖.
func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}

func floats(_ loc: TensorLocation) -> [Float] {
    (0..<(loc.info.byteCount / 4)).map { loc.data.load(fromByteOffset: $0 * 4, as: Float.self) }
}

/// The transformers reference (fixtures README): fp32 compute from the BF16 weights.
enum Reference {
    static let json: JSONValue = {
        let bytes = (try? readWholeFile(Fixtures.tiny + "/reference.json")) ?? []
        return (try? JSONParser.parse(bytes)) ?? .null
    }()
    static var prompts: [JSONValue] { json["prompts"]?.arrayValue ?? [] }
    static func ids(_ v: JSONValue?) -> [Int] { v?.arrayValue?.compactMap { $0.integerValue.map(Int.init) } ?? [] }
}

@Suite(.serialized) struct ForwardParityTests {
    static let checkpoint = try! Checkpoint(directory: Fixtures.tiny)
    /// Parity against transformers pins the reference kernels (f32 sgemm for every product).
    let model: Transformer = {
        let m = Transformer(checkpoint: ForwardParityTests.checkpoint, threads: 2)
        m.backend = .reference
        return m
    }()

    @Test func ropeConstantsMatchReference() throws {
        let derived = try #require(Reference.json["derived"])
        let rope = RopeParameters(config: Self.checkpoint.config)
        let expected = derived["rope_inv_freq"]!.arrayValue!.map { Float($0.doubleValue!) }
        for (a, b) in zip(rope.invFreq, expected) { #expect(abs(a - b) <= 1e-7 * max(1, abs(b)), "inv_freq \(a) vs \(b)") }
        #expect(abs(Double(rope.softmaxScale) - derived["softmax_scale"]!.doubleValue!) < 1e-6)
        #expect(abs(Double(rope.cosSinScale) - derived["rope_cos_sin_scale"]!.doubleValue!) < 1e-7)
    }

    @Test(arguments: 0..<8) func lastLogitsAndRouting(prompt index: Int) throws {
        let prompt = Reference.prompts[index]
        let ids = Reference.ids(prompt["input_ids"])
        let recorder = Recorder()
        let logits = try model.forward(ids, cache: KVCache(config: model.config), observer: recorder)
        let refFile = try SafeTensorsFile(path: Fixtures.tiny + "/reference-logits.safetensors")
        let ref = floats(TensorLocation(file: refFile, info: try #require(refFile.info("prompt_\(index)"))))
        let err = relativeL2(logits.data, ref)
        #expect(err <= 1e-4, "prompt \(index): last-position logits relative L2 \(err)")
        // Router choices: the same expert set for every token and MoE layer.
        for (layerKey, r) in try #require(prompt["router"]?.objectValue).pairs {
            let layer = Int(layerKey)!
            let expected = r["expert_ids"]!.arrayValue!.map { Set(Reference.ids($0)) }
            let got = try #require(recorder.routing[layer]).experts.map(Set.init)
            #expect(got.count == expected.count)
            for (t, (g, e)) in zip(got, expected).enumerated() {
                #expect(g == e, "prompt \(index) layer \(layer) token \(t): experts \(g.sorted()) vs \(e.sorted())")
            }
            let expectedW = r["weights"]!.arrayValue!.map { $0.arrayValue!.map { Float($0.doubleValue!) } }
            for (t, w) in recorder.routing[layer]!.weights.enumerated() {
                for (a, b) in zip(w, expectedW[t]) { #expect(abs(a - b) <= 1e-4 * max(1, abs(b)), "weight \(a) vs \(b)") }
            }
        }
    }

    @Test func prompt0Activations() throws {
        let ids = Reference.ids(Reference.prompts[0]["input_ids"])
        let recorder = Recorder()
        _ = try model.forward(ids, cache: KVCache(config: model.config), observer: recorder)
        let file = try SafeTensorsFile(path: Fixtures.tiny + "/reference-prompt0-activations.safetensors")
        var worst = (name: "", err: 0.0)
        for t in file.tensors {
            let got = try #require(recorder.activations[t.name], "activation \(t.name) not recorded")
            let err = relativeL2(got.data, floats(TensorLocation(file: file, info: t)))
            if err > worst.err { worst = (t.name, err) }
            #expect(err <= 1e-4, "\(t.name): relative L2 \(err)")
        }
        print("prompt 0 activations: worst relative L2 \(worst.err) at \(worst.name)")
    }

    @Test(arguments: 0..<8) func greedyContinuation(prompt index: Int) throws {
        let prompt = Reference.prompts[index]
        let ids = Reference.ids(prompt["input_ids"])
        let expected = Reference.ids(prompt["greedy"]?["new_ids"])
        let generator = Generator(model: model)
        let result = try generator.generate(prompt: ids, maxNewTokens: expected.count, sampling: .greedy, stopAtEOS: false)
        #expect(result.tokens == expected, "prompt \(index): \(result.tokens) vs \(expected)")
    }

    /// The fast kernels (direct BF16 kernels for decode and small expert batches) against the
    /// pinned reference path, over prefill and decode: a stated tolerance of their own (same f32
    /// products, another summation order), the same greedy tokens, and transformers' logits still
    /// within the parity tolerance.
    @Test func fastBackendAgreesWithReferenceBackend() throws {
        let fast = Transformer(checkpoint: Self.checkpoint, threads: 2)
        fast.backend = .fast
        let prompt = Reference.prompts[0]
        let ids = Reference.ids(prompt["input_ids"])
        let refCache = KVCache(config: model.config), fastCache = KVCache(config: model.config)
        var a = try model.forward(ids, cache: refCache), b = try fast.forward(ids, cache: fastCache)
        #expect(relativeL2(b.data, a.data) <= 1e-5, "prefill: fast vs reference \(relativeL2(b.data, a.data))")
        for step in 0..<6 {
            let next = a.data.indices.max { a.data[$0] < a.data[$1] }!
            #expect(b.data.indices.max { b.data[$0] < b.data[$1] }! == next, "step \(step): greedy token differs")
            a = try model.forward([next], cache: refCache)
            b = try fast.forward([next], cache: fastCache)
            #expect(relativeL2(b.data, a.data) <= 1e-5, "decode step \(step): fast vs reference \(relativeL2(b.data, a.data))")
        }
    }

    /// A routed-expert batch runs as one pool (experts × row pieces); with an observer attached the
    /// experts run one at a time. Same products, same order of sums: identical logits.
    @Test func pooledExpertsEqualOneAtATime() throws {
        final class Watcher: LinearObserver {
            var seen = 0
            func linearInput(_ role: TensorRole, _ x: Matrix) { seen += 1 }
        }
        let ids = Reference.ids(Reference.prompts[1]["input_ids"])
        for backend in [LinearBackend.fast, .reference, .bf16Activations] {
            let pooled = Transformer(checkpoint: Self.checkpoint, threads: 2)
            pooled.backend = backend
            let single = Transformer(checkpoint: Self.checkpoint, threads: 2)
            single.backend = backend
            let watcher = Watcher()
            single.linearObserver = watcher
            let a = try pooled.forward(ids, cache: KVCache(config: model.config))
            let b = try single.forward(ids, cache: KVCache(config: model.config))
            #expect(watcher.seen > 0)
            #expect(a.data == b.data, "\(backend): pooled experts differ from one at a time")
        }
    }

    /// Activations rounded to bf16 for prefill products really run (the logits move) and stay
    /// near the exact path. The tiny model's random weights amplify any perturbation (its router
    /// flips on near-ties), so the quality bound is the trained fixture's, in the CLI tests.
    @Test func bf16ActivationPrefillRunsAndStaysNear() throws {
        let fast = Transformer(checkpoint: Self.checkpoint, threads: 2)
        fast.backend = .bf16Activations
        let ids = Reference.ids(Reference.prompts[0]["input_ids"])
        let exact = try model.forward(ids, cache: KVCache(config: model.config), allLogits: true)
        let approx = try fast.forward(ids, cache: KVCache(config: model.config), allLogits: true)
        let e = relativeL2(approx.data, exact.data)
        #expect(ids.count < Linear.bf16GemmThreshold || e > 0, "bf16 activations did not run (identical logits)")
        #expect(e <= 0.2, "bf16 activations: relative L2 \(e) against the exact path")
    }
}
