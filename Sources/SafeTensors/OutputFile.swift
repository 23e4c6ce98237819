#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A single-file output under the same rules as `OutputDirectory`: never an input or inside one,
/// one writer (`FILE.lock`), an existing file replaced only with `force` and only when dsconv wrote
/// it, and the new file written to `FILE.partial`, then renamed over `FILE` in one step.
public enum OutputFile {
    /// `isOurs` tells whether an existing file (or stale `.partial`) was written by dsconv.
    /// `body` writes the complete file at the path it is given.
    public static func write(_ path: String, force: Bool, inputs: [String], isOurs: (String) -> Bool,
                             _ body: (String) throws -> Void) throws {
        let location = try OutputLocation(path, inputs: inputs)
        let lock = try OutputLock(path: location.lockPath, output: location.path)
        defer { lock.release() }
        let final = location.path, partial = location.partialPath
        if isOccupied(final) {
            guard force else { throw SafeTensorsError.outputExists(path: final) }
            // A directory (even one dsconv wrote) is never replaced by a single file.
            guard isRegularFile(final) else {
                throw SafeTensorsError.unsafeOutput(path: final, reason: "it is a directory or special file, and a single-file output never replaces one, even with --force")
            }
            guard isOurs(final) else { throw SafeTensorsError.outputNotOurs(path: final, role: "the output file") }
        }
        if isOccupied(partial) {
            guard isRegularFile(partial), isOurs(partial) else {
                throw SafeTensorsError.outputNotOurs(path: partial, role: "a stale partial output")
            }
            unlink(partial)
        }
        do {
            try body(partial)
            guard rename(partial, final) == 0 else { throw SafeTensorsError.io(file: final, operation: "rename", errno: errno) }
        } catch {
            unlink(partial)
            throw error
        }
        try? syncDirectory(parentDirectory(final))
    }

    /// A safetensors file whose metadata names dsconv as its producer.
    public static func isDsconvSafeTensors(_ path: String) -> Bool {
        guard let f = try? SafeTensorsFile(path: path) else { return false }
        return f.header.metadata["producer"]?.hasPrefix("dsconv") == true
    }
}

public func isRegularFile(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
}
