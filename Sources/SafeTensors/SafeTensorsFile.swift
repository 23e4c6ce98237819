/// One safetensors file, mapped and validated. Tensor data is served as slices of the map, so
/// nothing is copied or loaded until it is touched.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let header: SafeTensorsHeader
    public let mapped: MappedFile
    private let byName: [String: Int]

    public init(path: String) throws(SafeTensorsError) {
        self.path = path
        mapped = try MappedFile(path: path)
        header = try SafeTensorsHeader.parse(mapped.bytes, path: path)
        var names: [String: Int] = [:]
        for (i, t) in header.tensors.enumerated() { names[t.name] = i }
        byName = names
    }

    public var tensors: [TensorInfo] { header.tensors }
    public var fileSize: Int { mapped.size }

    public func info(_ name: String) -> TensorInfo? { byName[name].map { header.tensors[$0] } }

    /// The raw bytes of a tensor, a slice of the map.
    public func data(_ tensor: TensorInfo) -> UnsafeRawBufferPointer {
        let start = header.dataStart + tensor.dataOffsets.lowerBound
        return UnsafeRawBufferPointer(rebasing: mapped.bytes[start..<(start + tensor.byteCount)])
    }

    /// Absolute file offsets of a tensor's bytes.
    public func fileRange(_ tensor: TensorInfo) -> Range<Int> {
        let start = header.dataStart + tensor.dataOffsets.lowerBound
        return start..<(start + tensor.byteCount)
    }
}
