import DeepSeek
import Foundation
import HDF5
import SafeTensors
import TestSupport
import Testing

@testable import ModelQuantizer

/// Seeded mutation fuzzing of the HDF5 statistics reader (`--stats`): mutated files are read as
/// AWQ would read them; each must give moments or a refusal, never a trap, hang or overflow.
@Suite struct StatisticsFuzzTests {
    @Test func statisticsReaderSurvivesMutations() throws {
        let source = try Checkpoint(directory: Fixtures.root + "/trained-dsv2.5")
        let c = source.config
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/seed.h5"
        let f = try HDF5File(creating: path)
        try f.setAttribute("format", CalibrationStatistics.format)
        try f.setAttribute("version", Int64(1))
        try f.setAttribute("hidden_size", Int64(c.hiddenSize))
        try f.setAttribute("num_hidden_layers", Int64(c.numHiddenLayers))
        try f.setAttribute("n_routed_experts", Int64(c.nRoutedExperts ?? 0))
        for module in ["/model.layers.0.mlp.gate_proj", "/model.layers.1.mlp.shared_experts.up_proj"] {
            try f.createGroup(module)
            try f.write(module + "/mean_abs", [Float](repeating: 0.5, count: c.hiddenSize))
            try f.write(module + "/sum_sq", [Double](repeating: 2, count: c.hiddenSize))
            try f.write(module + "/tokens", [Int64(64)])
        }
        try f.flush()
        let seed = try readWholeFile(path)
        #expect((try CalibrationMoments.read(path: path, schema: source.schema)).modules.count == 2)
        let mutated = dir + "/mutated.h5"
        var m = Mutator(seed: 23)
        var read = 0
        let rate = m.run(seeds: [seed], iterations: 300) { bytes in
            FileManager.default.createFile(atPath: mutated, contents: Data(bytes))
            if let moments = try? CalibrationMoments.read(path: mutated, schema: source.schema) {
                read += 1
                for (_, ch) in moments.modules {
                    #expect(ch.tokens > 0 && ch.meanAbs.allSatisfy { $0.isFinite && $0 >= 0 } && ch.meanSquare.allSatisfy { $0.isFinite && $0 >= 0 })
                }
            }
        }
        print("fuzz: statistics HDF5 \(Int(rate)) execs/s, \(read) of 301 read as moments")
    }
}
