import JSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a tensor lives: which file, and its header entry there.
public struct TensorLocation: Sendable {
    public let file: SafeTensorsFile
    public let info: TensorInfo
    public var data: UnsafeRawBufferPointer { file.data(info) }

    public init(file: SafeTensorsFile, info: TensorInfo) {
        self.file = file
        self.info = info
    }
}

/// The safetensors side of a checkpoint directory: `model.safetensors.index.json` when present
/// (cross-checked against every file's header), otherwise every `*.safetensors` file.
///
/// Index rules: every entry points to an existing file that holds that tensor; a tensor is indexed
/// once; every tensor in an indexed file is in the index; file names are plain names in the
/// directory.
public final class ShardedCheckpoint: @unchecked Sendable {
    public static let indexFileName = "model.safetensors.index.json"

    public let directory: String
    /// Files in name order.
    public let files: [SafeTensorsFile]
    /// Path of the index, when the checkpoint has one.
    public let indexPath: String?
    /// Tensors in file order, then data order.
    public let tensors: [TensorLocation]
    private let byName: [String: Int]

    public init(directory: String) throws(SafeTensorsError) {
        self.directory = directory
        let indexPath = directory + "/" + ShardedCheckpoint.indexFileName
        var files: [SafeTensorsFile] = []
        if fileExists(indexPath) {
            self.indexPath = indexPath
            let weightMap = try ShardedCheckpoint.readIndex(indexPath)
            var fileNames: [String] = []
            var seen = Set<String>()
            for (tensor, file) in weightMap {
                guard !file.contains("/"), file != "..", !file.isEmpty else {
                    throw .indexInvalid(file: indexPath, reason: "tensor \(tensor): file name \"\(file)\" must be a plain file name in the checkpoint directory")
                }
                guard fileExists(directory + "/" + file) else {
                    throw .indexMissingFile(index: indexPath, tensor: tensor, file: file)
                }
                if seen.insert(file).inserted { fileNames.append(file) }
            }
            fileNames.sort()
            for name in fileNames { files.append(try SafeTensorsFile(path: directory + "/" + name)) }
            let fileByName = Dictionary(uniqueKeysWithValues: zip(fileNames, files))
            // Where each tensor actually is, to name the right file in errors.
            var actual: [String: String] = [:]
            for (name, f) in zip(fileNames, files) {
                for t in f.tensors {
                    if let other = actual[t.name] { throw .tensorInTwoFiles(tensor: t.name, first: other, second: name) }
                    actual[t.name] = name
                }
            }
            for (tensor, file) in weightMap where fileByName[file]?.info(tensor) == nil {
                throw .indexTensorNotInFile(index: indexPath, tensor: tensor, file: file,
                                            foundIn: actual[tensor] ?? ShardedCheckpoint.locate(tensor, in: directory, skipping: Set(fileNames)))
            }
            let indexed = Dictionary(weightMap, uniquingKeysWith: { a, _ in a })
            for (name, f) in zip(fileNames, files) {
                for t in f.tensors where indexed[t.name] == nil {
                    throw .tensorNotIndexed(index: indexPath, tensor: t.name, file: name)
                }
            }
        } else {
            self.indexPath = nil
            let names = try listDirectory(directory).filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }.sorted()
            guard !names.isEmpty else { throw .noSafetensorsFiles(directory: directory) }
            for name in names { files.append(try SafeTensorsFile(path: directory + "/" + name)) }
        }
        (self.files, self.tensors, self.byName) = try Self.locate(files)
    }

    /// Exactly these files of a directory, without an index (one rank's files in a directory that
    /// holds every rank's, as DeepSeek's `model{r}-mp{N}.safetensors`).
    public init(directory: String, fileNames: [String]) throws(SafeTensorsError) {
        self.directory = directory
        indexPath = nil
        guard !fileNames.isEmpty else { throw .noSafetensorsFiles(directory: directory) }
        var files: [SafeTensorsFile] = []
        for name in fileNames.sorted() { files.append(try SafeTensorsFile(path: directory + "/" + name)) }
        (self.files, self.tensors, self.byName) = try Self.locate(files)
    }

    /// Every tensor of the files, each in exactly one file.
    private static func locate(_ files: [SafeTensorsFile]) throws(SafeTensorsError) -> ([SafeTensorsFile], [TensorLocation], [String: Int]) {
        var tensors: [TensorLocation] = []
        var byName: [String: Int] = [:]
        for f in files {
            for t in f.tensors {
                if let i = byName[t.name] { throw .tensorInTwoFiles(tensor: t.name, first: tensors[i].file.path, second: f.path) }
                byName[t.name] = tensors.count
                tensors.append(TensorLocation(file: f, info: t))
            }
        }
        return (files, tensors, byName)
    }

    public subscript(name: String) -> TensorLocation? { byName[name].map { tensors[$0] } }

    public func require(_ name: String) throws(SafeTensorsError) -> TensorLocation {
        guard let t = self[name] else { throw .tensorNotFound(tensor: name) }
        return t
    }

    public var totalBytes: Int { files.reduce(0) { $0 + $1.fileSize } }

    /// Error path only: which unindexed `*.safetensors` file of the directory holds `tensor`.
    static func locate(_ tensor: String, in directory: String, skipping: Set<String>) -> String? {
        guard let names = try? listDirectory(directory) else { return nil }
        for name in names.sorted() where name.hasSuffix(".safetensors") && !skipping.contains(name) {
            if let f = try? SafeTensorsFile(path: directory + "/" + name), f.info(tensor) != nil { return name }
        }
        return nil
    }

    /// Reads `weight_map` in file order, refusing a tensor indexed twice.
    static func readIndex(_ path: String) throws(SafeTensorsError) -> [(String, String)] {
        let bytes = try readWholeFile(path)
        let json: JSONValue
        do { json = try JSONParser.parse(bytes) } catch {
            if error.reason.hasPrefix("duplicate key") {
                throw .indexInvalid(file: path, reason: "a tensor is indexed twice: \(error.description)")
            }
            throw .indexInvalid(file: path, reason: "not valid JSON: \(error.description)")
        }
        guard let map = json["weight_map"]?.objectValue else {
            throw .indexInvalid(file: path, reason: "missing \"weight_map\" object")
        }
        var out: [(String, String)] = []
        for (tensor, file) in map.pairs {
            guard let f = file.stringValue else {
                throw .indexInvalid(file: path, reason: "weight_map entry for \(tensor) is not a file name string")
            }
            out.append((tensor, f))
        }
        return out
    }
}

func fileExists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0
}

/// Names in a directory, without "." and "..".
public func listDirectory(_ path: String) throws(SafeTensorsError) -> [String] {
    guard let dir = opendir(path) else { throw .io(file: path, operation: "opendir", errno: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// Reads a (small) file whole: configs, indexes, tokenizer files.
public func readWholeFile(_ path: String) throws(SafeTensorsError) -> [UInt8] {
    let f = try MappedFile(path: path)
    return [UInt8](f.bytes)
}
