import Foundation
import Quantization
import SafeTensors
import TestSupport
import Testing

/// Tensors quantized and packed by the compressed-tensors package itself
/// (Tests/Fixtures/compressed-tensors): we decode them exactly and reproduce them bit for bit.
@Suite struct CompressedTensorsParityTests {
    static let file = Fixtures.root + "/compressed-tensors/ct-reference.safetensors"
    static let inputs = ["w64x96", "w48x128", "w16x384", "w40x64"]
    static let schemes: [(String, QuantScheme)] = [
        ("int4-g32-sym", QuantScheme(bits: 4, groupSize: 32, symmetric: true)),
        ("int4-g32-asym", QuantScheme(bits: 4, groupSize: 32, symmetric: false)),
        ("int8-channel-sym", QuantScheme(bits: 8, groupSize: nil, symmetric: true)),
    ]

    func array<T>(_ f: SafeTensorsFile, _ name: String, _ type: T.Type) throws -> [T] {
        let info = try #require(f.info(name), "\(name) missing from the fixture")
        let bytes = f.data(info)
        return (0..<(bytes.count / MemoryLayout<T>.size)).map { bytes.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
    }

    func shape(_ f: SafeTensorsFile, _ name: String) throws -> [Int] { try #require(f.info(name)).shape }

    @Test func decodesThePackagesOutputExactly() throws {
        let f = try SafeTensorsFile(path: Self.file)
        for (tag, scheme) in Self.schemes {
            for input in Self.inputs {
                let p = "\(tag).\(input)."
                let dims = try array(f, p + "weight_shape", Int64.self).map(Int.init)
                #expect(dims == (try shape(f, "input." + input)))
                #expect(f.info(p + "weight_shape")?.dtype == .i64)
                let zpWords = scheme.symmetric ? nil : try array(f, p + "weight_zero_point", Int32.self)
                let groups = scheme.groups(cols: dims[1])
                #expect(scheme.symmetric == (f.info(p + "weight_zero_point") == nil))
                let t = QuantizedTensor(rows: dims[0], cols: dims[1], scheme: scheme, packed: try array(f, p + "weight_packed", Int32.self),
                                        scale: try array(f, p + "weight_scale", UInt16.self),
                                        zeroPoint: zpWords.map { QuantizedTensor.unpackZeroPoint($0, rows: dims[0], groups: groups, bits: scheme.bits) })
                let expected = try array(f, p + "decompressed", UInt16.self)
                let got = t.dequantized()
                let mismatches = zip(got, expected).filter { $0 != $1 }.count
                #expect(mismatches == 0, "\(p): \(mismatches) of \(expected.count) decompressed values differ")
            }
        }
    }

    @Test func reproducesThePackagesOutputBitForBit() throws {
        let f = try SafeTensorsFile(path: Self.file)
        for (tag, scheme) in Self.schemes {
            for input in Self.inputs {
                let p = "\(tag).\(input)."
                let dims = try shape(f, "input." + input)
                let w = try array(f, "input." + input, UInt16.self)
                let t = w.withUnsafeBufferPointer { RoundToNearest.quantize($0.baseAddress!, rows: dims[0], cols: dims[1], scheme: scheme) }
                #expect(try shape(f, p + "weight_packed") == [dims[0], scheme.packedWords(cols: dims[1])])
                #expect(try shape(f, p + "weight_scale") == [dims[0], scheme.groups(cols: dims[1])])
                #expect(t.scale == (try array(f, p + "weight_scale", UInt16.self)), "\(p)weight_scale")
                let packed = try array(f, p + "weight_packed", Int32.self)
                let diff = zip(t.packed, packed).filter { $0 != $1 }.count
                #expect(diff == 0 && t.packed.count == packed.count, "\(p)weight_packed: \(diff) words differ")
                if !scheme.symmetric {
                    #expect(t.packedZeroPoint() == (try array(f, p + "weight_zero_point", Int32.self)), "\(p)weight_zero_point")
                    #expect(try shape(f, p + "weight_zero_point") == [(dims[0] * scheme.bits + 31) / 32, scheme.groups(cols: dims[1])])
                }
            }
        }
    }

    @Test func packingRoundTripsEveryValueAndWidth() {
        for bits in [4, 8] {
            let scheme = QuantScheme(bits: bits, groupSize: nil, symmetric: true)
            for cols in [1, 7, 8, 9, 33, 100] {
                let q = (0..<(3 * cols)).map { Int8(truncatingIfNeeded: scheme.qmin + ($0 * 7) % (scheme.qmax - scheme.qmin + 1)) }
                let t = QuantizedTensor(integers: q, rows: 3, cols: cols, scheme: scheme, scale: [UInt16](repeating: 0x3f80, count: 3), zeroPoint: nil)
                #expect(t.packed.count == 3 * scheme.packedWords(cols: cols))
                #expect(t.integers() == q, "bits \(bits), cols \(cols)")
            }
        }
        // A worked example (Formats/quantized.md): int4 [-8, -1, 0, 7, 1, 2, 3, 4] → 0xCBA9_F870.
        let s = QuantScheme(bits: 4, groupSize: nil, symmetric: true)
        let t = QuantizedTensor(integers: [-8, -1, 0, 7, 1, 2, 3, 4], rows: 1, cols: 8, scheme: s, scale: [0x3f80], zeroPoint: nil)
        #expect(UInt32(bitPattern: t.packed[0]) == 0xCBA9_F870)
    }
}
