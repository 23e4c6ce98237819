import Foundation
import Kernels
import SafeTensors

/// Sizes a synthetic checkpoint may override; nil keeps the preset's (or the scaled) value.
public struct SynthSizes: Sendable {
    public var layers: Int?
    public var experts: Int?
    public var hidden: Int?
    public var intermediate: Int?
    public var moeIntermediate: Int?
    public var heads: Int?
    public var vocab: Int?
    public var kvLoraRank: Int?
    public var qLoraRank: Int?
    public var expertsPerToken: Int?
    public var groups: Int?
    public init(layers: Int? = nil, experts: Int? = nil, hidden: Int? = nil, intermediate: Int? = nil, moeIntermediate: Int? = nil,
                heads: Int? = nil, vocab: Int? = nil, kvLoraRank: Int? = nil, qLoraRank: Int? = nil, expertsPerToken: Int? = nil,
                groups: Int? = nil) {
        self.layers = layers
        self.experts = experts
        self.hidden = hidden
        self.intermediate = intermediate
        self.moeIntermediate = moeIntermediate
        self.heads = heads
        self.vocab = vocab
        self.kvLoraRank = kvLoraRank
        self.qLoraRank = qLoraRank
        self.expertsPerToken = expertsPerToken
        self.groups = groups
    }
}

/// Random BF16 checkpoints with the real tensor names and shapes, for tests and benchmarks at any
/// scale without shipping weights. Values: linear weights ~ N(0, 1/in_features) so activations
/// keep their scale through layers, norms ~ N(1, 0.05²), embedding ~ N(0, 1). Deterministic for
/// a seed, whatever the thread count.
public enum Synth {
    /// The preset config with `sizes` applied. Giving `hidden` scales the other widths with it
    /// (each can still be set on its own); head dims scale too, staying even.
    public static func config(like preset: ModelPreset, sizes: SynthSizes) throws(ModelError) -> ModelConfig {
        var c = preset.config
        if let h = sizes.hidden {
            let r = Double(h) / Double(c.hiddenSize)
            func scaled(_ v: Int, multiple: Int = 8) -> Int {
                max(multiple, Int((Double(v) * r / Double(multiple)).rounded()) * multiple)
            }
            c.hiddenSize = h
            c.intermediateSize = scaled(c.intermediateSize)
            c.moeIntermediateSize = scaled(c.moeIntermediateSize)
            c.numAttentionHeads = max(2, Int((Double(c.numAttentionHeads) * r).rounded()))
            c.numKeyValueHeads = c.numAttentionHeads
            c.kvLoraRank = scaled(c.kvLoraRank)
            c.qLoraRank = c.qLoraRank.map { scaled($0) }
            c.qkNopeHeadDim = scaled(c.qkNopeHeadDim, multiple: 4)
            c.qkRopeHeadDim = scaled(c.qkRopeHeadDim, multiple: 4)
            c.vHeadDim = scaled(c.vHeadDim, multiple: 4)
        }
        if let v = sizes.layers { c.numHiddenLayers = v }
        if let v = sizes.intermediate { c.intermediateSize = v }
        if let v = sizes.moeIntermediate { c.moeIntermediateSize = v }
        if let v = sizes.heads { c.numAttentionHeads = v; c.numKeyValueHeads = v }
        if let v = sizes.vocab { c.vocabSize = v }
        if let v = sizes.kvLoraRank { c.kvLoraRank = v }
        if let v = sizes.qLoraRank { c.qLoraRank = v }
        if let e = sizes.experts {
            c.nRoutedExperts = e
            // Keep the group structure valid for fewer experts.
            if let g = c.nGroup, e % g != 0 || e / g < 1 { c.nGroup = gcd(e, g) }
            if let g = c.nGroup, let tg = c.topkGroup, tg > g { c.topkGroup = g }
        }
        if let g = sizes.groups { c.nGroup = g; c.topkGroup = min(c.topkGroup ?? g, g) }
        if let k = sizes.expertsPerToken { c.numExpertsPerTok = k }
        if let e = c.nRoutedExperts, let k = c.numExpertsPerTok {
            var kk = min(k, e)
            if c.topkMethod == .groupLimitedGreedy, let g = c.nGroup, let tg = c.topkGroup { kk = min(kk, tg * (e / g)) }
            c.numExpertsPerTok = kk
        }
        try c.validate()
        return c
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// Writes config.json and the shards into `out` (atomically), copying the tokenizer files and
    /// the other side files (`Checkpoint.sideFiles`) from `tokenizerFrom` when given. `progress(name, bytes)` is called per tensor.
    public static func write(config: ModelConfig, seed: UInt64, out: OutputDirectory, maxShardSize: Int,
                             tokenizerFrom: String?, threads: Int,
                             progress: ((String, Int) -> Void)? = nil) throws {
        let schema = TensorSchema(config: config)
        let specs = schema.tensors.map { TensorSpec(name: $0.name, dtype: .bf16, shape: $0.shape) }
        let writer = ShardedWriter(directory: out.partialPath, tensors: specs, maxShardSize: maxShardSize)
        var tables: [String: [UInt16]] = [:]  // one table per distinct (mean, std)
        // The tokenizer files are required; every other side file there (remote code,
        // generation config, license) comes along.
        try DerivedCheckpoint.write(into: out, configText: config.jsonText(), sideFilesFrom: tokenizerFrom,
                                    requiredFiles: Checkpoint.tokenizerFiles, writer: writer) { writer in
            for (i, t) in schema.tensors.enumerated() {
                let (mean, std) = distribution(t)
                let key = "\(mean)/\(std)"
                let table = tables[key] ?? quantileTable(mean: mean, std: std)
                tables[key] = table
                let tensorSeed = mix(seed, UInt64(i))
                try writer.write(t.name, from: .producer { w in
                    try fill(count: t.elementCount, table: table, seed: tensorSeed, threads: threads, into: w)
                })
                progress?(t.name, t.elementCount * 2)
            }
        }
    }

    static func distribution(_ t: ExpectedTensor) -> (Double, Double) {
        if t.role.isNorm { return (1, 0.05) }
        if t.role == .embedding { return (0, 1) }
        return (0, 1 / Double(t.shape[1]).squareRoot())
    }

    /// Elements per generated chunk; the chunk index is part of its seed.
    static let chunkElements = 1 << 22

    static func fill(count: Int, table: [UInt16], seed: UInt64, threads: Int, into w: TensorByteWriter) throws {
        let chunks = (count + chunkElements - 1) / chunkElements
        let batch = max(1, threads)
        let buffers = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: batch * chunkElements)
        defer { buffers.deallocate() }
        let base = UnsafeSendable(buffers.baseAddress!)
        let tbl = UnsafeSendable(table)
        var c = 0
        while c < chunks {
            let n = min(batch, chunks - c)
            let first = c
            parallelFor(n, threads: threads) { j in
                let chunk = first + j
                let elems = min(chunkElements, count - chunk * chunkElements)
                tbl.value.withUnsafeBufferPointer { t in
                    Synth.fillChunk(base.value + j * chunkElements, elems, t.baseAddress!, mix(seed, UInt64(chunk)))
                }
            }
            for j in 0..<n {
                let elems = min(chunkElements, count - (first + j) * chunkElements)
                try w.write(UnsafeRawBufferPointer(start: buffers.baseAddress! + j * chunkElements, count: elems * 2))
            }
            c += n
        }
    }

    static func fillChunk(_ dst: UnsafeMutablePointer<UInt16>, _ n: Int, _ table: UnsafePointer<UInt16>, _ seed: UInt64) {
        RandomTable.fill(dst, count: n, table: table, seed: seed)
    }

    static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var z = a &+ 0x9E37_79B9_7F4A_7C15 &* (b &+ 1)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 65536 BF16 quantiles of N(mean, std²): a uniform 16-bit index then samples the normal.
    static func quantileTable(mean: Double, std: Double) -> [UInt16] {
        (0..<65536).map { i in
            let p = (Double(i) + 0.5) / 65536
            return Conversion.bf16(Float(mean + std * inverseNormalCDF(p)))
        }
    }

    /// Acklam's rational approximation of Φ⁻¹ (relative error < 1.2e-9).
    static func inverseNormalCDF(_ p: Double) -> Double {
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        let low = 0.02425
        if p < low {
            let q = (-2 * log(p)).squareRoot()
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        if p > 1 - low {
            let q = (-2 * log(1 - p)).squareRoot()
            return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        let q = p - 0.5
        let r = q * q
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    }
}
