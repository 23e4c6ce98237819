import Foundation

/// Paths into Tests/Fixtures, found from this file's location so tests run from any directory.
public enum Fixtures {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()  // TestSupport
        url.deleteLastPathComponent()  // Tests
        return url.appendingPathComponent("Fixtures").path
    }()
    public static let tiny = root + "/tiny-dsv2.5"
    public static let tokenizer = root + "/deepseek-v2.5-tokenizer"
}

/// A fresh directory under the system temp directory, named after the calling test.
public func temporaryDirectory(_ tag: String = #function) -> String {
    let safe = tag.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "dsconv-test-\(safe)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
