import Foundation
import Quantization
import Testing

/// GPTQ against RTN on correlated inputs: the output error ‖X·(W − Ŵ)ᵀ‖ must drop.
@Suite struct GPTQTests {
    struct Rng {
        var s: UInt64
        mutating func normal() -> Float {
            func u() -> Double { s = s &* 6364136223846793005 &+ 1442695040888963407; return (Double(s >> 11) + 0.5) / Double(1 << 53) }
            return Float((-2 * log(u())).squareRoot() * cos(2 * .pi * u()))
        }
    }

    func bf16(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        return UInt16((u + 0x7fff + ((u >> 16) & 1)) >> 16)
    }

    func outputError(_ x: [Float], tokens: Int, w: [UInt16], q: QuantizedTensor) -> Double {
        let deq = q.dequantized()
        var e = 0.0
        for t in 0..<tokens {
            for r in 0..<q.rows {
                var d = 0.0
                for c in 0..<q.cols {
                    let a = Float(bitPattern: UInt32(w[r * q.cols + c]) << 16), b = Float(bitPattern: UInt32(deq[r * q.cols + c]) << 16)
                    d += Double(x[t * q.cols + c]) * Double(a - b)
                }
                e += d * d
            }
        }
        return e
    }

    @Test(arguments: [true, false]) func beatsRoundToNearestOnCorrelatedInputs(actOrder: Bool) throws {
        var rng = Rng(s: 7)
        let rows = 32, cols = 128, tokens = 512
        let w = (0..<(rows * cols)).map { _ in bf16(0.02 * rng.normal()) }
        // Inputs with a few strong, correlated channels, as real activations have.
        let basis = (0..<(8 * cols)).map { _ in rng.normal() }
        var x = [Float](repeating: 0, count: tokens * cols)
        for t in 0..<tokens {
            let z = (0..<8).map { _ in rng.normal() }
            for c in 0..<cols {
                var v = 0.1 * rng.normal()
                for k in 0..<8 { v += z[k] * basis[k * cols + c] }
                x[t * cols + c] = c % 17 == 0 ? 8 * v : v
            }
        }
        var h = [Float](repeating: 0, count: cols * cols)
        for t in 0..<tokens { for i in 0..<cols { for j in 0..<cols { h[i * cols + j] += 2 * x[t * cols + i] * x[t * cols + j] / Float(tokens) } } }
        let scheme = QuantScheme(bits: 4, groupSize: 32, symmetric: true)
        let rtn = w.withUnsafeBufferPointer { RoundToNearest.quantize($0.baseAddress!, rows: rows, cols: cols, scheme: scheme) }
        let gptq = try w.withUnsafeBufferPointer { try GPTQ.quantize($0.baseAddress!, rows: rows, cols: cols, hessian: h, scheme: scheme, actOrder: actOrder) }
        #expect(gptq.tensor.scale == rtn.scale, "GPTQ keeps the observer's scales")
        let eR = outputError(x, tokens: tokens, w: w, q: rtn), eG = outputError(x, tokens: tokens, w: w, q: gptq.tensor)
        #expect(eG < 0.6 * eR, "GPTQ output error \(eG) vs RTN \(eR)")
    }

    @Test func identityHessianGivesRoundToNearest() throws {
        var rng = Rng(s: 3)
        let rows = 8, cols = 64
        let w = (0..<(rows * cols)).map { _ in bf16(0.02 * rng.normal()) }
        var h = [Float](repeating: 0, count: cols * cols)
        for i in 0..<cols { h[i * cols + i] = 1 }
        let scheme = QuantScheme(bits: 4, groupSize: 32, symmetric: false)
        let rtn = w.withUnsafeBufferPointer { RoundToNearest.quantize($0.baseAddress!, rows: rows, cols: cols, scheme: scheme) }
        let g = try w.withUnsafeBufferPointer { try GPTQ.quantize($0.baseAddress!, rows: rows, cols: cols, hessian: h, scheme: scheme, actOrder: false) }
        let same = zip(rtn.integers(), g.tensor.integers()).filter { $0 == $1 }.count
        // Not all: GPTQ divides in f32 (as llm-compressor's loop), RTN rounds the quotient to BF16 first.
        #expect(Double(same) >= 0.97 * Double(rows * cols), "\(same) of \(rows * cols) integers equal")
    }
}
