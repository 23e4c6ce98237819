import CSystem
import JSON
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An output directory that appears only when complete, written by one process at a time, that
/// never overlaps an input and never replaces what dsconv did not write.
///
/// - The output is checked against the inputs and forbidden places first (`OutputLocation`).
/// - `OUT.lock` is held for the whole run (`OutputLock`).
/// - Everything is written into `OUT.partial/`, which carries the marker `.dsconv-output` from
///   its first moment; a stale `.partial` is removed only when it carries that marker.
/// - `--force` replaces an existing `OUT` only when it carries the marker or a dsconv manifest.
/// - `commit()` fsyncs, then swaps `OUT.partial` and `OUT` in one `renameat2(RENAME_EXCHANGE)`, and
///   only then deletes the old output: a kill at any moment leaves the old or the new output
///   complete at `OUT`. Where the file system cannot exchange, the old output is renamed to
///   `OUT.old` first, and the next run puts it back if the new one never arrived.
public final class OutputDirectory {
    /// Marker file in every directory dsconv writes.
    public static let markerName = ".dsconv-output"
    /// Files whose presence also shows that dsconv wrote a directory (outputs from before the marker).
    public static let ownershipFiles = [markerName, "dsconv-manifest.json", "dsconv-pack-manifest.json"]

    public let location: OutputLocation
    public var finalPath: String { location.path }
    public var partialPath: String { location.partialPath }
    private let force: Bool
    private var lock: OutputLock?
    private var committed = false
    /// Set once this run created `.partial`: only then may a failure remove it.
    private var ownsPartial = false

    /// Refuses an existing `path` unless `force` (and then only one dsconv wrote).
    public init(_ path: String, force: Bool, inputs: [String] = [], producer: String = "dsconv") throws(SafeTensorsError) {
        location = try OutputLocation(path, inputs: inputs)
        self.force = force
        let lock = try OutputLock(path: location.lockPath, output: location.path)
        self.lock = lock
        do {
            try recoverAside()
            if isOccupied(finalPath) {
                guard force else { throw SafeTensorsError.outputExists(path: finalPath) }
                try Self.requireOurs(finalPath)
            }
            // A run killed between creating `.partial` and writing its marker leaves it empty, or
            // holding only the marker's temp file: nothing there to lose.
            if isOccupied(partialPath) && !Self.isOurs(partialPath), let names = try? listDirectory(partialPath),
               names.allSatisfy({ $0 == Self.markerName + ".tmp" }) {
                for n in names { unlink(partialPath + "/" + n) }
                _ = rmdir(partialPath)
            }
            if isOccupied(partialPath) {
                guard Self.isOurs(partialPath) else {
                    throw SafeTensorsError.outputNotOurs(path: partialPath, role: "a stale partial output")
                }
                try removeMarkedTree(partialPath)
            }
            guard mkdir(partialPath, 0o755) == 0 else { throw SafeTensorsError.io(file: partialPath, operation: "mkdir", errno: errno) }
            ownsPartial = true
            try writeFileAtomically(self.path(Self.markerName), "{\"producer\": \(jsonQuoted(producer)), \"version\": 1}\n")
        } catch let e as SafeTensorsError {
            lock.release()
            throw e
        } catch {
            lock.release()
            throw .io(file: partialPath, operation: "prepare", errno: EIO)
        }
    }

    deinit { if !committed { abort() } }

    /// Whether `dir` is a directory dsconv wrote (marker or manifest present).
    public static func isOurs(_ dir: String) -> Bool {
        var st = stat()
        guard lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return false }
        return ownershipFiles.contains { fileExists(dir + "/" + $0) }
    }

    static func requireOurs(_ dir: String) throws(SafeTensorsError) {
        guard isOurs(dir) else { throw .outputNotOurs(path: dir, role: "the output") }
    }

    /// A kill between the two renames of the fallback replacement leaves the old output at
    /// `OUT.old` and none at `OUT`: put it back. With both present, the aside copy is stale.
    private func recoverAside() throws(SafeTensorsError) {
        let aside = location.asidePath
        guard isOccupied(aside) else { return }
        guard Self.isOurs(aside) else { return }  // not ours: never touched, never used
        if isOccupied(finalPath) {
            try removeMarkedTree(aside)
        } else {
            guard rename(aside, finalPath) == 0 else { throw .io(file: aside, operation: "rename back to \(finalPath)", errno: errno) }
        }
    }

    /// Path of a file inside the directory being written.
    public func path(_ relative: String) -> String { partialPath + "/" + relative }

    public func makeSubdirectory(_ relative: String) throws(SafeTensorsError) {
        guard mkdir(path(relative), 0o755) == 0 else { throw .io(file: path(relative), operation: "mkdir", errno: errno) }
    }

    public func commit() throws(SafeTensorsError) {
        try syncDirectory(partialPath)
        if isOccupied(finalPath) {
            guard force else { throw .outputExists(path: finalPath) }
            try Self.requireOurs(finalPath)
            if csystem_rename_exchange(partialPath, finalPath) == 0 {
                // The new output is in place; the old one now sits at .partial, marked, until removed.
                committed = true
                try? syncDirectory(parentDirectory(finalPath))
                try? removeMarkedTree(partialPath)
            } else {
                let aside = location.asidePath
                guard !isOccupied(aside) else { throw .outputNotOurs(path: aside, role: "a leftover aside copy") }
                guard rename(finalPath, aside) == 0 else { throw .io(file: finalPath, operation: "rename aside", errno: errno) }
                guard rename(partialPath, finalPath) == 0 else { throw .io(file: finalPath, operation: "rename", errno: errno) }
                committed = true
                try? syncDirectory(parentDirectory(finalPath))
                try? removeMarkedTree(aside)
            }
        } else {
            guard rename(partialPath, finalPath) == 0 else { throw .io(file: finalPath, operation: "rename", errno: errno) }
            committed = true
            try? syncDirectory(parentDirectory(finalPath))
        }
        lock?.release()
        lock = nil
    }

    /// Removes the partial output (after a failure).
    public func abort() {
        if !committed && ownsPartial { try? removeMarkedTree(partialPath) }
        lock?.release()
        lock = nil
    }

    /// Creates the directory, runs `body` to fill it, and commits it — or removes it if `body`
    /// (or the commit) fails, so that a failed run leaves nothing that looks like an output.
    public static func write<T>(_ path: String, force: Bool, inputs: [String] = [], producer: String = "dsconv",
                                _ body: (OutputDirectory) throws -> T) throws -> T {
        let out = try OutputDirectory(path, force: force, inputs: inputs, producer: producer)
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

/// Whether anything (file, directory, link, dangling link) exists at `path`.
func isOccupied(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    let parent = String(path[..<slash])
    return parent.isEmpty ? "/" : parent
}

func jsonQuoted(_ s: String) -> String {
    JSONValue.string(s).serialized(pretty: false)
}

func syncDirectory(_ path: String) throws(SafeTensorsError) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw .io(file: path, operation: "open directory", errno: errno) }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw .io(file: path, operation: "fsync directory", errno: errno) }
}

/// `rm -r` of a directory dsconv marked, the marker removed last: a kill halfway leaves a
/// directory that still says it is ours, so the next run may finish the removal.
func removeMarkedTree(_ path: String) throws(SafeTensorsError) {
    for name in try listDirectory(path) where !OutputDirectory.ownershipFiles.contains(name) { try removeTree(path + "/" + name) }
    try removeTree(path)
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
