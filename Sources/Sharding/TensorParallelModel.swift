import DeepSeek
import Foundation
import Kernels
import SafeTensors

/// One rank of a reshard output: its own directory's tensors (plain or packed), the plan's
/// slices for it, and the forward pass's view of them, checked against the slices' shapes.
public final class RankWeights: @unchecked Sendable {
    public let rank: Int
    public let store: any TensorStore
    public let weights: StoreWeights
    private let expected: [String: PlannedSlice]

    /// `schema` names tensors as the rank files do (the manifest's layout).
    init(rank: Int, store: any TensorStore, plan: ShardPlan, schema: TensorSchema) {
        self.rank = rank
        self.store = store
        expected = Dictionary(uniqueKeysWithValues: plan.ranks[rank].map { (schema.name($0.role, $0.component), $0) })
        var logical: [TensorRole: [Int]] = [:]
        for s in plan.ranks[rank] where s.component == .weightPacked { logical[s.role] = s.logicalShape }
        weights = StoreWeights(store: store, schema: schema, expectedShapes: expected.mapValues(\.shape), logicalShapes: logical)
    }

    /// Tensors of this rank that differ from the plan: missing, unexpected, mis-shaped.
    public func problems() -> [String] {
        var out: [String] = []
        let listing = store.listing
        let present = Dictionary(listing.map { ($0.info.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (name, s) in expected.sorted(by: { $0.key < $1.key }) {
            guard let t = present[name] else { out.append("\(store.directory): tensor \(name) missing"); continue }
            if t.info.shape != s.shape { out.append("\(store.directory)/\(t.file): tensor \(name): shape \(t.info.shape), expected \(s.shape)") }
        }
        for t in listing where expected[t.info.name] == nil {
            out.append("\(store.directory)/\(t.file): tensor \(t.info.name) is not part of rank \(rank)")
        }
        return out
    }
}

/// Runs a reshard output as a tensor-parallel engine would: every rank computes its partial
/// results from its own files, and partial sums are reduced across ranks in rank order
/// (embedding and o_proj / down_proj outputs summed, vocab-parallel logits concatenated).
public final class TensorParallelModel: LanguageModel {
    public let plan: ShardPlan
    public let ranks: [Transformer]
    public let weights: [RankWeights]
    public let config: ModelConfig

    public init(directory: String, threads: Int) throws {
        let manifest = try ReshardManifest(directory: directory)
        let rank0 = directory + "/" + manifest.ranks[0].directory
        let config = try ModelConfig.load(path: rank0 + "/config.json")
        let plan = try ShardPlan(schema: TensorSchema(config: config), tp: manifest.tp, experts: manifest.experts, groupSize: manifest.groupSize)
        let schema = TensorSchema(config: config, naming: manifest.rankLayout.naming)
        var weights: [RankWeights] = []
        var ranks: [Transformer] = []
        let rankConfig = plan.rankConfig()
        for r in 0..<manifest.tp {
            let w = RankWeights(rank: r, store: try manifest.store(rank: r, in: directory, threads: threads), plan: plan, schema: schema)
            weights.append(w)
            let local = plan.experts == .ep ? Set(plan.localExperts[r]) : nil
            ranks.append(Transformer(config: rankConfig, weights: w.weights, threads: threads, vocabRange: plan.vocabRange(rank: r), localExperts: local))
        }
        self.plan = plan
        self.ranks = ranks
        self.weights = weights
        self.config = config
    }

    /// One KV cache per rank (each rank keeps the latents it computes).
    public func makeCaches() -> [KVCache] { ranks.map { KVCache(config: $0.config) } }

    static func reduce(_ parts: [Matrix]) -> Matrix {
        var sum = parts[0]
        for p in parts.dropFirst() { sum += p }
        return sum
    }

    public func forward(_ tokens: [Int], caches: [KVCache], allLogits: Bool) throws -> Matrix {
        let start = caches[0].length
        var x = Self.reduce(try ranks.map { try $0.embed(tokens) })
        for l in 0..<config.numHiddenLayers {
            x += Self.reduce(try zip(ranks, caches).map { try $0.0.attention(layer: l, x, start: start, cache: $0.1) })
            x += Self.reduce(try ranks.map { try $0.feedForward(layer: l, x) })
        }
        for c in caches { c.advance(by: tokens.count) }
        // Vocab-parallel head: each rank's logits are its columns.
        let parts = try ranks.map { try $0.logits(x, allPositions: allLogits) }
        var out = Matrix(rows: parts[0].rows, cols: config.vocabSize)
        for (r, p) in parts.enumerated() {
            let offset = plan.vocabRange(rank: r).lowerBound
            for i in 0..<p.rows { for c in 0..<p.cols { out.data[i * config.vocabSize + offset + c] = p.data[i * p.cols + c] } }
        }
        return out
    }
}
