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
            #if os(Linux)
            // 2 MB mappings where the kernel can give them: pages this map faults in are read ahead
            // as huge folios and mapped whole (file-backed THP), and so are cached large folios. The
            // forward pass streams every weight per token, and at 4 KB a decoded token of V2.5
            // walks the page tables hundreds of thousands of times (dearer still under
            // virtualization): decode ran 1.2–1.4× faster with the weights mapped at 2 MB here.
            // Advice only: a kernel or file system without it keeps 4 KB pages.
            _ = madvise(p, size, MADV_HUGEPAGE)
            #endif
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
