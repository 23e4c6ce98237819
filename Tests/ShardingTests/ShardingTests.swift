import DeepSeek
import Foundation
import JSON
import Kernels
import SafeTensors
import TestSupport
import Testing

@testable import Sharding

enum ShardFixtures {
    static let tiny = Fixtures.tiny

    /// A small V2.5-structured synth model whose sizes split 8 ways (8 heads, 16 experts).
    static func synth(in dir: String) throws -> Checkpoint {
        let sizes = SynthSizes(layers: 3, experts: 16, hidden: 64, heads: 8, vocab: 512, groups: 4)
        let config = try Synth.config(like: .deepseekV25, sizes: sizes)
        let out = try OutputDirectory(dir + "/src", force: false)
        try Synth.write(config: config, seed: 3, out: out, maxShardSize: 200_000, tokenizerFrom: tiny, threads: 2)
        try out.commit()
        return try Checkpoint(directory: dir + "/src")
    }

    static func reshard(_ src: Checkpoint, tp: Int, experts: ExpertMode, to path: String) throws {
        let plan = try ShardPlan(schema: src.schema, tp: tp, experts: experts)
        let out = try OutputDirectory(path, force: false)
        _ = try Resharder(source: src, plan: plan, maxShardSize: 100_000, threads: 2).write(into: out)
        try out.commit()
    }
}

@Suite struct ShardPlanTests {
    let v25 = TensorSchema(config: ModelPreset.deepseekV25.config)

    @Test func v25AtTP8() throws {
        let plan = try ShardPlan(schema: v25, tp: 8, experts: .tp)
        #expect(plan.ranks.count == 8)
        let r3 = Dictionary(uniqueKeysWithValues: plan.ranks[3].map { ($0.name, $0) })
        #expect(r3["model.embed_tokens.weight"]?.shape == [12800, 5120])
        #expect(r3["model.embed_tokens.weight"]?.offset == 3 * 12800)
        #expect(r3["model.layers.0.self_attn.q_b_proj.weight"]?.shape == [16 * 192, 1536])
        #expect(r3["model.layers.0.self_attn.kv_b_proj.weight"]?.shape == [16 * 256, 512])
        #expect(r3["model.layers.0.self_attn.o_proj.weight"]?.shape == [5120, 16 * 128])
        #expect(r3["model.layers.0.self_attn.q_a_proj.weight"]?.dim == nil)
        #expect(r3["model.layers.5.mlp.gate.weight"]?.dim == nil)
        #expect(r3["model.layers.5.mlp.experts.7.down_proj.weight"]?.shape == [5120, 192])
        #expect(r3["model.layers.5.mlp.experts.7.gate_proj.weight"]?.shape == [192, 5120])
        #expect(r3["model.layers.5.mlp.shared_experts.down_proj.weight"]?.shape == [5120, 384])
        // Every rank gets an equal share; replicated tensors are small.
        let bytes = plan.bytesPerRank(bytesPerElement: 2)
        #expect(Set(bytes).count == 1)
        #expect(bytes[0] == v25.weightBytesPerGPU(tp: 8))
    }

    @Test func expertParallelBlocks() throws {
        let plan = try ShardPlan(schema: v25, tp: 8, experts: .ep)
        #expect(plan.localExperts[2] == Array(40..<60))
        let names = Set(plan.ranks[2].map(\.name))
        #expect(names.contains("model.layers.1.mlp.experts.40.down_proj.weight"))
        #expect(!names.contains("model.layers.1.mlp.experts.60.down_proj.weight"))
        #expect(plan.ranks[2].first { $0.name == "model.layers.1.mlp.experts.40.down_proj.weight" }?.shape == [5120, 1536])
    }

    @Test func groupSizeAlignment() throws {
        #expect(throws: PlanError.self) { try ShardPlan(schema: v25, tp: 8, experts: .tp, groupSize: 128) }
        do {
            _ = try ShardPlan(schema: v25, tp: 8, experts: .tp, groupSize: 128)
        } catch {
            #expect(error.message.contains("192"))
            #expect(error.message.contains("32, 64"))
            #expect(error.message.contains("--experts ep"))
            #expect(error.message.contains("experts"))
        }
        _ = try ShardPlan(schema: v25, tp: 8, experts: .tp, groupSize: 64)
        _ = try ShardPlan(schema: v25, tp: 8, experts: .ep, groupSize: 128)
    }

    @Test func indivisibleSplitsNameTheTensor() {
        do {
            _ = try ShardPlan(schema: v25, tp: 3, experts: .tp)
            Issue.record("tp 3 must fail")
        } catch {
            #expect(error.message.contains("model.embed_tokens.weight") || error.message.contains("heads"), "\(error.message)")
            #expect(error.message.contains("3 ways"))
        }
        let lite = TensorSchema(config: ModelPreset.deepseekV2Lite.config)
        do {
            _ = try ShardPlan(schema: lite, tp: 32, experts: .ep)
            Issue.record("ep 32 must fail")
        } catch {
            #expect(error.message.contains("n_routed_experts 64") || error.message.contains("heads"), "\(error.message)")
        }
        #expect(throws: PlanError.self) { try ShardPlan(schema: lite, tp: 128, experts: .ep) }
    }
}

@Suite(.serialized) struct ReshardRoundTripTests {
    @Test func roundTripsAreByteIdentical() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = try ShardFixtures.synth(in: dir)
        for tp in [1, 2, 4, 8] {
            for mode in ExpertMode.allCases {
                let out = dir + "/tp\(tp)-\(mode.rawValue)"
                try ShardFixtures.reshard(src, tp: tp, experts: mode, to: out)
                let manifest = try ReshardManifest(directory: out)
                #expect(manifest.ranks.count == tp)
                // Each rank is a self-contained HF directory.
                for r in manifest.ranks {
                    let d = out + "/" + r.directory
                    #expect(FileManager.default.fileExists(atPath: d + "/tokenizer.json"))
                    let cfg = try JSONParser.parse(try readWholeFile(d + "/config.json"))
                    #expect(cfg["tensor_parallel"]?["rank"] == JSONValue(r.rank))
                    #expect(cfg["tensor_parallel"]?["experts"]?.stringValue == mode.rawValue)
                    #expect(cfg["tensor_parallel"]?["local_experts"]?.arrayValue?.count == (mode == .ep ? 16 / tp : 16))
                }
                let merged = try OutputDirectory(out + "-merged", force: false)
                try Merger(directory: out).write(into: merged, maxShardSize: 1 << 30)
                try merged.commit()
                let back = try ShardedCheckpoint(directory: out + "-merged")
                #expect(back.tensors.count == src.weights.tensors.count)
                for t in src.weights.tensors {
                    let m = try #require(back[t.info.name])
                    #expect(m.info.shape == t.info.shape && m.info.dtype == t.info.dtype)
                    #expect(m.data.elementsEqual(t.data), "tp \(tp) \(mode): \(t.info.name) differs after merge")
                }
                #expect(try IntegrityCheck.run(Checkpoint(directory: out + "-merged"), threads: 2).ok)
            }
        }
    }

    @Test func tensorParallelForwardMatchesUnsharded() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixture = try Checkpoint(directory: ShardFixtures.tiny)
        let synth = try ShardFixtures.synth(in: dir)
        let cases: [(Checkpoint, Int, ExpertMode)] = [(fixture, 2, .tp), (fixture, 4, .ep), (synth, 8, .tp), (synth, 8, .ep)]
        for (i, (src, tp, mode)) in cases.enumerated() {
            let out = dir + "/case\(i)"
            try ShardFixtures.reshard(src, tp: tp, experts: mode, to: out)
            let sharded = try TensorParallelModel(directory: out, threads: 2)
            let model = Transformer(checkpoint: src, threads: 2)
            let prompt = [100000 % src.config.vocabSize, 17, 230, 5, 99, 311, 42]
            let ours = try sharded.forward(prompt, caches: sharded.makeCaches(), allLogits: true)
            let ref = try model.forward(prompt, cache: KVCache(config: src.config), allLogits: true)
            let cmp = LogitComparison(ours: ours, reference: ref)
            #expect(cmp.relativeL2 <= 1e-5, "case \(i) tp \(tp) \(mode): relative L2 \(cmp.relativeL2)")
            #expect(cmp.top1Agreement == 1)
            let a = try Generator(model: sharded).generate(prompt: prompt, maxNewTokens: 6, sampling: .greedy, stopAtEOS: false).tokens
            let b = try Generator(model: model).generate(prompt: prompt, maxNewTokens: 6, sampling: .greedy, stopAtEOS: false).tokens
            #expect(a == b, "case \(i): greedy \(a) vs \(b)")
            let report = try ReshardIntegrity.run(directory: out, threads: 2)
            #expect(report.ok, "\(report.problems)")
        }
    }

    @Test func damagedRankFileFailsItsChecksum() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = try Checkpoint(directory: ShardFixtures.tiny)
        try ShardFixtures.reshard(src, tp: 2, experts: .tp, to: dir + "/out")
        let rank1 = dir + "/out/rank-01"
        let shard = try #require(try listDirectory(rank1).sorted().first { $0.hasSuffix(".safetensors") })
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: rank1 + "/" + shard)))
        bytes[bytes.count - 3] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: rank1 + "/" + shard))
        let report = try ReshardIntegrity.run(directory: dir + "/out", threads: 2)
        #expect(report.problems.contains { $0.kind == .checksum && $0.file == "rank-01/" + shard })
    }
}
