import CSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One writer per output: an exclusive flock on `OUT.lock`, taken before anything is created or
/// removed and released (and the file unlinked) when the output is committed or abandoned.
public final class OutputLock {
    public let path: String
    private var fd: Int32

    /// Fails at once, naming the output, when another process holds the lock.
    public init(path: String, output: String) throws(SafeTensorsError) {
        self.path = path
        while true {
            let f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
            guard f >= 0 else { throw .io(file: path, operation: "create lock file", errno: errno) }
            if csystem_try_lock(f) != 0 {
                let e = errno
                close(f)
                if e == EWOULDBLOCK { throw .outputLocked(path: output, lock: path) }
                throw .io(file: path, operation: "flock", errno: e)
            }
            // The holder before us may have unlinked the file between our open and our lock:
            // the lock counts only if the path still names the locked file.
            var a = stat(), b = stat()
            if fstat(f, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev {
                fd = f
                return
            }
            close(f)
        }
    }

    public func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    deinit { release() }
}
