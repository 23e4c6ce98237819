/// The MLA cache: per layer and token, the normalized KV latent c_kv (kv_lora_rank floats) and the
/// roped shared key k_pe (qk_rope_head_dim floats) — not per-head K and V. For V2.5 that is
/// (512 + 64) × 4 bytes × 60 layers = 138 KB per token instead of 128 heads × (192 + 128) × 4 × 60.
public final class KVCache {
    public let layers: Int
    public let latentWidth: Int
    public let ropeWidth: Int
    /// Per layer: [length, latentWidth + ropeWidth], row-major, latent first.
    var storage: [[Float]]
    public private(set) var length = 0

    public init(config: ModelConfig) {
        layers = config.numHiddenLayers
        latentWidth = config.kvLoraRank
        ropeWidth = config.qkRopeHeadDim
        storage = Array(repeating: [], count: layers)
    }

    public var rowWidth: Int { latentWidth + ropeWidth }

    /// Bytes stored per token, all layers.
    public var bytesPerToken: Int { layers * rowWidth * MemoryLayout<Float>.size }

    func append(layer: Int, rows: [Float]) { storage[layer] += rows }

    /// Called once all layers have appended `count` new tokens.
    public func advance(by count: Int) {
        length += count
        for l in 0..<layers { precondition(storage[l].count == length * rowWidth, "KV cache layer \(l) out of step") }
    }

    public func reset() {
        length = 0
        storage = Array(repeating: [], count: layers)
    }
}
