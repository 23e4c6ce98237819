import CKernels
import DeepSeek
import Kernels
import Testing

@testable import ModelQuantizer

/// AWQ's clip loss per (row, group): from the groups' second moments over every token, it is the
/// loss the token rows themselves give; for the input shared by gate and up, and with the input
/// scale the clip search divides by.
@Suite struct AWQClipLossTests {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2001 - 1000) / 1000
        }
    }

    @Test func groupMomentsGiveTheTokensLoss() {
        let cols = 96, rows = 7, gw = 32
        let gate = TensorRole.denseMLP(layer: 0, .gate), up = TensorRole.denseMLP(layer: 0, .up)
        // A cap above the token count keeps every row, so the sampled loss is the all-token loss.
        let sampler = ActivationSampler(wanted: [gate, up], cap: 1000) { _ in gw }
        var tokens: [Float] = []
        for (i, n) in [5, 40, 1, 33].enumerated() {
            let x = Matrix(rows: n, cols: cols, data: random(n * cols, seed: UInt64(i + 1)).enumerated().map { $0.offset % cols == 3 ? 30 * $0.element : $0.element })
            sampler.linearInput(gate, x)
            sampler.linearInput(up, x)  // the same input, collected once under gate
            tokens += x.data
        }
        let diff = random(rows * cols, seed: 99).map { $0 * 0.01 }
        let scale = random(cols, seed: 7).map { 1.5 + $0 }
        for role in [gate, up] {
            for s in [nil, scale] {
                guard let exact = sampler.momentGroupErrors(role, diff: diff, rows: rows, cols: cols, groupWidth: gw, inputScale: s) else {
                    Issue.record("no moments kept for \(role)")
                    continue
                }
                var x = tokens
                if let s { for i in 0..<x.count { x[i] /= s[i % cols] } }
                var direct = [Double](repeating: 0, count: rows * (cols / gw))
                dsk_group_output_error(x, x.count / cols, cols, diff, rows, gw, &direct)
                for (a, b) in zip(exact, direct) { #expect(abs(a - b) <= 1e-4 * max(abs(b), 1e-9), "\(role): \(a) vs \(b)") }
                #expect(sampler.groupErrors(role, diff: diff, rows: rows, cols: cols, groupWidth: gw, inputScale: s) == exact)
            }
        }
        // Groups not kept (another width, or per channel past the limit) fall back to the sample.
        #expect(sampler.momentGroupErrors(gate, diff: diff, rows: rows, cols: cols, groupWidth: 48, inputScale: nil) == nil)
        let wide = ActivationSampler(wanted: [gate], cap: 10) { _ in ActivationSampler.momentGroupLimit * 2 }
        #expect(wide.momentWidths.isEmpty)
    }
}
