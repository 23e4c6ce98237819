#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file being written through a fixed buffer. Large slices bypass the buffer. Every failure is a
/// typed I/O error naming the file (ENOSPC included), never a trap.
public final class FileSink {
    public let path: String
    private var fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    public private(set) var bytesWritten = 0
    private var onBytes: ((UnsafeRawBufferPointer) -> Void)?

    /// Creates (truncating) the file. `onBytes` sees every byte written, in order (for checksums).
    public init(path: String, bufferSize: Int = 8 << 20, onBytes: ((UnsafeRawBufferPointer) -> Void)? = nil) throws(SafeTensorsError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(file: path, operation: "create", errno: errno) }
        buffer = .allocate(byteCount: bufferSize, alignment: 4096)
        self.onBytes = onBytes
    }

    deinit {
        buffer.deallocate()
        if fd >= 0 { Glibc.close(fd) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(SafeTensorsError) {
        guard bytes.count > 0 else { return }
        onBytes?(bytes)
        bytesWritten += bytes.count
        if used + bytes.count <= buffer.count {
            UnsafeMutableRawBufferPointer(rebasing: buffer[used..<(used + bytes.count)]).copyMemory(from: bytes)
            used += bytes.count
            return
        }
        try flush()
        if bytes.count >= buffer.count / 2 {
            try writeAll(bytes)
        } else {
            UnsafeMutableRawBufferPointer(rebasing: buffer[0..<bytes.count]).copyMemory(from: bytes)
            used = bytes.count
        }
    }

    public func write(_ bytes: [UInt8]) throws(SafeTensorsError) {
        let r = bytes.withUnsafeBytes { b in Result { () throws(SafeTensorsError) in try write(b) } }
        try r.get()
    }

    public func flush() throws(SafeTensorsError) {
        guard used > 0 else { return }
        try writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<used]))
        used = 0
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SafeTensorsError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, min(bytes.count - offset, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(file: path, operation: "write", errno: errno)
            }
            offset += n
        }
    }

    /// Flushes, fsyncs and closes.
    public func close() throws(SafeTensorsError) {
        try flush()
        guard fd >= 0 else { return }
        if fsync(fd) != 0 { let e = errno; Glibc.close(fd); fd = -1; throw .io(file: path, operation: "fsync", errno: e) }
        if Glibc.close(fd) != 0 { fd = -1; throw .io(file: path, operation: "close", errno: errno) }
        fd = -1
    }

    /// Closes without flushing and removes the file.
    public func discard() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        unlink(path)
    }
}

/// Writes a small file atomically: temp file, fsync, rename.
public func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws(SafeTensorsError) {
    let tmp = path + ".tmp"
    let sink = try FileSink(path: tmp, bufferSize: 1 << 16)
    do {
        try sink.write(bytes)
        try sink.close()
    } catch {
        sink.discard()
        throw error
    }
    guard rename(tmp, path) == 0 else { throw .io(file: path, operation: "rename", errno: errno) }
}

public func writeFileAtomically(_ path: String, _ text: String) throws(SafeTensorsError) {
    try writeFileAtomically(path, Array(text.utf8))
}
