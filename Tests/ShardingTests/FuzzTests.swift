import Foundation
import SafeTensors
import TestSupport
import Testing

@testable import Sharding

/// Seeded mutation fuzzing of the reshard manifest reader (both layouts' manifests as seeds).
@Suite struct ManifestFuzzTests {
    @Test func reshardManifestSurvivesMutations() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = DeepSeekLayoutTests.source
        let hf = try ShardPlan(schema: source.schema, tp: 2, experts: .tp)
        let out = try OutputDirectory(dir + "/hf", force: false)
        _ = try Resharder(source: source, plan: hf, maxShardSize: 1 << 30, threads: 2).write(into: out)
        try out.commit()
        _ = try DeepSeekLayoutTests.reshard(tp: 2, to: dir + "/ds")
        let seeds = try [dir + "/hf", dir + "/ds"].map { try readWholeFile($0 + "/" + ReshardManifest.fileName) }
        let work = dir + "/case"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        var m = Mutator(seed: 7)
        let rate = m.run(seeds: seeds, iterations: 400) { bytes in
            FileManager.default.createFile(atPath: work + "/" + ReshardManifest.fileName, contents: Data(bytes))
            _ = try? ReshardManifest(directory: work)
        }
        print("fuzz: reshard manifest \(Int(rate)) execs/s")
    }
}
