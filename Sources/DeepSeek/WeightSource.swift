import Kernels
import SafeTensors

/// Where the forward pass gets weights from: a checkpoint's mmap'd tensors, or (for a sharded
/// output) one rank's files. Weights are views; nothing is loaded until read.
public protocol WeightSource: AnyObject, Sendable {
    func matrix(_ role: TensorRole) throws -> WeightMatrix
}

extension WeightSource {
    public func vector(_ role: TensorRole) throws -> [Float] { try matrix(role).toF32() }
}

extension DType {
    /// How the NaN/Inf scan reads this dtype (nil: not a floating type).
    public var scanFormat: NonFiniteScan.Format? {
        switch self {
        case .bf16: return .bf16
        case .f16: return .f16
        case .f32: return .f32
        case .f64: return .f64
        case .f8e4m3: return .f8e4m3
        case .f8e5m2: return .f8e5m2
        default: return nil
        }
    }

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

extension TensorLocation {
    /// The tensor as a weight view: 2-D [out, in]; a 1-D tensor is [n, 1].
    public func weightMatrix() throws -> WeightMatrix {
        guard let format = info.dtype.weightFormat else {
            throw ModelError.badTensor(file: file.path, tensor: info.name, message: "dtype \(info.dtype.rawValue) cannot be computed with (BF16, F16 or F32 expected)")
        }
        guard info.shape.count == 1 || info.shape.count == 2 else {
            throw ModelError.badTensor(file: file.path, tensor: info.name, message: "shape \(info.shape) is not a vector or a matrix")
        }
        var bytes = data
        if format == .f32, Int(bitPattern: bytes.baseAddress) % 4 != 0 {
            // Misaligned f32 data: copy once (never happens with 8-byte-aligned writers).
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
            copy.copyMemory(from: bytes)
            bytes = UnsafeRawBufferPointer(copy)
        }
        return WeightMatrix(bytes: bytes, format: format, rows: info.shape[0], cols: info.shape.count == 2 ? info.shape[1] : 1, owner: file)
    }
}

extension Checkpoint: WeightSource {
    public func matrix(_ role: TensorRole) throws -> WeightMatrix {
        if schema.quantizedRoles[role] != nil {
            let packed = try packedWeights.object(role.name, cost: { (p: PackedWeight) in p.cost }) {
                try QuantizedWeights.load(role, schema: schema) { component in
                    let name = role.moduleName + "." + component.rawValue
                    guard let loc = weights[name] else {
                        throw ModelError.badTensor(file: directory, tensor: name, message: "missing from the checkpoint")
                    }
                    return (loc.info, loc.data, loc.file.path, loc.file)
                }
            }
            return packed.matrix
        }
        let loc = try tensor(role)
        if let expected = schema[role.name], expected.shape != loc.info.shape {
            throw ModelError.badTensor(file: loc.file.path, tensor: role.name, message: "shape \(loc.info.shape), expected \(expected.shape)")
        }
        return try loc.weightMatrix()
    }
}
