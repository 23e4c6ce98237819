import Kernels
import SafeTensors

/// Where the forward pass gets weights from, by role. Weights are views; nothing is loaded until read.
public protocol WeightSource: AnyObject, Sendable {
    func matrix(_ role: TensorRole) throws -> WeightMatrix
}

extension WeightSource {
    public func vector(_ role: TensorRole) throws -> [Float] { try matrix(role).toF32() }
}

extension DType {
    /// The weight format the forward pass computes from (nil: not computable).
    public var weightFormat: WeightFormat? {
        switch self {
        case .bf16: return .bf16
        case .f16: return .f16
        case .f32: return .f32
        default: return nil
        }
    }
}

/// The one adapter from a tensor store to the forward pass: role → name (through the schema's
/// naming) → shape and dtype checks → a weight view. Mapped bytes are viewed where they lie;
/// decoded bytes (a packed store), misaligned F32 copies and quantized weights are kept in a
/// bounded cache that owns them.
public final class StoreWeights: WeightSource, @unchecked Sendable {
    public let store: any TensorStore
    public let schema: TensorSchema
    /// Shapes to check tensors against instead of the schema's (a tensor-parallel rank's slices).
    let expectedShapes: [String: [Int]]?
    /// A quantized weight's logical [out, in] on this rank, where it is a slice.
    let logicalShapes: [TensorRole: [Int]]?
    let cache: WeightCache
    /// Scan each tensor for NaN/Inf the first time it is read, refusing a damaged one (calibrate:
    /// statistics computed from it would look valid). Off for the commands that verify first.
    public var refusesNonFinite: Bool {
        get { scanned.withLock { $0.enabled } }
        set { scanned.withLock { $0.enabled = newValue } }
    }
    let scanned = Locked<(enabled: Bool, names: Set<String>)>((false, []))

    public init(store: any TensorStore, schema: TensorSchema, expectedShapes: [String: [Int]]? = nil,
                logicalShapes: [TensorRole: [Int]]? = nil, cache: WeightCache = WeightCache()) {
        self.store = store
        self.schema = schema
        self.expectedShapes = expectedShapes
        self.logicalShapes = logicalShapes
        self.cache = cache
    }

    func missing(_ name: String) -> ModelError {
        .badTensor(file: store.directory, tensor: name, message: "missing from \(store.listingName)")
    }

    public func matrix(_ role: TensorRole) throws -> WeightMatrix {
        if schema.quantizedRoles[role] != nil { return try quantized(role) }
        let name = schema.name(role)
        guard let info = store.info(name) else { throw missing(name) }
        let file = store.path(of: name) ?? store.directory
        if let expected = expectedShapes?[name] ?? schema[name]?.shape, expected != info.shape {
            throw ModelError.badTensor(file: file, tensor: name, message: "shape \(info.shape), expected \(expected)")
        }
        guard let format = info.dtype.weightFormat else {
            throw ModelError.badTensor(file: file, tensor: name, message: "dtype \(info.dtype.rawValue) cannot be computed with (BF16, F16 or F32 expected)")
        }
        guard info.shape.count == 1 || info.shape.count == 2 else {
            throw ModelError.badTensor(file: file, tensor: name, message: "shape \(info.shape) is not a vector or a matrix")
        }
        let (rows, cols) = (info.shape[0], info.shape.count == 2 ? info.shape[1] : 1)
        // With refusesNonFinite: each tensor scanned the first time its bytes are read.
        func requireFinite(_ bytes: UnsafeRawBufferPointer) throws {
            guard let scan = info.dtype.scanFormat, scanned.withLock({ $0.enabled && $0.names.insert(name).inserted }) else { return }
            let r = NonFiniteScan.count(bytes, format: scan)
            if r.count > 0 {
                throw ModelError.badTensor(file: file, tensor: name,
                                           message: "\(r.count) NaN/Inf value(s), first at flat index \(r.first ?? 0): the source fails its integrity checks")
            }
        }
        if store.servesMappedBytes {
            let data = try store.bytes(name)
            try requireFinite(data.bytes)
            if format != .f32 || Int(bitPattern: data.bytes.baseAddress) % 4 == 0 {
                return WeightMatrix(bytes: data.bytes, format: format, rows: rows, cols: cols, owner: data.owner)
            }
            // Misaligned f32 data (never with 8-byte-aligned writers): one aligned copy, cached.
            let copy = try cache.value(name) { OwnedBytes(copying: data.bytes) }
            return WeightMatrix(bytes: copy.bytes, format: format, rows: rows, cols: cols, owner: copy)
        }
        let owned = try cache.value(name) {
            let data = try store.bytes(name)
            try requireFinite(data.bytes)
            return data.owner as? OwnedBytes ?? OwnedBytes(copying: data.bytes)
        }
        return WeightMatrix(bytes: owned.bytes, format: format, rows: rows, cols: cols, owner: owned)
    }

    /// A compressed-tensors weight: its components read, checked and kept packed.
    func quantized(_ role: TensorRole) throws -> WeightMatrix {
        let packed = try cache.object(schema.name(role, .weightPacked), cost: { (p: PackedWeight) in p.cost }) {
            try QuantizedWeights.load(role, schema: schema, logicalShape: logicalShapes?[role],
                                      expectedShape: { expectedShapes?[schema.name(role, $0)] }) { component in
                let name = schema.name(role, component)
                guard let info = store.info(name) else { throw missing(name) }
                let data = try store.bytes(name)
                return (info, data.bytes, store.path(of: name) ?? store.directory, data.owner, data.isMapped)
            }
        }
        return packed.matrix
    }
}
