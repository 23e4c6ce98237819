import JSON
import Kernels
import SafeTensors

/// `dsconv verify` without `--prompt`: the schema, the store's scan (NaN/Inf, and what the
/// store can check of its files), the tokenizer files. Header and index problems are found
/// earlier, when the store is opened.
public enum IntegrityCheck {
    /// Any store against a schema.
    public static func run(store: any TensorStore, schema: TensorSchema, textDirectory: String, threads: Int,
                           progress: (@Sendable (_ bytesDone: Int, _ bytesTotal: Int) -> Void)? = nil) -> IntegrityReport {
        var report = store.scan(threads: threads, progress: progress)
        report.problems = schemaProblems(store: store, schema: schema) + weightShapeProblems(store: store, schema: schema) + report.problems
        report.problems += tokenizerProblems(directory: textDirectory)
        return report
    }

    public static func run(_ checkpoint: Checkpoint, threads: Int,
                           progress: (@Sendable (_ bytesDone: Int, _ bytesTotal: Int) -> Void)? = nil) -> IntegrityReport {
        run(store: checkpoint.weights, schema: checkpoint.schema, textDirectory: checkpoint.directory, threads: threads, progress: progress)
    }

    /// Missing, unexpected, mis-shaped and mis-typed tensors against the config's schema.
    public static func schemaProblems(_ checkpoint: Checkpoint) -> [Problem] {
        schemaProblems(store: checkpoint.weights, schema: checkpoint.schema)
    }

    public static func schemaProblems(store: any TensorStore, schema: TensorSchema) -> [Problem] {
        schemaProblems(schema: schema, expectedDType: schema.config.expectedDType, tensors: store.listing, indexName: store.listingName)
    }

    /// The same over any listing of (file, tensor) pairs, e.g. a packed checkpoint's headers.
    public static func schemaProblems(schema: TensorSchema, expectedDType: DType, tensors: [StoredTensor],
                                      indexName: String) -> [Problem] {
        var problems: [Problem] = []
        var found: [String: StoredTensor] = [:]
        for t in tensors { found[t.info.name] = t }
        for t in schema.tensors {
            guard let f = found[t.name] else {
                problems.append(Problem(kind: .missingTensor, file: indexName, tensor: t.name,
                                        message: "missing (expected shape \(t.shape), \((t.dtype ?? expectedDType).rawValue))"))
                continue
            }
            if f.info.shape != t.shape {
                problems.append(Problem(kind: .wrongShape, file: f.file, tensor: t.name, message: "shape \(f.info.shape), expected \(t.shape)"))
            }
            // transformers keeps the router in fp32 on purpose; an f32 router is accepted.
            let routerF32 = { if case .router = t.role { return f.info.dtype == .f32 }; return false }()
            let dtype = t.dtype ?? expectedDType
            if f.info.dtype != dtype && !routerF32 {
                problems.append(Problem(kind: .wrongDType, file: f.file, tensor: t.name,
                                        message: "dtype \(f.info.dtype.rawValue), expected \(dtype.rawValue)"))
            }
        }
        for t in tensors where schema[t.info.name] == nil {
            problems.append(Problem(kind: .unexpectedTensor, file: t.file, tensor: t.info.name,
                                    message: "not part of the model the config describes (shape \(t.info.shape), \(t.info.dtype.rawValue))"))
        }
        return problems
    }

    /// A quantized weight's `weight_shape` must hold the logical shape the config gives (readers
    /// that trust it would decode another shape).
    public static func weightShapeProblems(store: any TensorStore, schema: TensorSchema) -> [Problem] {
        var problems: [Problem] = []
        for t in schema.tensors where t.component == .weightShape {
            guard let logical = t.logicalShape, let info = store.info(t.name), info.dtype == .i64, info.shape == [2],
                  let data = try? store.bytes(t.name), data.bytes.count == 16 else { continue }
            let values = (0..<2).map { i in data.bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self).littleEndian }
            if values != logical.map(Int64.init) {
                problems.append(Problem(kind: .wrongShape, file: store.path(of: t.name) ?? store.directory, tensor: t.name,
                                        message: "holds \(values), the config gives the weight \(logical)"))
            }
        }
        return problems
    }

    /// tokenizer.json and tokenizer_config.json must exist and parse.
    public static func tokenizerProblems(directory: String) -> [Problem] {
        var problems: [Problem] = []
        for name in Checkpoint.tokenizerFiles {
            let path = directory + "/" + name
            guard pathExists(path) else {
                problems.append(Problem(kind: .tokenizer, file: name, tensor: "", message: "missing (the tokenizer is needed for verify --prompt and calibration)"))
                continue
            }
            do {
                let file = try MappedFile(path: path)
                let keys = try JSONParser.validate(file.bytes)
                if keys.isEmpty {
                    problems.append(Problem(kind: .tokenizer, file: name, tensor: "", message: "is not a JSON object"))
                } else if name == "tokenizer.json", !keys.contains("model") {
                    problems.append(Problem(kind: .tokenizer, file: name, tensor: "", message: "has no \"model\" object"))
                }
            } catch {
                problems.append(Problem(kind: .tokenizer, file: name, tensor: "", message: "does not parse: \(error)"))
            }
        }
        return problems
    }
}

extension IntegrityCheck {
    /// Refuses a source tensor holding NaN/Inf, naming its file and tensor: a writer (reshard,
    /// quantize) must not turn a damaged source into an output that looks valid. Scans 64 MiB at
    /// a time; `releasingPages` drops each window's pages after it (for callers that read the
    /// tensor again piecewise, so the resident part of the source stays small).
    public static func requireFinite(_ loc: TensorLocation, name: String, releasingPages: Bool = false) throws {
        guard let format = loc.info.dtype.scanFormat else { return }
        let es = loc.info.dtype.size
        let step = (64 << 20) / es * es
        let data = loc.data
        let base = loc.file.fileRange(loc.info).lowerBound
        var count = 0, first: Int?
        var offset = 0
        while offset < data.count {
            let end = min(data.count, offset + step)
            let r = NonFiniteScan.count(UnsafeRawBufferPointer(rebasing: data[offset..<end]), format: format)
            if let f = r.first, first == nil { first = offset / es + f }
            count += r.count
            if releasingPages { loc.file.mapped.adviseDone((base + offset)..<(base + end)) }
            offset = end
        }
        guard count == 0 else {
            throw ModelError.badTensor(file: loc.file.path, tensor: name,
                                       message: "\(count) NaN/Inf value(s), first at flat index \(first ?? 0): the source fails its integrity checks")
        }
    }
}
