#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Pages come in on demand, so mapping a 5 GB shard costs
/// address space, not memory. The map lives as long as this object.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws(SafeTensorsError) {
        self.path = path
        // O_NONBLOCK: a FIFO or device in place of a file must not hang the open; it is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .io(file: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(file: path, operation: "stat", errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .notRegularFile(path: path) }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
        } else {
            let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)
            guard let p, p != MAP_FAILED else { throw .io(file: path, operation: "mmap", errno: errno) }
            base = p
        }
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// The mapped bytes. Valid while `self` is alive.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Drops a range already read from this process's page tables (the page cache keeps it).
    public func adviseDone(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page
        let end = range.upperBound / page * page
        guard end > start else { return }
        _ = madvise(base + start, end - start, MADV_DONTNEED)
    }
}
