import Foundation
import JSON
import TestSupport
import Testing

@testable import SafeTensors

/// Seeded mutation fuzzing (`TestSupport.Mutator`) of the parsers that read untrusted bytes:
/// any case may be refused with an error; none may trap or hang. Executions per second are
/// printed for the closing notes.
@Suite struct SafeTensorsFuzzTests {
    @Test func headerAndJSONParsersSurviveMutations() throws {
        // A real shard's header (and the start of its data), the index and the config.
        let shard = try readWholeFile(Fixtures.tiny + "/model-00003-of-00006.safetensors")
        let headerLength = Int(shard.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let headerSeed = Array(shard.prefix(8 + headerLength + 256))
        var m = Mutator(seed: 1)
        let headers = m.run(seeds: [headerSeed], iterations: 3000) { bytes in
            _ = bytes.withUnsafeBytes { try? SafeTensorsHeader.parse($0, path: "fuzz.safetensors") }
        }
        let jsonSeeds = try [Fixtures.tiny + "/model.safetensors.index.json", Fixtures.tiny + "/config.json",
                             Fixtures.tiny + "/tokenizer_config.json"].map { try readWholeFile($0) }
        let json = m.run(seeds: jsonSeeds, iterations: 3000) { bytes in _ = try? JSONParser.parse(bytes) }
        print("fuzz: safetensors header \(Int(headers)) execs/s, JSON \(Int(json)) execs/s")
    }

    @Test func indexReaderSurvivesMutations() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let seed = try readWholeFile(Fixtures.tiny + "/model.safetensors.index.json")
        var m = Mutator(seed: 2)
        let rate = m.run(seeds: [seed], iterations: 300) { bytes in
            FileManager.default.createFile(atPath: dir + "/model.safetensors.index.json", contents: Data(bytes))
            _ = try? ShardedCheckpoint.readIndex(dir + "/model.safetensors.index.json")
        }
        print("fuzz: index \(Int(rate)) execs/s")
    }
}
