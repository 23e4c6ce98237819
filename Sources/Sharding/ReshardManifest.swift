import Compression
import JSON
import SafeTensors

/// `dsconv-manifest.json`: written last into a reshard output; a directory without it is not an
/// output. It maps every output tensor to its source slice and gives every file's sha256
/// (Formats/tp-layout.md).
public struct ReshardManifest: Sendable {
    public static let fileName = "dsconv-manifest.json"
    public static let format = "dsconv-reshard"
    public static let version = 1
    /// Rank directories `rank-NN/` of Hugging Face checkpoints (config, index, shards, side files).
    public static let layout = "hf"
    /// Layouts this dsconv reads.
    public static var layouts: Set<String> { Set(ReshardLayouts.names) }

    /// The layout the ranks were written in.
    public var rankLayout: any ReshardLayout { ReshardLayouts.named(layout) ?? HuggingFaceRankLayout() }

    /// A rank's tensors: a rank directory of its own (plain or packed), or exactly the rank's
    /// files where ranks share the output directory.
    public func store(rank r: Int, in directory: String, threads: Int) throws -> any TensorStore {
        let rank = ranks[r]
        let dir = directory + "/" + rank.directory
        if rank.directory == "." {
            return try ShardedCheckpoint(directory: directory, fileNames: rank.files.map(\.name).filter { $0.hasSuffix(".safetensors") })
        }
        return try TensorStores.open(dir, threads: threads)
    }

    public struct Slice: Sendable, Equatable {
        public let rank: Int
        public let dim: Int?
        public let offset: Int
        public let length: Int
    }

    public struct Tensor: Sendable {
        /// The source's name.
        public let name: String
        /// Its name in the rank files (the layout's naming; the source's name in the `hf` layout).
        public let storedAs: String
        public let dtype: DType
        public let shape: [Int]
        public let slices: [Slice]
        /// The source's values of a tensor whose ranks hold values of their own (a quantized
        /// weight's `weight_shape`); merge writes these back.
        public var value: [Int64]? = nil
    }

    public typealias File = FileRecord

    public struct Rank: Sendable {
        public let rank: Int
        public let directory: String
        public let localExperts: [Int]
        public let files: [File]
    }

    public let tp: Int
    public let experts: ExpertMode
    public let groupSize: Int?
    /// The `ReshardLayout` the ranks were written in.
    public let layout: String
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
            "format": .string(Self.format), "version": JSONValue(Self.version), "layout": .string(layout), "tensor_parallel": .object(tp),
            "source": .string(source),
            "tensors": .array(tensors.map { t -> JSONValue in
                var o = JSONObject()
                o["name"] = .string(t.name)
                if t.storedAs != t.name { o["stored_as"] = .string(t.storedAs) }
                o["dtype"] = .string(t.dtype.rawValue)
                o["shape"] = JSONValue(t.shape)
                o["slices"] = .array(t.slices.map { s in
                    ["rank": JSONValue(s.rank), "dim": s.dim.map { JSONValue($0) } ?? .null,
                     "offset": JSONValue(s.offset), "length": JSONValue(s.length)]
                })
                if let v = t.value { o["value"] = .array(v.map { JSONValue(Int($0)) }) }
                return .object(o)
            }),
            "ranks": .array(ranks.map { r in
                ["rank": JSONValue(r.rank), "directory": .string(r.directory), "local_experts": JSONValue(r.localExperts),
                 "files": .array(r.files.map(\.json))]
            }),
        ]
    }

    public init(tp: Int, experts: ExpertMode, groupSize: Int?, layout: String, source: String, tensors: [Tensor], ranks: [Rank]) {
        self.tp = tp
        self.experts = experts
        self.groupSize = groupSize
        self.layout = layout
        self.source = source
        self.tensors = tensors
        self.ranks = ranks
    }

    /// Reads and checks a manifest; errors name the file and the field. I/O failures stay I/O errors.
    public init(directory: String) throws(SafeTensorsError) {
        let m = try OutputManifest(directory: directory, fileName: Self.fileName, format: Self.format, versions: Self.version...Self.version)
        let json = m.json
        // Version 1 outputs written before layouts existed are Hugging Face rank directories.
        layout = m.layout ?? Self.layout
        guard Self.layouts.contains(layout) else {
            throw m.fail("layout \"\(layout)\" is not supported (this dsconv reads \(Self.layouts.sorted().map { "\"\($0)\"" }.joined(separator: ", ")))")
        }
        guard let size = json["tensor_parallel"]?["size"]?.integerValue, size >= 1,
            let mode = json["tensor_parallel"]?["experts"]?.stringValue.flatMap(ExpertMode.init(rawValue:))
        else { throw m.fail("missing or invalid \"tensor_parallel\"") }
        tp = Int(size)
        experts = mode
        groupSize = json["tensor_parallel"]?["group_size"]?.integerValue.map(Int.init)
        source = json["source"]?.stringValue ?? ""
        var tensors: [Tensor] = []
        guard let tensorList = json["tensors"]?.arrayValue, !tensorList.isEmpty else { throw m.fail("missing or empty \"tensors\"") }
        for t in tensorList {
            guard let name = t["name"]?.stringValue, let dt = t["dtype"]?.stringValue.flatMap(DType.init(rawValue:)),
                let shapeList = t["shape"]?.arrayValue, let slices = t["slices"]?.arrayValue
            else { throw m.fail("invalid tensor entry (name, dtype, shape and slices are required)") }
            let shape = shapeList.compactMap { $0.integerValue.map(Int.init) }
            guard shape.count == shapeList.count, shape.allSatisfy({ $0 >= 0 }) else { throw m.fail("tensor \(name): invalid shape") }
            var out: [Slice] = []
            for s in slices {
                guard let r = s["rank"]?.integerValue, let o = s["offset"]?.integerValue, let l = s["length"]?.integerValue,
                    r >= 0, Int(r) < tp, o >= 0, l >= 0
                else { throw m.fail("tensor \(name): invalid slice") }
                let dim = s["dim"]?.integerValue.map(Int.init)
                if let dim, dim < 0 || dim >= shape.count || Int(o + l) > shape[dim] { throw m.fail("tensor \(name): slice out of bounds") }
                out.append(Slice(rank: Int(r), dim: dim, offset: Int(o), length: Int(l)))
            }
            let storedAs = t["stored_as"]?.stringValue ?? name
            var value: [Int64]? = nil
            if let v = t["value"] {
                guard dt == .i64, let list = v.arrayValue, list.count == shape.reduce(1, *) else { throw m.fail("tensor \(name): invalid \"value\"") }
                value = list.compactMap(\.integerValue)
                guard value?.count == list.count else { throw m.fail("tensor \(name): \"value\" must hold integers") }
            }
            tensors.append(Tensor(name: name, storedAs: storedAs, dtype: dt, shape: shape, slices: out, value: value))
        }
        self.tensors = tensors
        var ranks: [Rank] = []
        for r in json["ranks"]?.arrayValue ?? [] {
            guard let rank = r["rank"]?.integerValue, let dir = r["directory"]?.stringValue, FileRecord.isPlainName(dir) || dir == "." else {
                throw m.fail("invalid rank entry (a rank number and a plain directory name, or \".\", are required)")
            }
            // Names are data, never paths: one plain name inside the rank directory.
            let files = try m.files(r["files"], field: "ranks[\(rank)].files")
            ranks.append(Rank(rank: Int(rank), directory: dir, localExperts: (r["local_experts"]?.arrayValue ?? []).compactMap { $0.integerValue.map(Int.init) }, files: files))
        }
        guard ranks.count == tp, ranks.enumerated().allSatisfy({ $0.offset == $0.element.rank }) else {
            throw m.fail("expected \(tp) ranks in order")
        }
        self.ranks = ranks
    }

    public static func isReshardOutput(_ directory: String) -> Bool { pathExists(directory + "/" + fileName) }
}
