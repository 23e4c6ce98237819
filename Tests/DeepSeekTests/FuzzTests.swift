import Foundation
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
