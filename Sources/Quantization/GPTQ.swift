import COpenBLAS
import CKernels

/// GPTQ (Frantar et al.): quantize a weight column by column, spreading each column's error over
/// the columns not yet quantized through the inverse Hessian of the layer's inputs, as
/// llm-compressor's `quantize_weight` does: scales fixed beforehand from the BF16 weight (its
/// observer), 1% damping of mean(diag H), Cholesky of H⁻¹ (upper), blocks of 128 columns,
/// optional static act-order (columns processed by descending diag H, each keeping its group).
public enum GPTQ {
    public struct Result: Sendable {
        public let tensor: QuantizedTensor
        /// Σ (w − q)² / d² / 2, GPTQ's own loss.
        public let loss: Double
    }

    public enum Failure: Error, CustomStringConvertible {
        case notPositiveDefinite(info: Int32)
        public var description: String { "the damped Hessian is not positive definite (LAPACK info \(info))" }
        var info: Int32 { if case .notPositiveDefinite(let i) = self { return i }; return 0 }
    }

    /// `w`: bf16 [rows, cols]; `hessian`: [cols, cols] f32 (2·XᵀX / samples).
    public static func quantize(_ w: UnsafePointer<UInt16>, rows: Int, cols: Int, hessian: [Float], scheme: QuantScheme,
                                actOrder: Bool, dampening: Float = 0.01, blockSize: Int = 128) throws -> Result {
        precondition(hessian.count == cols * cols)
        let (scale, zp) = RoundToNearest.parameters(w, rows: rows, cols: cols, scheme: scheme)
        let gw = scheme.groupWidth(cols: cols), groups = scheme.groups(cols: cols)
        // Work on Wᵀ [cols, rows] in f32 so that a column is contiguous.
        var wt = [Float](repeating: 0, count: cols * rows)
        for r in 0..<rows { for c in 0..<cols { wt[c * rows + r] = Float(bitPattern: UInt32(w[r * cols + c]) << 16) } }
        var h = hessian
        let perm: [Int] = actOrder ? (0..<cols).sorted { h[$0 * cols + $0] > h[$1 * cols + $1] || (h[$0 * cols + $0] == h[$1 * cols + $1] && $0 < $1) } : Array(0..<cols)
        if actOrder {
            var ph = [Float](repeating: 0, count: cols * cols), pw = [Float](repeating: 0, count: cols * rows)
            for i in 0..<cols {
                for j in 0..<cols { ph[i * cols + j] = h[perm[i] * cols + perm[j]] }
                for r in 0..<rows { pw[i * rows + r] = wt[perm[i] * rows + r] }
            }
            h = ph
            wt = pw
        }
        // Dead inputs (never active): H_ii = 1, the column zeroed.
        var meanDiag: Float = 0
        for i in 0..<cols {
            if h[i * cols + i] == 0 {
                h[i * cols + i] = 1
                for r in 0..<rows { wt[i * rows + r] = 0 }
            }
            meanDiag += h[i * cols + i]
        }
        let damp = dampening * meanDiag / Float(cols)
        for i in 0..<cols { h[i * cols + i] += damp }
        // Hinv = U with H⁻¹ = UᵀU (torch's cholesky(upper=True) of cholesky_inverse(cholesky(H))).
        // LAPACK is column-major: its lower triangle is our (row-major) upper one.
        var n = Int32(cols), info: Int32 = 0
        spotrf_("L", &n, &h, &n, &info)
        guard info == 0 else { throw Failure.notPositiveDefinite(info: info) }
        spotri_("L", &n, &h, &n, &info)  // H⁻¹, in our upper triangle
        guard info == 0 else { throw Failure.notPositiveDefinite(info: info) }
        for i in 0..<cols { for j in 0..<i { h[i * cols + j] = h[j * cols + i] } }
        spotrf_("L", &n, &h, &n, &info)  // H⁻¹ = L Lᵀ: our upper triangle holds Lᵀ = U
        guard info == 0 else { throw Failure.notPositiveDefinite(info: info) }
        for i in 0..<cols { for j in 0..<i { h[i * cols + j] = 0 } }
        var q = [Int8](repeating: 0, count: cols * rows)  // permuted column order, [cols, rows]
        var loss = 0.0
        let qmin = Float(scheme.qmin), qmax = Float(scheme.qmax)
        var err = [Float](repeating: 0, count: blockSize * rows)
        var i1 = 0
        while i1 < cols {
            let i2 = min(i1 + blockSize, cols), count = i2 - i1
            for i in i1..<i2 {
                let g = perm[i] / gw
                let d = h[i * cols + i]
                for r in 0..<rows {
                    let s = scale[r * groups + g]
                    let z = zp.map { Int($0[r * groups + g]) } ?? 0
                    let sf = Float(bitPattern: UInt32(s) << 16)
                    let x = wt[i * rows + r] / sf + Float(z)
                    let qi = Int(min(max(x.rounded(.toNearestOrEven), qmin), qmax))
                    q[i * rows + r] = Int8(qi)
                    let dq = Float(bitPattern: UInt32(dsk_dequant_one(Int32(qi), Int32(z), s)) << 16)
                    let e = (wt[i * rows + r] - dq) / d
                    err[(i - i1) * rows + r] = e
                    loss += Double((wt[i * rows + r] - dq) * (wt[i * rows + r] - dq) / (d * d) / 2)
                }
                // Spread over the rest of the block: Wᵀ[j] -= U[i][j] · err_i.
                for j in (i + 1)..<i2 {
                    let u = h[i * cols + j]
                    if u == 0 { continue }
                    err.withUnsafeBufferPointer { eb in
                        wt.withUnsafeMutableBufferPointer { wb in
                            cblas_saxpy(Int32(rows), -u, eb.baseAddress! + (i - i1) * rows, 1, wb.baseAddress! + j * rows, 1)
                        }
                    }
                }
            }
            // The rest: Wᵀ[i2:] -= U[i1:i2, i2:]ᵀ · Err[i1:i2].
            if i2 < cols {
                h.withUnsafeBufferPointer { hb in
                    err.withUnsafeBufferPointer { eb in
                        wt.withUnsafeMutableBufferPointer { wb in
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(cols - i2), Int32(rows), Int32(count), -1,
                                        hb.baseAddress! + i1 * cols + i2, Int32(cols), eb.baseAddress!, Int32(rows), 1,
                                        wb.baseAddress! + i2 * rows, Int32(rows))
                        }
                    }
                }
            }
            i1 = i2
        }
        // Back to [rows, cols] in the original column order.
        var out = [Int8](repeating: 0, count: rows * cols)
        for i in 0..<cols { let c = perm[i]; for r in 0..<rows { out[r * cols + c] = q[i * rows + r] } }
        return Result(tensor: QuantizedTensor(integers: out, rows: rows, cols: cols, scheme: scheme, scale: scale, zeroPoint: zp), loss: loss)
    }
}
