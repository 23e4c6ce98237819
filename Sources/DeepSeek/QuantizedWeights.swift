import Kernels
import Quantization
import SafeTensors

/// A quantized Linear weight read back from its compressed-tensors components and dequantized
/// to BF16 exactly as compressed-tensors decompresses it, so the forward pass runs on the values
/// an engine computes with.
enum QuantizedWeights {
    /// One stored component: its header entry and bytes.
    typealias Fetch = (TensorComponent) throws -> (info: TensorInfo, bytes: UnsafeRawBufferPointer, file: String)

    static func dequantize(_ role: TensorRole, schema: TensorSchema, fetch: Fetch) throws -> (OwnedBytes, rows: Int, cols: Int) {
        guard let scheme = schema.quantizedRoles[role], let logical = schema.tensor(role, .weightPacked)?.logicalShape else {
            throw ModelError.badTensor(file: "config.json", tensor: role.name, message: "not a quantized module")
        }
        let (rows, cols) = (logical[0], logical[1])
        var parts: [TensorComponent: (info: TensorInfo, bytes: UnsafeRawBufferPointer, file: String)] = [:]
        let needed: [TensorComponent] = [.weightPacked, .weightScale, .weightShape] + (scheme.symmetric ? [] : [.weightZeroPoint])
        for c in needed {
            let part = try fetch(c)
            guard let expected = schema.tensor(role, c) else { continue }
            let dtype = expected.dtype ?? schema.config.expectedDType
            guard part.info.shape == expected.shape, part.info.dtype == dtype else {
                throw ModelError.badTensor(file: part.file, tensor: part.info.name,
                                           message: "\(part.info.dtype.rawValue) \(part.info.shape), expected \(dtype.rawValue) \(expected.shape) for \(scheme)")
            }
            parts[c] = part
        }
        guard let shape = parts[.weightShape], let packed = parts[.weightPacked], let scale = parts[.weightScale] else {
            throw ModelError.badTensor(file: "checkpoint", tensor: role.moduleName, message: "quantized components missing")
        }
        let dims = (0..<2).map { Int(shape.bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        guard dims == logical else {
            throw ModelError.badTensor(file: shape.file, tensor: shape.info.name, message: "holds \(dims), the config implies \(logical)")
        }
        guard scale.info.dtype == .bf16 else {
            throw ModelError.unsupported("\(scale.file): tensor \(scale.info.name): \(scale.info.dtype.rawValue) scales; BF16 expected")
        }
        func words<T>(_ b: UnsafeRawBufferPointer, _ type: T.Type) -> [T] {
            (0..<(b.count / MemoryLayout<T>.size)).map { b.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
        }
        let zp = parts[.weightZeroPoint].map {
            QuantizedTensor.unpackZeroPoint(words($0.bytes, Int32.self), rows: rows, groups: scheme.groups(cols: cols), bits: scheme.bits)
        }
        let t = QuantizedTensor(rows: rows, cols: cols, scheme: scheme, packed: words(packed.bytes, Int32.self),
                                scale: words(scale.bytes, UInt16.self), zeroPoint: zp)
        let out = OwnedBytes(byteCount: rows * cols * 2)
        t.dequantize(into: out.mutableBytes.baseAddress!.assumingMemoryBound(to: UInt16.self))
        return (out, rows, cols)
    }
}
