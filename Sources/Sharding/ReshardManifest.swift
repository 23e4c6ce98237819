import JSON
import SafeTensors

/// `dsconv-manifest.json`: written last into a reshard output; a directory without it is not an
/// output. It maps every output tensor to its source slice and gives every file's sha256
/// (Formats/tp-layout.md).
public struct ReshardManifest: Sendable {
    public static let fileName = "dsconv-manifest.json"
    public static let format = "dsconv-reshard"
    public static let version = 1

    public struct Slice: Sendable, Equatable {
        public let rank: Int
        public let dim: Int?
        public let offset: Int
        public let length: Int
    }

    public struct Tensor: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let slices: [Slice]
    }

    public struct File: Sendable, Equatable {
        public let name: String
        public let size: Int
        public let sha256: String
    }

    public struct Rank: Sendable {
        public let rank: Int
        public let directory: String
        public let localExperts: [Int]
        public let files: [File]
    }

    public let tp: Int
    public let experts: ExpertMode
    public let groupSize: Int?
    public let source: String
    public let tensors: [Tensor]
    public let ranks: [Rank]

    public static func rankDirectory(_ r: Int) -> String { r < 10 ? "rank-0\(r)" : "rank-\(r)" }

    public var json: JSONValue {
        var tp = JSONObject()
        tp["size"] = JSONValue(self.tp)
        tp["experts"] = .string(experts.rawValue)
        tp["group_size"] = groupSize.map { JSONValue($0) } ?? .null
        return [
            "format": .string(Self.format), "version": JSONValue(Self.version), "tensor_parallel": .object(tp),
            "source": .string(source),
            "tensors": .array(tensors.map { t in
                ["name": .string(t.name), "dtype": .string(t.dtype.rawValue), "shape": JSONValue(t.shape),
                 "slices": .array(t.slices.map { s in
                     ["rank": JSONValue(s.rank), "dim": s.dim.map { JSONValue($0) } ?? .null,
                      "offset": JSONValue(s.offset), "length": JSONValue(s.length)]
                 })]
            }),
            "ranks": .array(ranks.map { r in
                ["rank": JSONValue(r.rank), "directory": .string(r.directory), "local_experts": JSONValue(r.localExperts),
                 "files": .array(r.files.map { ["name": .string($0.name), "size": JSONValue($0.size), "sha256": .string($0.sha256)] })]
            }),
        ]
    }

    public init(tp: Int, experts: ExpertMode, groupSize: Int?, source: String, tensors: [Tensor], ranks: [Rank]) {
        self.tp = tp
        self.experts = experts
        self.groupSize = groupSize
        self.source = source
        self.tensors = tensors
        self.ranks = ranks
    }

    /// A file or directory name that stays inside its directory: no separators, not `.`/`..`, no NUL.
    public static func isPlainName(_ n: String) -> Bool {
        !n.isEmpty && n != "." && n != ".." && !n.contains("/") && !n.contains("\u{0}")
    }

    /// Reads and checks a manifest; errors name the file and the field.
    public init(directory: String) throws(PlanError) {
        let path = directory + "/" + Self.fileName
        let json: JSONValue
        do { json = try JSONParser.parse(try readWholeFile(path)) } catch {
            throw PlanError(message: "\(path): \(error) (is \(directory) a dsconv reshard output?)")
        }
        func fail(_ m: String) -> PlanError { PlanError(message: "\(path): \(m)") }
        guard json["format"]?.stringValue == Self.format else { throw fail("\"format\" is not \(Self.format)") }
        guard let version = json["version"]?.integerValue else { throw fail("missing \"version\"") }
        guard version == Int64(Self.version) else { throw fail("version \(version) is not supported (this dsconv reads version \(Self.version))") }
        guard let size = json["tensor_parallel"]?["size"]?.integerValue, size >= 1,
            let mode = json["tensor_parallel"]?["experts"]?.stringValue.flatMap(ExpertMode.init(rawValue:))
        else { throw fail("missing or invalid \"tensor_parallel\"") }
        tp = Int(size)
        experts = mode
        groupSize = json["tensor_parallel"]?["group_size"]?.integerValue.map(Int.init)
        source = json["source"]?.stringValue ?? ""
        var tensors: [Tensor] = []
        guard let tensorList = json["tensors"]?.arrayValue, !tensorList.isEmpty else { throw fail("missing or empty \"tensors\"") }
        for t in tensorList {
            guard let name = t["name"]?.stringValue, let dt = t["dtype"]?.stringValue.flatMap(DType.init(rawValue:)),
                let shape = t["shape"]?.arrayValue?.compactMap({ $0.integerValue.map(Int.init) }), let slices = t["slices"]?.arrayValue
            else { throw fail("invalid tensor entry") }
            var out: [Slice] = []
            for s in slices {
                guard let r = s["rank"]?.integerValue, let o = s["offset"]?.integerValue, let l = s["length"]?.integerValue,
                    r >= 0, Int(r) < tp, o >= 0, l >= 0
                else { throw fail("tensor \(name): invalid slice") }
                let dim = s["dim"]?.integerValue.map(Int.init)
                if let dim, dim >= shape.count || Int(o + l) > shape[dim] { throw fail("tensor \(name): slice out of bounds") }
                out.append(Slice(rank: Int(r), dim: dim, offset: Int(o), length: Int(l)))
            }
            tensors.append(Tensor(name: name, dtype: dt, shape: shape, slices: out))
        }
        self.tensors = tensors
        var ranks: [Rank] = []
        for r in json["ranks"]?.arrayValue ?? [] {
            guard let rank = r["rank"]?.integerValue, let dir = r["directory"]?.stringValue, Self.isPlainName(dir) else { throw fail("invalid rank entry") }
            guard let fileList = r["files"]?.arrayValue, !fileList.isEmpty else { throw fail("rank \(rank): missing or empty \"files\"") }
            var files: [File] = []
            for f in fileList {
                // Names are data, never paths: one plain name inside the rank directory.
                guard let n = f["name"]?.stringValue, Self.isPlainName(n), let s = f["size"]?.integerValue, s >= 0,
                      let h = f["sha256"]?.stringValue, h.count == 64, h.allSatisfy(\.isHexDigit)
                else { throw fail("rank \(rank): invalid file entry (a plain file name, a size and a sha256 are required)") }
                files.append(File(name: n, size: Int(s), sha256: h))
            }
            ranks.append(Rank(rank: Int(rank), directory: dir, localExperts: (r["local_experts"]?.arrayValue ?? []).compactMap { $0.integerValue.map(Int.init) }, files: files))
        }
        guard ranks.count == tp, ranks.enumerated().allSatisfy({ $0.offset == $0.element.rank }) else {
            throw fail("expected \(tp) ranks in order")
        }
        self.ranks = ranks
    }

    public static func isReshardOutput(_ directory: String) -> Bool { pathExists(directory + "/" + fileName) }
}
