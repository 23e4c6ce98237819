import JSON

/// One tensor as a safetensors header declares it. Offsets are relative to the data section.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range inside the data section (after the 8-byte length and the header).
    public let dataOffsets: Range<Int>

    public init(name: String, dtype: DType, shape: [Int], dataOffsets: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { dataOffsets.count }
}

/// A validated safetensors header. Validation follows the reference implementation
/// (huggingface/safetensors `tensor.rs`) as a chain of guards:
/// 1. at least 8 bytes; the little-endian u64 header length is ≤ `maxHeaderLength`;
/// 2. 8 + length ≤ file size;
/// 3. the header is UTF-8 JSON, an object; `__metadata__` (string → string) is allowed;
/// 4. each tensor has a known dtype, a shape of non-negative integers and `data_offsets` [begin, end];
/// 5. shape × dtype size (checked arithmetic) equals end − begin;
/// 6. sorted by offset, tensors are contiguous from 0: no hole, no overlap;
/// 7. the last end equals the data section's size: no trailing bytes, not truncated.
public struct SafeTensorsHeader: Sendable {
    /// 100 MB, the reference implementation's cap.
    public static let maxHeaderLength = 100_000_000

    /// Tensors in data order.
    public let tensors: [TensorInfo]
    public let metadata: [String: String]
    /// Absolute file offset of the data section.
    public let dataStart: Int

    public static func parse(_ file: UnsafeRawBufferPointer, path: String) throws(SafeTensorsError) -> SafeTensorsHeader {
        guard file.count >= 8 else { throw .headerTooSmall(file: path, size: file.count) }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(file[i]) << (8 * UInt64(i)) }
        guard length <= UInt64(maxHeaderLength) else {
            throw .headerTooLarge(file: path, length: length, limit: maxHeaderLength)
        }
        guard 8 + length <= UInt64(file.count) else {
            throw .headerLengthBeyondFile(file: path, length: length, fileSize: file.count)
        }
        let headerLength = Int(length)
        let json: JSONValue
        do {
            json = try JSONParser.parse(UnsafeRawBufferPointer(rebasing: file[8..<(8 + headerLength)]))
        } catch {
            throw .headerNotJSON(file: path, reason: error.description)
        }
        let dataStart = 8 + headerLength
        let header = try validate(json, path: path, dataStart: dataStart)
        let dataSize = UInt64(file.count - dataStart)
        let declared = UInt64(header.tensors.last?.dataOffsets.upperBound ?? 0)
        guard declared == dataSize else { throw .dataSizeMismatch(file: path, declared: declared, actual: dataSize) }
        return header
    }

    /// Validates a header whose data section is elsewhere (a packed file): `bytes` holds the length
    /// and the JSON; `fileSize` is the original file's size, for guard 7.
    public static func parseHeaderOnly(_ bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws(SafeTensorsError) -> SafeTensorsHeader {
        guard bytes.count >= 8 else { throw .headerTooSmall(file: path, size: bytes.count) }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard length <= UInt64(maxHeaderLength) else { throw .headerTooLarge(file: path, length: length, limit: maxHeaderLength) }
        guard 8 + length == UInt64(bytes.count), 8 + length <= UInt64(fileSize) else {
            throw .headerLengthBeyondFile(file: path, length: length, fileSize: fileSize)
        }
        let json: JSONValue
        do { json = try JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[8...])) } catch {
            throw .headerNotJSON(file: path, reason: error.description)
        }
        let header = try validate(json, path: path, dataStart: bytes.count)
        let declared = UInt64(header.tensors.last?.dataOffsets.upperBound ?? 0)
        let dataSize = UInt64(fileSize - bytes.count)
        guard declared == dataSize else { throw .dataSizeMismatch(file: path, declared: declared, actual: dataSize) }
        return header
    }

    /// Validates a parsed header object (guards 3–6). Guard 7 needs the file size.
    static func validate(_ json: JSONValue, path: String, dataStart: Int) throws(SafeTensorsError) -> SafeTensorsHeader {
        guard case .object(let object) = json else { throw .headerNotObject(file: path) }
        var metadata: [String: String] = [:]
        var entries: [(name: String, dtype: DType, shape: [Int], begin: UInt64, end: UInt64)] = []
        entries.reserveCapacity(object.count)
        for (name, value) in object.pairs {
            if name == "__metadata__" {
                guard case .object(let m) = value else {
                    throw .invalidTensorEntry(file: path, tensor: name, reason: "__metadata__ must be an object of strings")
                }
                for (k, v) in m.pairs {
                    guard let s = v.stringValue else {
                        throw .invalidTensorEntry(file: path, tensor: name, reason: "__metadata__ value for \"\(k)\" is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            guard case .object(let t) = value else {
                throw .invalidTensorEntry(file: path, tensor: name, reason: "entry is not an object")
            }
            for key in t.keys where !["dtype", "shape", "data_offsets"].contains(key) {
                throw .invalidTensorEntry(file: path, tensor: name, reason: "unexpected field \"\(key)\"")
            }
            guard let dtypeString = t["dtype"]?.stringValue else {
                throw .invalidTensorEntry(file: path, tensor: name, reason: "missing or non-string \"dtype\"")
            }
            guard let dtype = DType(rawValue: dtypeString) else {
                throw .unknownDType(file: path, tensor: name, dtype: dtypeString)
            }
            guard let shapeValues = t["shape"]?.arrayValue else {
                throw .invalidTensorEntry(file: path, tensor: name, reason: "missing or non-array \"shape\"")
            }
            var shape64: [UInt64] = []
            for d in shapeValues {
                guard let i = d.integerValue, i >= 0 else {
                    throw .invalidTensorEntry(file: path, tensor: name, reason: "shape \(shapeValues.map { $0.serialized() }) has a non-integer or negative dimension")
                }
                shape64.append(UInt64(i))
            }
            guard let offsets = t["data_offsets"]?.arrayValue, offsets.count == 2,
                let b = offsets[0].integerValue, let e = offsets[1].integerValue, b >= 0, e >= 0
            else {
                throw .invalidTensorEntry(file: path, tensor: name, reason: "\"data_offsets\" must be two non-negative integers")
            }
            guard e >= b else {
                throw .invalidTensorEntry(file: path, tensor: name, reason: "data_offsets end \(e) is before begin \(b)")
            }
            var bytes = UInt64(dtype.size)
            for d in shape64 {
                let (r, overflow) = bytes.multipliedReportingOverflow(by: d)
                guard !overflow else { throw .shapeOverflow(file: path, tensor: name, shape: shape64) }
                bytes = r
            }
            // Shape entries must also fit Int for indexing.
            guard shape64.allSatisfy({ $0 <= UInt64(Int.max) }), bytes <= UInt64(Int.max) else {
                throw .shapeOverflow(file: path, tensor: name, shape: shape64)
            }
            guard bytes == UInt64(e - b) else {
                throw .byteLengthMismatch(file: path, tensor: name, expected: bytes, actual: UInt64(e - b))
            }
            entries.append((name, dtype, shape64.map { Int($0) }, UInt64(b), UInt64(e)))
        }
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor: UInt64 = 0
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(entries.count)
        for entry in entries {
            if entry.begin > cursor { throw .offsetGap(file: path, tensor: entry.name, expected: cursor, actual: entry.begin) }
            if entry.begin < cursor { throw .offsetOverlap(file: path, tensor: entry.name, expected: cursor, actual: entry.begin) }
            cursor = entry.end
            tensors.append(TensorInfo(name: entry.name, dtype: entry.dtype, shape: entry.shape,
                                      dataOffsets: Int(entry.begin)..<Int(entry.end)))
        }
        return SafeTensorsHeader(tensors: tensors, metadata: metadata, dataStart: dataStart)
    }
}
