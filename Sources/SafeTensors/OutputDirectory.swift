#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An output directory that appears only when complete: everything is written into
/// `FINAL.partial/`, then `commit()` fsyncs it and renames it to `FINAL`. A directory without its
/// last file (the manifest or index) is therefore never mistaken for an output.
public final class OutputDirectory {
    public let finalPath: String
    public let partialPath: String
    private let force: Bool
    private var committed = false

    /// Refuses an existing `finalPath` unless `force`. A stale `.partial` from a crash is removed.
    public init(_ path: String, force: Bool) throws(SafeTensorsError) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        finalPath = p
        partialPath = p + ".partial"
        self.force = force
        if fileExists(p) && !force { throw .outputExists(path: p) }
        if fileExists(partialPath) { try removeTree(partialPath) }
        guard mkdir(partialPath, 0o755) == 0 else { throw .io(file: partialPath, operation: "mkdir", errno: errno) }
    }

    /// Path of a file inside the directory being written.
    public func path(_ relative: String) -> String { partialPath + "/" + relative }

    public func makeSubdirectory(_ relative: String) throws(SafeTensorsError) {
        guard mkdir(path(relative), 0o755) == 0 else { throw .io(file: path(relative), operation: "mkdir", errno: errno) }
    }

    public func commit() throws(SafeTensorsError) {
        try syncDirectory(partialPath)
        if fileExists(finalPath) {
            guard force else { throw .outputExists(path: finalPath) }
            try removeTree(finalPath)
        }
        guard rename(partialPath, finalPath) == 0 else { throw .io(file: finalPath, operation: "rename", errno: errno) }
        let parent = finalPath.contains("/") ? String(finalPath[..<finalPath.lastIndex(of: "/")!]) : "."
        try? syncDirectory(parent.isEmpty ? "/" : parent)
        committed = true
    }

    /// Removes the partial output (after a failure).
    public func abort() {
        if !committed { try? removeTree(partialPath) }
    }

    /// Creates the directory, runs `body` to fill it, and commits it — or removes it if `body`
    /// (or the commit) fails, so that a failed run leaves nothing that looks like an output.
    public static func write<T>(_ path: String, force: Bool, _ body: (OutputDirectory) throws -> T) throws -> T {
        let out = try OutputDirectory(path, force: force)
        do {
            let result = try body(out)
            try out.commit()
            return result
        } catch {
            out.abort()
            throw error
        }
    }
}

func syncDirectory(_ path: String) throws(SafeTensorsError) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw .io(file: path, operation: "open directory", errno: errno) }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw .io(file: path, operation: "fsync directory", errno: errno) }
}

/// `rm -r`, without following symlinks.
public func removeTree(_ path: String) throws(SafeTensorsError) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for name in try listDirectory(path) { try removeTree(path + "/" + name) }
        guard rmdir(path) == 0 else { throw .io(file: path, operation: "rmdir", errno: errno) }
    } else {
        guard unlink(path) == 0 else { throw .io(file: path, operation: "unlink", errno: errno) }
    }
}

/// Copies a small file (config, tokenizer) byte for byte.
public func copyFile(from source: String, to destination: String) throws(SafeTensorsError) {
    let src = try MappedFile(path: source)
    let sink = try FileSink(path: destination, bufferSize: 1 << 20)
    do {
        try sink.write(src.bytes)
        try sink.close()
    } catch {
        sink.discard()
        throw error
    }
}

public func pathExists(_ path: String) -> Bool { fileExists(path) }
