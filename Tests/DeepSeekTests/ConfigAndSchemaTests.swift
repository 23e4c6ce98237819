import Foundation
import SafeTensors
import TestSupport
import Testing

@testable import DeepSeek

@Suite struct ConfigAndSchemaTests {
    @Test func fixtureConfigDecodes() throws {
        let c = try ModelConfig.load(path: Fixtures.tiny + "/config.json")
        #expect(c.hiddenSize == 64)
        #expect(c.qLoraRank == 48)
        #expect(c.topkMethod == .groupLimitedGreedy)
        #expect(c.ropeScaling?.factor == 40)
        #expect(c.ropeScaling?.mscaleAllDim == 0.707)
        #expect(!c.isMoELayer(0) && c.isMoELayer(1) && c.isMoELayer(2))
    }

    @Test func missingRequiredFieldNamesIt() throws {
        var text = try String(contentsOfFile: Fixtures.tiny + "/config.json", encoding: .utf8)
        text = text.replacingOccurrences(of: "\"hidden_size\": 64,", with: "")
        #expect { try ModelConfig.decode(Data(text.utf8), path: "x/config.json") } throws: { e in
            let d = "\(e)"
            return d.contains("x/config.json") && d.contains("hidden_size")
        }
    }

    @Test func liteNullQLoraAndTransformers5Layout() throws {
        let lite = ModelPreset.deepseekV2Lite.config
        #expect(lite.qLoraRank == nil)
        let schema = TensorSchema(config: lite)
        #expect(schema["model.layers.0.self_attn.q_proj.weight"]?.shape == [16 * 192, 2048])
        #expect(schema["model.layers.0.self_attn.q_a_proj.weight"] == nil)
        let t5 = #"""
        {"vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
         "kv_lora_rank":4,"q_lora_rank":null,"qk_rope_head_dim":2,"qk_nope_head_dim":2,"v_head_dim":2,
         "rope_parameters":{"rope_type":"yarn","rope_theta":50000,"factor":4,"mscale":1,"mscale_all_dim":1,
                            "original_max_position_embeddings":64,"beta_fast":32,"beta_slow":1}}
        """#
        let c = try ModelConfig.decode(Data(t5.utf8), path: "config.json")
        #expect(c.ropeTheta == 50000)
        #expect(c.ropeScaling?.factor == 4)
    }

    @Test func invalidRelationsAreRefused() throws {
        var c = ModelPreset.deepseekV25.config
        c.nGroup = 7
        #expect(throws: ModelError.self) { try c.validate() }
        c = ModelPreset.deepseekV25.config
        c.numExpertsPerTok = nil
        #expect(throws: ModelError.self) { try c.validate() }
    }

    @Test func v25ParameterCounts() {
        let schema = TensorSchema(config: ModelPreset.deepseekV25.config)
        let total = Double(schema.totalParameters) / 1e9
        let active = Double(schema.activeParameters) / 1e9
        #expect(abs(total - 235.7) < 0.05, "total \(total)B")
        #expect(active > 20.5 && active < 21.8, "active \(active)B")
        // 59 MoE layers × (1 router + 160 × 3 experts + 3 shared) + dense layer 0 + attention.
        #expect(schema.tensors.filter { if case .routedExpert = $0.role { return true }; return false }.count == 59 * 160 * 3)
        // BF16 at tp 8 fits in 80 GB cards.
        #expect(schema.weightBytesPerGPU(tp: 8) < 80_000_000_000)
        #expect(schema.weightBytesPerGPU(tp: 1) == schema.totalParameters * 2)
        #expect(schema.activeWeightBytes == schema.activeParameters * 2)
    }

    @Test func v2LiteParameterCounts() {
        let schema = TensorSchema(config: ModelPreset.deepseekV2Lite.config)
        let total = Double(schema.totalParameters) / 1e9
        let active = Double(schema.activeParameters) / 1e9
        #expect(abs(total - 15.7) < 0.1, "total \(total)B")
        #expect(abs(active - 2.66) < 0.3, "active \(active)B")
    }

    @Test func fixtureMatchesSchema() throws {
        let ckpt = try Checkpoint(directory: Fixtures.tiny)
        #expect(ckpt.schema.tensors.count == 137)
        #expect(IntegrityCheck.schemaProblems(ckpt).isEmpty)
        for t in ckpt.schema.tensors { #expect(ckpt.weights[t.name]?.info.shape == t.shape) }
    }
}
