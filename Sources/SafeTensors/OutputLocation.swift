#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where an output may go. Every writing command passes its inputs; the output (and the
/// `.partial`, `.lock` and `.old` paths beside it) must not equal, contain or sit inside any of
/// them, compared after resolving symlinks; and it may never be `/`, the working directory, the
/// home directory or an ancestor of either.
public struct OutputLocation: Sendable {
    /// The path as the user gave it, trailing slashes removed: used for every operation and message.
    public let path: String
    /// The absolute path with symlinks in its parent resolved: used for the overlap checks.
    public let resolved: String

    public init(_ path: String, inputs: [String]) throws(SafeTensorsError) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard !p.isEmpty else { throw .unsafeOutput(path: path, reason: "the output path is empty") }
        self.path = p
        resolved = try Self.resolve(p)
        for input in inputs { try checkOverlap(input) }
        try checkForbidden()
    }

    /// Paths written beside the output while it is built or replaced.
    public var partialPath: String { path + ".partial" }
    public var lockPath: String { path + ".lock" }
    public var asidePath: String { path + ".old" }

    private func checkForbidden() throws(SafeTensorsError) {
        if resolved == "/" { throw .unsafeOutput(path: path, reason: "it is the root directory") }
        if let cwd = currentDirectory(), let real = realPath(cwd), isSameOrAncestor(resolved, of: real) {
            throw .unsafeOutput(path: path, reason: resolved == real ? "it is the working directory" : "it contains the working directory")
        }
        if let home = getenv("HOME").map({ String(cString: $0) }), !home.isEmpty, let real = realPath(home),
           isSameOrAncestor(resolved, of: real) {
            throw .unsafeOutput(path: path, reason: resolved == real ? "it is the home directory" : "it contains the home directory")
        }
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK {
            throw .unsafeOutput(path: path, reason: "it is a symbolic link; give the real path")
        }
    }

    private func checkOverlap(_ input: String) throws(SafeTensorsError) {
        guard let real = realPath(input) else { return }  // a missing input fails where it is opened
        let target = realPath(path).map { [($0, "the output")] } ?? []  // an existing output, through its symlinks
        for (candidate, what) in target + [(resolved, "the output"), (resolved + ".partial", "the output's .partial directory"),
                                  (resolved + ".old", "the output's .old directory")] {
            if candidate == real { throw .unsafeOutput(path: path, reason: "\(what) is the input \(input)") }
            if isSameOrAncestor(candidate, of: real) { throw .unsafeOutput(path: path, reason: "\(what) contains the input \(input)") }
            if isSameOrAncestor(real, of: candidate) { throw .unsafeOutput(path: path, reason: "\(what) is inside the input \(input)") }
        }
    }

    /// The absolute form of `p`: its parent resolved through realpath, its last component kept (it
    /// may not exist yet). `.` and `..` as the last component resolve whole.
    static func resolve(_ p: String) throws(SafeTensorsError) -> String {
        let absolute: String
        if p.hasPrefix("/") { absolute = p } else {
            guard let cwd = currentDirectory() else { throw .io(file: ".", operation: "getcwd", errno: errno) }
            absolute = cwd + "/" + p
        }
        let slash = absolute.lastIndex(of: "/") ?? absolute.startIndex
        let name = String(absolute[absolute.index(after: slash)...])
        if name == "." || name == ".." || name.isEmpty {
            guard let r = realPath(absolute) else { throw .io(file: p, operation: "resolve", errno: errno) }
            return r
        }
        let parent = slash == absolute.startIndex ? "/" : String(absolute[..<slash])
        guard let r = realPath(parent) else { throw .io(file: parent, operation: "resolve the output's parent directory", errno: errno) }
        return r == "/" ? "/" + name : r + "/" + name
    }
}

/// Whether `a` is `b` or one of its ancestors (both absolute, resolved).
func isSameOrAncestor(_ a: String, of b: String) -> Bool {
    if a == b || a == "/" { return true }
    return b.hasPrefix(a + "/")
}

func realPath(_ p: String) -> String? {
    guard let r = realpath(p, nil) else { return nil }
    defer { free(r) }
    return String(cString: r)
}

func currentDirectory() -> String? {
    guard let c = getcwd(nil, 0) else { return nil }
    defer { free(c) }
    return String(cString: c)
}
