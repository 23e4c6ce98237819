import Foundation

/// `verify --reference`: a generation's logits against the source model's, position by
/// position, and the verdict (failures) under the thresholds.
public struct ReferenceVerdict {
    public let comparison: LogitComparison
    /// Empty when every threshold holds.
    public let failures: [String]

    /// `sequence`: prompt and generated ids; `stepwise`: take our logits one decode step at a time
    /// (the approximate decode kernels only run for few rows).
    public init(model: any LanguageModel, sequence: [Int], reference: String, threads: Int, stepwise: Bool,
                maxKL: Double, minTop1: Double) throws {
        let source = try Checkpoint(directory: reference)
        let refProblems = IntegrityCheck.schemaProblems(source)
        if !refProblems.isEmpty {
            throw ModelError.badInput("--reference \(reference) fails its schema check (\(refProblems.count) problem(s)): \(refProblems.prefix(3).map(\.description).joined(separator: "; "))")
        }
        let ours = stepwise ? try model.stepwiseLogits(sequence) : try model.allLogits(sequence)
        let refModel = Transformer(checkpoint: source, threads: threads)
        let theirs = try refModel.forward(sequence, cache: KVCache(config: source.config), allLogits: true)
        guard ours.cols == theirs.cols else {
            throw ModelError.badInput("--reference \(reference): vocabulary \(theirs.cols) differs from \(ours.cols)")
        }
        let c = LogitComparison(ours: ours, reference: theirs)
        var failures: [String] = []
        if !ours.data.allSatisfy(\.isFinite) { failures.append("our logits hold NaN or Inf") }
        if !(c.klMean <= maxKL) { failures.append(String(format: "KL mean %.3g exceeds --max-kl %.3g", c.klMean, maxKL)) }
        if !(c.top1Agreement >= minTop1) { failures.append(String(format: "top-1 agreement %.4f is below --min-top1 %.3g", c.top1Agreement, minTop1)) }
        comparison = c
        self.failures = failures
    }
}
