import Foundation

/// Rotary embedding of the rope part of q and k (qk_rope_head_dim dims), with YaRN scaling as in
/// the original `modeling_deepseek.py`. Four pure functions, then the tables.
public enum YaRN {
    /// mscale(s, m) = 0.1·m·ln s + 1 (1 when s ≤ 1).
    public static func mscale(_ scale: Double, _ m: Double) -> Double {
        scale <= 1 ? 1 : 0.1 * m * log(scale) + 1
    }

    /// The rotary dim whose wavelength makes `rotations` turns over `maxPosition` positions.
    public static func correctionDim(_ rotations: Double, dim: Int, base: Double, maxPosition: Int) -> Double {
        Double(dim) * log(Double(maxPosition) / (rotations * 2 * Double.pi)) / (2 * log(base))
    }

    /// [low, high] dims between which YaRN blends interpolation and extrapolation.
    public static func correctionRange(betaFast: Double, betaSlow: Double, dim: Int, base: Double, maxPosition: Int) -> (Int, Int) {
        let low = floor(correctionDim(betaFast, dim: dim, base: base, maxPosition: maxPosition))
        let high = ceil(correctionDim(betaSlow, dim: dim, base: base, maxPosition: maxPosition))
        return (max(Int(low), 0), min(Int(high), dim - 1))
    }

    /// Linear ramp 0 → 1 from `low` to `high` over `count` entries.
    public static func linearRamp(low: Double, high: Double, count: Int) -> [Double] {
        let hi = low == high ? high + 0.001 : high
        return (0..<count).map { min(max((Double($0) - low) / (hi - low), 0), 1) }
    }
}

/// Inverse frequencies, the cos/sin scale and the attention softmax scale, from the config.
public struct RopeParameters: Sendable {
    public let invFreq: [Float]
    /// cos and sin are multiplied by this (YaRN's mscale / mscale_all_dim).
    public let cosSinScale: Float
    /// Attention logits are multiplied by this: q_head_dim^-0.5 · mscale(factor, mscale_all_dim)².
    public let softmaxScale: Float
    /// Positions are divided by this (linear scaling); 1 otherwise.
    public let positionDivisor: Float

    public init(config c: ModelConfig) {
        let dim = c.qkRopeHeadDim
        let base = c.ropeTheta
        let exponents = stride(from: 0, to: dim, by: 2).map { Double($0) / Double(dim) }
        var scale = pow(Double(c.qHeadDim), -0.5)
        var cosSin = 1.0
        var divisor = 1.0
        // The original computes in float32: mirror its rounding of the frequencies.
        let extra = exponents.map { Double(Float(1) / powf(Float(base), Float($0))) }
        if let s = c.ropeScaling, s.type == "yarn" {
            let inter = exponents.map { Double(Float(1) / (Float(s.factor) * powf(Float(base), Float($0)))) }
            let (low, high) = YaRN.correctionRange(betaFast: s.betaFast, betaSlow: s.betaSlow, dim: dim, base: base,
                                                   maxPosition: s.originalMaxPositionEmbeddings)
            let mask = YaRN.linearRamp(low: Double(low), high: Double(high), count: dim / 2).map { 1 - $0 }
            invFreq = (0..<(dim / 2)).map { i in
                Float(Float(inter[i]) * Float(1 - mask[i]) + Float(extra[i]) * Float(mask[i]))
            }
            cosSin = YaRN.mscale(s.factor, s.mscale) / YaRN.mscale(s.factor, s.mscaleAllDim)
            if s.mscaleAllDim != 0 {
                let m = YaRN.mscale(s.factor, s.mscaleAllDim)
                scale *= m * m
            }
        } else {
            invFreq = extra.map { Float($0) }
            if let s = c.ropeScaling, s.type == "linear" { divisor = s.factor }
        }
        cosSinScale = Float(cosSin)
        softmaxScale = Float(scale)
        positionDivisor = Float(divisor)
    }

    /// cos and sin of each pair's angle at `position`, scaled by `cosSinScale`.
    public func cosSin(position: Int) -> (cos: [Float], sin: [Float]) {
        let t = Float(position) / positionDivisor
        var c = [Float](repeating: 0, count: invFreq.count)
        var s = c
        for i in 0..<invFreq.count {
            let angle = t * invFreq[i]
            c[i] = Float(cos(Double(angle))) * cosSinScale
            s[i] = Float(sin(Double(angle))) * cosSinScale
        }
        return (c, s)
    }

    /// Rotates adjacent pairs (2i, 2i+1) of `x[0..<2·invFreq.count]` in place. The original
    /// de-interleaves then uses rotate_half: the same rotation with the pairs stored apart, which
    /// gives identical attention scores.
    @inline(__always)
    public static func rotate(_ x: UnsafeMutablePointer<Float>, cos: [Float], sin: [Float]) {
        for i in 0..<cos.count {
            let a = x[2 * i], b = x[2 * i + 1]
            x[2 * i] = a * cos[i] - b * sin[i]
            x[2 * i + 1] = b * cos[i] + a * sin[i]
        }
    }
}
