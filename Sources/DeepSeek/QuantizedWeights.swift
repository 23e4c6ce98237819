import Kernels
import Quantization
import SafeTensors

/// A quantized Linear weight read back from its compressed-tensors components, checked, and kept
/// packed: the kernels read the int32 words and compute with exactly the values compressed-tensors
/// decompresses to, bf16(bf16(q − zp) · scale).
enum QuantizedWeights {
    /// One stored component: its header entry and bytes.
    /// `mapped`: the bytes are a view of a mapped file; otherwise they were decoded and cost memory.
    typealias Fetch = (TensorComponent) throws -> (info: TensorInfo, bytes: UnsafeRawBufferPointer, file: String, owner: AnyObject, mapped: Bool)

    /// `logicalShape` and `expectedShape` override the schema's (a tensor-parallel rank's slice).
    static func load(_ role: TensorRole, schema: TensorSchema, logicalShape: [Int]? = nil,
                     expectedShape: (TensorComponent) -> [Int]? = { _ in nil }, fetch: Fetch) throws -> PackedWeight {
        guard let scheme = schema.quantizedRoles[role], let logical = logicalShape ?? schema.tensor(role, .weightPacked)?.logicalShape else {
            throw ModelError.badTensor(file: "config.json", tensor: role.name, message: "not a quantized module")
        }
        let (rows, cols) = (logical[0], logical[1])
        var parts: [TensorComponent: (info: TensorInfo, bytes: UnsafeRawBufferPointer, file: String, owner: AnyObject, mapped: Bool)] = [:]
        let needed: [TensorComponent] = [.weightPacked, .weightScale, .weightShape] + (scheme.symmetric ? [] : [.weightZeroPoint])
        for c in needed {
            let part = try fetch(c)
            guard let expected = schema.tensor(role, c) else { continue }
            let dtype = expected.dtype ?? schema.config.expectedDType
            let shape = expectedShape(c) ?? expected.shape
            guard part.info.shape == shape, part.info.dtype == dtype else {
                throw ModelError.badTensor(file: part.file, tensor: part.info.name,
                                           message: "\(part.info.dtype.rawValue) \(part.info.shape), expected \(dtype.rawValue) \(shape) for \(scheme)")
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
        let groups = scheme.groups(cols: cols)
        let zp = parts[.weightZeroPoint].map {
            QuantizedTensor.unpackZeroPoint(words($0.bytes, Int32.self), rows: rows, groups: groups, bits: scheme.bits)
        }
        // Aligned words and scales are used where they are mapped (nothing copied, pages come
        // and go with the page cache); misaligned ones are copied once.
        let owner = PackedWeightStorage()
        owner.owners = [packed.owner, scale.owner]
        owner.cost += [packed, scale].reduce(0) { $0 + ($1.mapped ? 0 : $1.bytes.count) }
        func viewOrCopy(_ bytes: UnsafeRawBufferPointer, alignment: Int) -> UnsafeRawBufferPointer {
            if Int(bitPattern: bytes.baseAddress) % alignment == 0 { return bytes }
            let copy = OwnedBytes(copying: bytes)
            owner.owners.append(copy)
            owner.cost += bytes.count
            return copy.bytes
        }
        let packedView = viewOrCopy(packed.bytes, alignment: 4)
        let scaleView = viewOrCopy(scale.bytes, alignment: 2)
        var zpPointer: UnsafePointer<Int8>?
        if let zp {
            let copy = OwnedBytes(byteCount: zp.count)
            zp.withUnsafeBytes { copy.mutableBytes.copyMemory(from: $0) }
            owner.owners.append(copy)
            owner.cost += zp.count
            zpPointer = copy.bytes.baseAddress!.assumingMemoryBound(to: Int8.self)
        }
        let layout = PackedLayout(bits: scheme.bits, groupSize: scheme.groupWidth(cols: cols),
                                  scale: scaleView.baseAddress!.assumingMemoryBound(to: UInt16.self), zeroPoint: zpPointer)
        return PackedWeight(matrix: WeightMatrix(bytes: packedView, format: .packed, rows: rows, cols: cols, owner: owner, packing: layout),
                            cost: owner.cost)
    }
}

/// What keeps a packed weight's bytes alive: the mapped files it views, and any copies.
final class PackedWeightStorage: @unchecked Sendable {
    var owners: [AnyObject] = []
    var cost = 256
}

/// A cached packed weight: the matrix (whose owner is its storage) and the memory it costs.
final class PackedWeight: @unchecked Sendable {
    let matrix: WeightMatrix
    let cost: Int
    init(matrix: WeightMatrix, cost: Int) {
        self.matrix = matrix
        self.cost = cost
    }
}
