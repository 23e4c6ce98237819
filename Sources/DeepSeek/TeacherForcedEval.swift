import Foundation
import JSON
import CKernels
import Kernels

/// Teacher-forced comparison of a model with its reference over windows of a text, as
/// llama.cpp's `perplexity --kl-divergence`: per predicted position KL(ref ‖ ours), top-1
/// agreement, and each model's negative log-likelihood of the true next token. Fed window by
/// window, so no more than one window's logits are ever held.
public struct TeacherForcedEval: Sendable {
    public private(set) var kls: [Double] = []
    public private(set) var agree = 0
    public private(set) var nll = 0.0
    public private(set) var nllReference = 0.0
    /// Logits that are NaN or ±Inf, on each side: any makes every figure meaningless.
    public private(set) var nonFiniteOurs = 0
    public private(set) var nonFiniteReference = 0

    public init() {}

    /// `ours`, `reference`: logits [L, vocab] of one window; `tokens`: the window (L ids).
    /// Positions 0..<L−1 predict tokens 1..<L.
    public mutating func add(ours: Matrix, reference: Matrix, tokens: [Int]) {
        precondition(ours.rows == reference.rows && ours.cols == reference.cols && ours.rows == tokens.count)
        let v = ours.cols
        func nonFinite(_ m: Matrix) -> Int {
            var first = 0
            return m.data.withUnsafeBytes { Int(dsk_count_nonfinite_f32($0.bindMemory(to: UInt32.self).baseAddress!, m.data.count, &first)) }
        }
        nonFiniteOurs += nonFinite(ours)
        nonFiniteReference += nonFinite(reference)
        ours.data.withUnsafeBufferPointer { a in
            reference.data.withUnsafeBufferPointer { b in
                for p in 0..<(tokens.count - 1) {
                    var no = 0.0, nr = 0.0
                    var ao = 0, ar = 0
                    let kl = dsk_kl_position(a.baseAddress! + p * v, b.baseAddress! + p * v, v, tokens[p + 1], &no, &nr, &ao, &ar)
                    kls.append(kl)
                    if ao == ar { agree += 1 }
                    nll += no
                    nllReference += nr
                }
            }
        }
    }

    public var positions: Int { kls.count }
    /// Whether the figures mean anything: every logit on both sides finite.
    public var isFinite: Bool { nonFiniteOurs == 0 && nonFiniteReference == 0 }
    public var klMean: Double { kls.isEmpty ? 0 : kls.reduce(0, +) / Double(kls.count) }
    /// The 99th percentile (nearest rank).
    public var klP99: Double {
        guard !kls.isEmpty else { return 0 }
        let sorted = kls.sorted()
        return sorted[min(sorted.count - 1, Int((0.99 * Double(sorted.count)).rounded(.up)) - 1)]
    }
    public var top1Agreement: Double { kls.isEmpty ? 1 : Double(agree) / Double(kls.count) }
    public var perplexity: Double { exp(nll / Double(max(positions, 1))) }
    public var perplexityReference: Double { exp(nllReference / Double(max(positions, 1))) }

    public var json: JSONValue {
        ["positions": JSONValue(positions), "kl_mean": .number(klMean), "kl_p99": .number(klP99),
         "top1_agreement": .number(top1Agreement), "ppl_reference": .number(perplexityReference), "ppl": .number(perplexity),
         "nonfinite_logits": JSONValue(nonFiniteOurs), "nonfinite_logits_reference": JSONValue(nonFiniteReference)]
    }
}
