import Foundation
import JSON
import Quantization
import SafeTensors
import TestSupport
import Testing

@testable import DeepSeek

/// Seeded mutation fuzzing of config.json reading, validation and the schema it drives.
@Suite struct ConfigFuzzTests {
    @Test func configReaderSurvivesMutations() throws {
        let seed = try readWholeFile(Fixtures.tiny + "/config.json")
        var m = Mutator(seed: 5)
        let rate = m.run(seeds: [seed], iterations: 2000) { bytes in
            guard let c = try? ModelConfig.decode(Data(bytes), path: "fuzz/config.json") else { return }
            let schema = TensorSchema(config: c)
            _ = schema.totalParameters
            _ = schema.weightBytesPerGPU(tp: 8)
        }
        print("fuzz: config.json \(Int(rate)) execs/s")
    }
}

/// Seeded mutation fuzzing of the `quantization_config` block (groups, schemes, `targets` and
/// `ignore` names and "re:" patterns) and the schema and scheme look-ups it drives.
@Suite struct QuantizationConfigFuzzTests {
    @Test func quantizationConfigSurvivesMutations() throws {
        let base = try readWholeFile(Fixtures.tiny + "/config.json")
        guard case .object(var config) = try JSONParser.parse(base) else { Issue.record("config.json"); return }
        let q = WeightQuantization(groups: [
            .init(name: "group_0", scheme: QuantScheme(bits: 4, groupSize: 16, symmetric: true), targets: ["Linear"], actorder: nil),
            .init(name: "group_1", scheme: QuantScheme(bits: 8, groupSize: nil, symmetric: false),
                  targets: ["re:.*mlp\\.experts\\.1\\..*", "model.layers.0.mlp.down_proj"], actorder: "static"),
        ], ignore: ["lm_head", "re:.*kv_b_proj$"])
        config["quantization_config"] = q.json
        let seed = Array((JSONValue.object(config).serialized(pretty: true)).utf8)
        // The seed itself parses, with both groups and the patterns.
        let parsed = try ModelConfig.decode(Data(seed), path: "fuzz/config.json")
        #expect(parsed.quantization?.groups.count == 2)
        var m = Mutator(seed: 11)
        let rate = m.run(seeds: [seed], iterations: 1500) { bytes in
            guard let c = try? ModelConfig.decode(Data(bytes), path: "fuzz/config.json") else { return }
            let schema = TensorSchema(config: c)
            _ = schema.weightBytesPerGPU(tp: 4)
            if let r = c.quantization?.resolver {
                for t in schema.tensors.prefix(40) { _ = r.scheme(forModule: t.role.moduleName) }
            }
        }
        print("fuzz: quantization_config \(Int(rate)) execs/s")
    }
}
