import JSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tensor to be written: everything the header needs, known before any data.
public struct TensorSpec: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    public var byteCount: Int { shape.reduce(dtype.size, *) }
}

/// Where a tensor's bytes come from when it is written. A producer is handed a writer and must
/// write exactly the tensor's byte count, in order, in as many pieces as it likes; so a tensor is
/// never held twice in memory.
public enum TensorSource {
    case bytes(UnsafeRawBufferPointer)
    case producer((TensorByteWriter) throws -> Void)
}

/// Receives one tensor's bytes and refuses more than the header promised.
public final class TensorByteWriter {
    let sink: ByteSink
    let spec: TensorSpec
    private(set) var written = 0

    init(sink: ByteSink, spec: TensorSpec) {
        self.sink = sink
        self.spec = spec
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard written + bytes.count <= spec.byteCount else {
            throw SafeTensorsError.writeOutOfOrder(file: sink.path, tensor: spec.name, reason: "producer wrote more than the \(spec.byteCount) bytes declared")
        }
        try sink.write(bytes)
        written += bytes.count
    }
}

/// Streams one safetensors file: the header is computed from the specs first, then tensors are
/// written one at a time in the declared order. The writer is a state machine: writing a tensor
/// out of order, short or long, or finishing early is an error. The file appears at `path` only
/// on `finish()` (temp file, fsync, rename).
public final class SafeTensorsWriter {
    public let path: String
    public let specs: [TensorSpec]
    public let sink: ByteSink
    private var next = 0
    private var finished = false

    /// `makeSink` replaces the plain file sink (e.g. to pack while writing); `onBytes` then is
    /// the factory's business.
    public init(path: String, tensors: [TensorSpec], metadata: [String: String] = [:],
                onBytes: ((UnsafeRawBufferPointer) -> Void)? = nil, makeSink: SinkFactory? = nil) throws {
        self.path = path
        specs = tensors
        var names = Set<String>()
        for t in tensors where !names.insert(t.name).inserted {
            throw SafeTensorsError.writeOutOfOrder(file: path, tensor: t.name, reason: "tensor name given twice")
        }
        let header = SafeTensorsWriter.headerBytes(tensors: tensors, metadata: metadata)
        sink = try makeSink?(path + ".tmp", header.count, tensors) ?? FileSink(path: path + ".tmp", direct: true, onBytes: onBytes)
        do {
            try header.withUnsafeBytes { try sink.write($0) }
        } catch {
            sink.discard()
            throw error
        }
    }

    /// The 8-byte length plus the JSON header, space-padded to a multiple of 8 so that the data
    /// section is aligned (as the reference writer does).
    public static func headerBytes(tensors: [TensorSpec], metadata: [String: String]) -> [UInt8] {
        var header = JSONObject()
        if !metadata.isEmpty {
            var m = JSONObject()
            for k in metadata.keys.sorted() { m[k] = .string(metadata[k]!) }
            header["__metadata__"] = .object(m)
        }
        var offset = 0
        for t in tensors {
            let end = offset + t.byteCount
            header[t.name] = ["dtype": .string(t.dtype.rawValue), "shape": JSONValue(t.shape),
                              "data_offsets": [JSONValue(offset), JSONValue(end)]]
            offset = end
        }
        var json = Array(JSONValue.object(header).serialized().utf8)
        while (json.count + 8) % 8 != 0 { json.append(0x20) }
        var out = [UInt8](repeating: 0, count: 8)
        let n = UInt64(json.count)
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
        return out + json
    }

    /// Size of the finished file.
    public static func fileSize(tensors: [TensorSpec], metadata: [String: String]) -> Int {
        headerBytes(tensors: tensors, metadata: metadata).count + tensors.reduce(0) { $0 + $1.byteCount }
    }

    /// Writes the next tensor, which must be `name`.
    public func write(_ name: String, from source: TensorSource) throws {
        guard !finished else { throw SafeTensorsError.writeOutOfOrder(file: path, tensor: name, reason: "file already finished") }
        guard next < specs.count else {
            throw SafeTensorsError.writeOutOfOrder(file: path, tensor: name, reason: "all \(specs.count) declared tensors are already written")
        }
        let spec = specs[next]
        guard spec.name == name else {
            throw SafeTensorsError.writeOutOfOrder(file: path, tensor: name, reason: "expected tensor \(spec.name) next")
        }
        let w = TensorByteWriter(sink: sink, spec: spec)
        switch source {
        case .bytes(let b):
            guard b.count == spec.byteCount else {
                throw SafeTensorsError.writeOutOfOrder(file: path, tensor: name, reason: "got \(b.count) bytes, expected \(spec.byteCount)")
            }
            try w.write(b)
        case .producer(let produce):
            try produce(w)
        }
        guard w.written == spec.byteCount else {
            throw SafeTensorsError.writeOutOfOrder(file: path, tensor: name, reason: "producer wrote \(w.written) bytes, expected \(spec.byteCount)")
        }
        next += 1
    }

    /// Fsyncs and moves the file into place. Every declared tensor must have been written.
    public func finish() throws {
        guard next == specs.count else {
            throw SafeTensorsError.writeOutOfOrder(file: path, tensor: specs[next].name, reason: "finish() before all tensors were written")
        }
        try sink.close()
        guard rename(path + ".tmp", path) == 0 else { throw SafeTensorsError.io(file: path, operation: "rename", errno: errno) }
        finished = true
    }

    /// Removes the partial file.
    public func abort() { if !finished { sink.discard() } }
}
