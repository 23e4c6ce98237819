import Foundation

/// Copies a checkpoint directory (so a test can damage its copy).
func copyDirectory(_ from: String, to: String) throws {
    try? FileManager.default.removeItem(atPath: to)
    try FileManager.default.copyItem(atPath: from, toPath: to)
    // Fixture files may be read-only; make the copy writable.
    for name in try FileManager.default.contentsOfDirectory(atPath: to) {
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: to + "/" + name)
    }
}
