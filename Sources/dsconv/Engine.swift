import Compression
import DeepSeek
import Kernels
import Sharding

/// What runs the prompt: one model, or a reshard output's ranks with their partial sums reduced.
enum Engine {
    case single(Transformer, textDirectory: String)
    case tensorParallel(TensorParallelModel, textDirectory: String)

    var config: ModelConfig {
        switch self {
        case .single(let m, _): return m.config
        case .tensorParallel(let m, _): return m.config
        }
    }

    /// Where tokenizer.json and tokenizer_config.json are.
    var textDirectory: String {
        switch self {
        case .single(_, let d), .tensorParallel(_, let d): return d
        }
    }

    func generate(_ ids: [Int], maxNewTokens: Int, sampling: Sampling) throws -> GenerationResult {
        switch self {
        case .single(let m, _): return try Generator(model: m).generate(prompt: ids, maxNewTokens: maxNewTokens, sampling: sampling)
        case .tensorParallel(let m, _):
            guard sampling == .greedy else { throw ModelError.unsupported("--temperature is not supported on a reshard output; it decodes greedily") }
            return try m.generate(prompt: ids, maxNewTokens: maxNewTokens)
        }
    }

    func allLogits(_ sequence: [Int]) throws -> Matrix {
        switch self {
        case .single(let m, _): return try m.forward(sequence, cache: KVCache(config: m.config), allLogits: true)
        case .tensorParallel(let m, _): return try m.forward(sequence, caches: m.makeCaches(), allLogits: true)
        }
    }
}

extension Engine {
    /// Opens any checkpoint kind as the engine that runs it: a plain or quantized checkpoint, a
    /// packed directory, or a reshard output (its ranks as a tensor-parallel engine).
    static func open(_ directory: String, threads: Int) throws -> Engine {
        if ReshardManifest.isReshardOutput(directory) {
            return .tensorParallel(try TensorParallelModel(directory: directory, threads: threads),
                                   textDirectory: directory + "/" + ReshardManifest.rankDirectory(0))
        }
        if PackManifest.isPacked(directory) {
            let p = try PackedCheckpoint(directory: directory, threads: threads)
            return .single(Transformer(config: p.config, weights: p, threads: threads), textDirectory: directory)
        }
        return .single(Transformer(checkpoint: try Checkpoint(directory: directory), threads: threads), textDirectory: directory)
    }
}
