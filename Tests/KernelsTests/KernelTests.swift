import CKernels
import Foundation
import Testing

@testable import Kernels

@Suite(.serialized) struct KernelTests {
    func digest(_ bytes: [UInt8]) -> String {
        var h = SHA256()
        // Odd piece sizes exercise the partial-block path.
        var i = 0
        var step = 1
        while i < bytes.count {
            let end = min(bytes.count, i + step)
            bytes[i..<end].withUnsafeBytes { h.update($0) }
            i = end
            step = step * 3 + 1
        }
        return h.finalizeHex()
    }

    @Test func sha256KnownVectors() {
        for portable in [false, true] {
            dsk_sha256_set_portable(portable ? 1 : 0)
            defer { dsk_sha256_set_portable(0) }
            #expect(digest([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            #expect(digest(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
            #expect(digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                    == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
            #expect(digest([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                    == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        }
    }

    @Test func sha256PathsAgree() {
        var x: UInt64 = 88
        let data = (0..<100_003).map { _ -> UInt8 in x = x &* 6364136223846793005 &+ 1442695040888963407; return UInt8(x >> 56) }
        let fast = digest(data)
        dsk_sha256_set_portable(1)
        let slow = digest(data)
        dsk_sha256_set_portable(0)
        #expect(fast == slow)
    }

    @Test func bf16RoundTripAndNonFiniteScan() {
        let values: [Float] = [0, 1, -2.5, 3.14159, 65504, 1e-30, -0.0]
        for v in values {
            let b = Conversion.bf16(v)
            #expect(abs(Conversion.float(bf16: b) - v) <= abs(v) / 128)
        }
        #expect(Conversion.bf16(1.00390625) == 0x3F80)  // ties to even
        var bits = [UInt16](repeating: 0x3F80, count: 20_000)
        bits[12_345] = 0x7FC0
        bits[19_999] = 0xFF80
        let r = bits.withUnsafeBytes { NonFiniteScan.count($0, format: .bf16) }
        #expect(r.count == 2 && r.first == 12_345)
    }

    @Test(arguments: [13, 45]) func bf16MatmulMatchesReference(n: Int) {
        // Every row count the multi-row kernels specialize (1…9) against a double-precision
        // reference; 45 outputs give one row eight-row blocks, then four, then single rows.
        let k = 70
        var w = [UInt16](repeating: 0, count: n * k)
        for i in 0..<w.count { w[i] = Conversion.bf16(Float(sin(Double(i) * 0.37))) }
        for m in 1...9 {
            let x = Matrix(rows: m, cols: k, data: (0..<(m * k)).map { Float(cos(Double($0) * 0.11)) })
            let y = w.withUnsafeBytes { wb in
                Linear.apply(x, WeightMatrix(bytes: wb, format: .bf16, rows: n, cols: k, owner: nil), threads: 2)
            }
            for r in 0..<m {
                for c in 0..<n {
                    var ref = 0.0
                    for j in 0..<k { ref += Double(x[r, j]) * Double(Conversion.float(bf16: w[c * k + j])) }
                    #expect(abs(Double(y[r, c]) - ref) <= 1e-4 * max(1, abs(ref)), "m \(m) [\(r), \(c)]: \(y[r, c]) vs \(ref)")
                }
            }
        }
    }
}
