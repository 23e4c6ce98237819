import Kernels
import Quantization
import SafeTensors

/// A quantized Linear weight read back from its compressed-tensors components, checked, and kept
/// packed: the kernels read the int32 words and compute with exactly the values compressed-tensors
/// decompresses to, bf16(bf16(q − zp) · scale).
enum QuantizedWeights {
    /// One stored component: its header entry and bytes.
    typealias Fetch = (TensorComponent) throws -> (info: TensorInfo, bytes: UnsafeRawBufferPointer, file: String)

    static func load(_ role: TensorRole, schema: TensorSchema, fetch: Fetch) throws -> (OwnedBytes, PackedOffsets, rows: Int, cols: Int) {
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
        _ = words(shape.bytes, Int64.self)
        // One aligned buffer: packed words, then scales, then unpacked zero points.
        let offsets = try Self.offsets(role, schema: schema)
        let zpBytes = zp?.count ?? 0
        let out = OwnedBytes(byteCount: (offsets.zeroPoint ?? offsets.end) + zpBytes)
        let base = out.mutableBytes.baseAddress!
        UnsafeMutableRawBufferPointer(start: base, count: packed.bytes.count).copyMemory(from: packed.bytes)
        UnsafeMutableRawBufferPointer(start: base + offsets.scale, count: scale.bytes.count).copyMemory(from: scale.bytes)
        if let zp, let at = offsets.zeroPoint { zp.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: base + at, count: zpBytes).copyMemory(from: $0) } }
        return (out, offsets, rows, cols)
    }

    /// The buffer layout of a role's packed weight, from the schema alone.
    static func offsets(_ role: TensorRole, schema: TensorSchema) throws -> PackedOffsets {
        guard let scheme = schema.quantizedRoles[role], let logical = schema.tensor(role, .weightPacked)?.logicalShape else {
            throw ModelError.badTensor(file: "config.json", tensor: role.name, message: "not a quantized module")
        }
        let (rows, cols) = (logical[0], logical[1])
        let wordBytes = rows * scheme.packedWords(cols: cols) * 4, scaleBytes = rows * scheme.groups(cols: cols) * 2
        let scaleOffset = (wordBytes + 63) / 64 * 64, end = (scaleOffset + scaleBytes + 63) / 64 * 64
        return PackedOffsets(scale: scaleOffset, zeroPoint: scheme.symmetric ? nil : end, end: end, bits: scheme.bits,
                             groupSize: scheme.groupWidth(cols: cols))
    }

    /// Where the side tables sit in the buffer `load` returns.
    struct PackedOffsets {
        let scale: Int
        let zeroPoint: Int?
        let end: Int
        let bits: Int
        let groupSize: Int

        func matrix(_ owned: OwnedBytes, rows: Int, cols: Int) -> WeightMatrix {
            let base = UnsafeRawPointer(owned.bytes.baseAddress!)
            let words = (cols * bits + 31) / 32
            let layout = PackedLayout(bits: bits, groupSize: groupSize, scale: (base + scale).assumingMemoryBound(to: UInt16.self),
                                      zeroPoint: zeroPoint.map { (base + $0).assumingMemoryBound(to: Int8.self) })
            return WeightMatrix(bytes: UnsafeRawBufferPointer(start: base, count: rows * words * 4), format: .packed, rows: rows, cols: cols,
                                owner: owned, packing: layout)
        }
    }
}
