import Foundation

/// Paths into Tests/Fixtures, found from this file's location so tests run from any directory.
enum Fixtures {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()  // DeepSeekTests
        url.deleteLastPathComponent()  // Tests
        return url.appendingPathComponent("Fixtures").path
    }()
    static let tiny = root + "/tiny-dsv2.5"
    static let tokenizer = root + "/deepseek-v2.5-tokenizer"
}

func temporaryDirectory(_ tag: String = #function) -> String {
    let safe = tag.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "dsconv-test-\(safe)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Copies a checkpoint directory (so a test can damage its copy).
func copyDirectory(_ from: String, to: String) throws {
    try? FileManager.default.removeItem(atPath: to)
    try FileManager.default.copyItem(atPath: from, toPath: to)
    // Fixture files may be read-only; make the copy writable.
    for name in try FileManager.default.contentsOfDirectory(atPath: to) {
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: to + "/" + name)
    }
}
