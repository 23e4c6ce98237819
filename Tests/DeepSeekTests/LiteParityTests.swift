import Foundation
import JSON
import Kernels
import SafeTensors
import TestSupport
import Testing

@testable import DeepSeek

/// V2-Lite's structure (q_proj, greedy routing, routed_scaling_factor 1.0) against transformers
/// logits made by Scripts/make-lite-reference.py from a synth checkpoint kept in the fixtures.
@Suite struct LiteParityTests {
    @Test func lastLogitsMatchTransformers() throws {
        let dir = Fixtures.root + "/synth-lite"
        let ckpt = try Checkpoint(directory: dir)
        #expect(ckpt.config.qLoraRank == nil)
        #expect(ckpt.config.topkMethod == .greedy)
        let ref = try JSONParser.parse(try readWholeFile(dir + "/reference.json"))
        let model = Transformer(checkpoint: ckpt, threads: 2)
        for c in try #require(ref["cases"]?.arrayValue) {
            let ids = Reference.ids(c["input_ids"])
            let expected = try #require(c["last_logits"]?.arrayValue).map { Float($0.doubleValue ?? .nan) }
            let logits = try model.forward(ids, cache: KVCache(config: ckpt.config)).data
            let err = relativeL2(logits, expected)
            #expect(err <= 1e-4, "ids \(ids): relative L2 \(err)")
            #expect(logits.indices.max { logits[$0] < logits[$1] } == expected.indices.max { expected[$0] < expected[$1] })
        }
    }
}
