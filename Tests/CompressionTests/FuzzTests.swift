import Foundation
import SafeTensors
import TestSupport
import Testing

@testable import Compression

/// Seeded mutation fuzzing of the packed container (index, frames, every decode path) and the
/// pack manifest.
@Suite struct PackedFuzzTests {
    @Test func packedContainerAndManifestSurviveMutations() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let packed = try PackFixtures.pack(.bf16ExpRans, into: dir, frameSize: 4096)
        // The smallest packed shard (the layers' first), its manifest.
        let name = "model-00006-of-00006.safetensors.zst"
        let seed = try readWholeFile(packed + "/" + name)
        let manifest = try readWholeFile(packed + "/" + PackManifest.fileName)
        let work = dir + "/case"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        var m = Mutator(seed: 6)
        let files = m.run(seeds: [seed], iterations: 400) { bytes in
            FileManager.default.createFile(atPath: work + "/f.zst", contents: Data(bytes))
            guard let f = try? PackedFile(path: work + "/f.zst") else { return }
            for t in f.tensors { _ = try? f.tensorData(t.name) }
        }
        let manifests = m.run(seeds: [manifest], iterations: 400) { bytes in
            FileManager.default.createFile(atPath: work + "/" + PackManifest.fileName, contents: Data(bytes))
            _ = try? PackManifest(directory: work)
        }
        print("fuzz: packed container \(Int(files)) execs/s (\(seed.count) bytes), pack manifest \(Int(manifests)) execs/s")
    }
}
