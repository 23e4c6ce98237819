import DeepSeek
import Foundation
import JSON
import Kernels
import SafeTensors

/// The inverse of `Resharder`: rank directories back into one checkpoint whose tensors are
/// byte-identical to the source's. Replicas are checked to be identical.
public struct Merger {
    public let directory: String
    public let manifest: ReshardManifest
    public let ranks: [any TensorStore]

    public init(directory: String, threads: Int = 1) throws {
        self.directory = directory
        manifest = try ReshardManifest(directory: directory)
        // Every rank file must be the one the manifest recorded: a flipped bit or two swapped rank
        // files would otherwise merge "successfully" into a wrong model.
        let problems = try manifest.ranks.flatMap { try ReshardIntegrity.checksumProblems(directory: directory, rank: $0) }
        // Either is damaged data (exit 1, as verify reports it), not a usage error.
        func refuse(_ what: String, _ problems: [Problem]) -> SafeTensorsError {
            .manifestInvalid(file: directory + "/" + ReshardManifest.fileName,
                             reason: "\(what), refusing to merge: " + problems.prefix(3).map(\.description).joined(separator: "; "))
        }
        if !problems.isEmpty { throw refuse("\(problems.count) file(s) differ from the manifest", problems) }
        // The slices must be the plan config.json implies: an edited manifest would reassemble
        // tensors from the wrong pieces.
        let config = try ModelConfig.load(path: directory + "/" + manifest.ranks[0].directory + "/config.json")
        let plan = try ShardPlan(schema: TensorSchema(config: config), tp: manifest.tp, experts: manifest.experts, groupSize: manifest.groupSize)
        let planProblems = ReshardIntegrity.planProblems(manifest: manifest, plan: plan)
        if !planProblems.isEmpty { throw refuse("the manifest's slices differ from the plan config.json implies", planProblems) }
        let m = manifest
        ranks = try (0..<m.tp).map { try m.store(rank: $0, in: directory, threads: threads) }
    }

    public func write(into out: OutputDirectory, maxShardSize: Int, progress: ((Int, Int, String) -> Void)? = nil) throws {
        let rank0 = directory + "/" + manifest.ranks[0].directory
        // config.json without the tensor_parallel entry; side files as they are.
        guard case .object(var config) = (try? JSONParser.parse(try readWholeFile(rank0 + "/config.json"))) ?? .null else {
            throw ModelError.badInput("\(rank0)/config.json is not a JSON object")
        }
        config["tensor_parallel"] = nil
        let specs = manifest.tensors.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let writer = ShardedWriter(directory: out.partialPath, tensors: specs, maxShardSize: maxShardSize)
        try DerivedCheckpoint.write(into: out, configText: JSONValue.object(config).serialized(pretty: true) + "\n",
                                    sideFilesFrom: rank0, writer: writer) { writer in
            for (i, t) in manifest.tensors.enumerated() {
                try writer.write(t.name, from: .producer { w in try self.produce(t, into: w) })
                progress?(i + 1, manifest.tensors.count, t.name)
            }
        }
    }

    /// A rank's bytes of a tensor; `keep` holds what keeps them alive until the tensor is written.
    func slice(_ t: ReshardManifest.Tensor, rank: Int, keep: inout [AnyObject]) throws -> UnsafeRawBufferPointer {
        guard ranks[rank].info(t.storedAs) != nil else {
            throw ModelError.badTensor(file: directory + "/" + manifest.ranks[rank].directory, tensor: t.storedAs, message: "missing from this rank")
        }
        let data = try ranks[rank].bytes(t.storedAs)
        keep.append(data.owner)
        return data.bytes
    }

    func produce(_ t: ReshardManifest.Tensor, into w: TensorByteWriter) throws {
        let es = t.dtype.size
        var keep: [AnyObject] = []
        defer { keep.removeAll() }
        guard let first = t.slices.first else { throw ModelError.badTensor(file: directory, tensor: t.name, message: "no rank holds it") }
        if let value = t.value {
            // Each rank holds its own value (a quantized weight's weight_shape): the source's is in the manifest.
            for s in t.slices where try slice(t, rank: s.rank, keep: &keep).count != value.count * 8 {
                throw ModelError.badTensor(file: directory, tensor: t.name, message: "rank \(s.rank) holds a value of the wrong size")
            }
            try value.withUnsafeBytes { try w.write($0) }
            return
        }
        if first.dim == nil {
            let bytes = try slice(t, rank: first.rank, keep: &keep)
            guard bytes.count == t.shape.reduce(es, *) else {
                throw ModelError.badTensor(file: directory, tensor: t.name, message: "rank \(first.rank) holds \(bytes.count) bytes, expected \(t.shape.reduce(es, *))")
            }
            for other in t.slices.dropFirst() where !(try slice(t, rank: other.rank, keep: &keep)).elementsEqual(bytes) {
                throw ModelError.badTensor(file: directory, tensor: t.name, message: "replica on rank \(other.rank) differs from rank \(first.rank)")
            }
            try w.write(bytes)
            return
        }
        let slices = t.slices.sorted { $0.offset < $1.offset }
        var expected = 0
        for s in slices {
            guard s.offset == expected, s.dim == first.dim else {
                throw ModelError.badTensor(file: directory, tensor: t.name, message: "slices do not tile dim \(first.dim!) (gap or overlap at \(expected))")
            }
            expected += s.length
        }
        guard expected == t.shape[first.dim!] else {
            throw ModelError.badTensor(file: directory, tensor: t.name, message: "slices cover \(expected) of \(t.shape[first.dim!])")
        }
        let parts = try slices.map { s -> UnsafeRawBufferPointer in
            let d = try slice(t, rank: s.rank, keep: &keep)
            var shape = t.shape
            shape[first.dim!] = s.length
            guard d.count == shape.reduce(es, *) else {
                throw ModelError.badTensor(file: directory, tensor: t.name, message: "rank \(s.rank) slice has \(d.count) bytes, expected \(shape.reduce(es, *))")
            }
            return d
        }
        if first.dim == 0 {
            for p in parts { try w.write(p) }
            return
        }
        // Columns: row by row, each rank's chunk in offset order.
        let rows = t.shape[0]
        for r in 0..<rows {
            for (s, p) in zip(slices, parts) {
                let chunk = s.length * es
                try w.write(UnsafeRawBufferPointer(rebasing: p[(r * chunk)..<((r + 1) * chunk)]))
            }
        }
    }
}
