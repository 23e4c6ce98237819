import Foundation
import JSON
import Kernels

/// How closely one model's logits follow a reference's over the same token sequence.
public struct LogitComparison: Sendable {
    public var positions: Int
    /// Fraction of positions where both argmaxes agree.
    public var top1Agreement: Double
    /// KL(reference ‖ ours), nats, mean and max over positions.
    public var klMean: Double
    public var klMax: Double
    public var maxAbsLogitDiff: Double
    /// ‖ours − ref‖ / ‖ref‖ over all logits.
    public var relativeL2: Double

    /// `ours` and `reference` are [positions, vocab].
    public init(ours: Matrix, reference: Matrix) {
        precondition(ours.rows == reference.rows && ours.cols == reference.cols)
        positions = ours.rows
        var agree = 0, klSum = 0.0, klMax = 0.0, maxDiff = 0.0, num = 0.0, den = 0.0
        let v = ours.cols
        for r in 0..<ours.rows {
            let a = ours.data[(r * v)..<((r + 1) * v)], b = reference.data[(r * v)..<((r + 1) * v)]
            if LogitComparison.argmax(a) == LogitComparison.argmax(b) { agree += 1 }
            let la = LogitComparison.logSoftmax(a), lb = LogitComparison.logSoftmax(b)
            var kl = 0.0
            for i in 0..<v { kl += exp(lb[i]) * (lb[i] - la[i]) }
            kl = max(kl, 0)
            klSum += kl
            klMax = max(klMax, kl)
            for (x, y) in zip(a, b) {
                let d = Double(x) - Double(y)
                maxDiff = max(maxDiff, abs(d))
                num += d * d
                den += Double(y) * Double(y)
            }
        }
        top1Agreement = positions > 0 ? Double(agree) / Double(positions) : 1
        klMean = positions > 0 ? klSum / Double(positions) : 0
        self.klMax = klMax
        maxAbsLogitDiff = maxDiff
        relativeL2 = (num / max(den, 1e-30)).squareRoot()
    }

    static func argmax(_ x: ArraySlice<Float>) -> Int {
        var best = x.startIndex
        for i in x.indices where x[i] > x[best] { best = i }
        return best - x.startIndex
    }

    static func logSoftmax(_ x: ArraySlice<Float>) -> [Double] {
        let m = Double(x.max() ?? 0)
        let lse = log(x.reduce(0.0) { $0 + exp(Double($1) - m) }) + m
        return x.map { Double($0) - lse }
    }

    public var json: JSONValue {
        ["top1_agreement": .number(top1Agreement), "kl_mean": .number(klMean), "kl_max": .number(klMax),
         "max_abs_logit_diff": .number(maxAbsLogitDiff), "relative_l2": .number(relativeL2), "positions": JSONValue(positions)]
    }
}
