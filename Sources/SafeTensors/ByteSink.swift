/// Where a writer's bytes go: a plain file (`FileSink`) or a transforming container (a packed
/// file compresses as the bytes arrive). Bytes arrive in file order.
public protocol ByteSink: AnyObject {
    var path: String { get }
    /// Bytes that reached the file so far.
    var bytesWritten: Int { get }
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Flushes, fsyncs and closes.
    func close() throws
    /// Closes and removes the partial file.
    func discard()
}

extension FileSink: ByteSink {}

/// Makes the sink for one safetensors file: the temp path to write, the header's byte count
/// and the tensors that follow it (for sinks that cut the stream at tensor boundaries).
public typealias SinkFactory = (_ tempPath: String, _ headerBytes: Int, _ tensors: [TensorSpec]) throws -> ByteSink
