import CSystem
import Dispatch
import Primitives

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file being written through a fixed buffer. Every failure is a typed I/O error naming the
/// file (ENOSPC included), never a trap.
///
/// Two modes:
/// - **buffered** (small files): an 8 MiB buffer, large slices written straight through;
/// - **direct** (`direct: true`, the large outputs): O_DIRECT, past the page cache. Output is
///   written once and never read back by the writer; sending it through the page cache costs a
///   copy into fresh pages and dirty write-back storms that stall the writer, and at real scale
///   it evicts the source pages being read. Two aligned buffers alternate: one fills while a
///   writer thread sends the other to the disk. The last block is padded to the alignment and
///   the file truncated to its length. A file system that refuses O_DIRECT (tmpfs) gets the
///   same two buffers over ordinary writes.
public final class FileSink {
    public let path: String
    private var fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    public private(set) var bytesWritten = 0
    private var onBytes: ((UnsafeRawBufferPointer) -> Void)?

    /// The file offset of the next write.
    private var fileOffset = 0
    /// Direct mode: the second buffer and the writer thread.
    private let direct: Bool
    private var spare: UnsafeMutableRawBufferPointer?
    private let inFlight = DispatchGroup()
    private let queue = DispatchQueue(label: "dsconv.filesink")
    private let failure = Locked<SafeTensorsError?>(nil)
    private static let alignment = 4096

    /// Creates (truncating) the file. `onBytes` sees every byte written, in order (for checksums).
    public init(path: String, bufferSize: Int = 8 << 20, direct: Bool = false,
                onBytes: ((UnsafeRawBufferPointer) -> Void)? = nil) throws(SafeTensorsError) {
        self.path = path
        self.direct = direct
        if direct {
            fd = csystem_create_direct(path)
            if fd < 0 && errno == EINVAL { fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        } else {
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        }
        guard fd >= 0 else { throw .io(file: path, operation: "create", errno: errno) }
        let size = direct ? max(Self.alignment, bufferSize / Self.alignment * Self.alignment) : bufferSize
        buffer = .allocate(byteCount: size, alignment: Self.alignment)
        if direct { spare = .allocate(byteCount: size, alignment: Self.alignment) }
        self.onBytes = onBytes
    }

    deinit {
        inFlight.wait()
        buffer.deallocate()
        spare?.deallocate()
        if fd >= 0 { Glibc.close(fd) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(SafeTensorsError) {
        guard bytes.count > 0 else { return }
        onBytes?(bytes)
        bytesWritten += bytes.count
        if direct {
            var offset = 0
            while offset < bytes.count {
                let n = min(buffer.count - used, bytes.count - offset)
                UnsafeMutableRawBufferPointer(rebasing: buffer[used..<(used + n)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))
                used += n
                offset += n
                if used == buffer.count { try submitFullBuffer() }
            }
            return
        }
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

    /// Writes what is buffered. In direct mode only whole buffers go out before `close`, which
    /// writes the padded tail.
    public func flush() throws(SafeTensorsError) {
        guard !direct else { return }
        guard used > 0 else { return }
        try writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<used]))
        used = 0
    }

    /// Direct mode: hands the full buffer to the writer thread and continues in the spare one.
    private func submitFullBuffer() throws(SafeTensorsError) {
        try waitForWriter()
        guard let next = spare else { return }
        let block = UnsafeSendable(UnsafeRawBufferPointer(buffer)), at = fileOffset, fd = fd, path = path, failure = failure
        fileOffset += buffer.count
        inFlight.enter()
        queue.async { [inFlight] in
            if let e = Self.writeAll(fd: fd, path: path, block.value, at: at) { failure.withLock { $0 = $0 ?? e } }
            inFlight.leave()
        }
        spare = buffer
        buffer = next
        used = 0
    }

    private func waitForWriter() throws(SafeTensorsError) {
        inFlight.wait()
        if let e = failure.withLock({ $0 }) { throw e }
    }

    /// Buffered mode: writes at the file's end, on this thread.
    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SafeTensorsError) {
        if let e = Self.writeAll(fd: fd, path: path, bytes, at: fileOffset) { throw e }
        fileOffset += bytes.count
    }

    /// pwrite of a whole block at `at`; a file system that refuses a direct write (EINVAL) gets
    /// O_DIRECT turned off and the write again.
    private static func writeAll(fd: Int32, path: String, _ bytes: UnsafeRawBufferPointer, at: Int) -> SafeTensorsError? {
        var offset = 0, retried = false
        while offset < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + offset, min(bytes.count - offset, 1 << 30), off_t(at + offset))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && !retried && csystem_clear_direct(fd) == 0 { retried = true; continue }
                return .io(file: path, operation: "write", errno: errno)
            }
            offset += n
        }
        return nil
    }

    /// Flushes, fsyncs and closes.
    public func close() throws(SafeTensorsError) {
        guard fd >= 0 else { return }
        if direct {
            try waitForWriter()
            if used > 0 {
                // The tail, zero-padded to the alignment, then the file cut to its length.
                let padded = (used + Self.alignment - 1) / Self.alignment * Self.alignment
                UnsafeMutableRawBufferPointer(rebasing: buffer[used..<padded]).initializeMemory(as: UInt8.self, repeating: 0)
                if let e = Self.writeAll(fd: fd, path: path, UnsafeRawBufferPointer(rebasing: buffer[0..<padded]), at: fileOffset) { throw e }
                fileOffset += used
                used = 0
            }
            if ftruncate(fd, off_t(bytesWritten)) != 0 { let e = errno; Glibc.close(fd); fd = -1; throw .io(file: path, operation: "truncate", errno: e) }
        } else {
            try flush()
        }
        if fsync(fd) != 0 { let e = errno; Glibc.close(fd); fd = -1; throw .io(file: path, operation: "fsync", errno: e) }
        if Glibc.close(fd) != 0 { fd = -1; throw .io(file: path, operation: "close", errno: errno) }
        fd = -1
    }

    /// Closes without flushing and removes the file.
    public func discard() {
        inFlight.wait()
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
