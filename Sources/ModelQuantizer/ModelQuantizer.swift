import Compression
import DeepSeek
import Foundation
import JSON
import Kernels
import CKernels
import Quantization
import SafeTensors

/// One line of the quantize report.
public struct TensorReport: Sendable {
    public let name: String
    public let shape: [Int]
    /// The scheme, or "kept BF16: why".
    public let treatment: String
    public let bytesBefore: Int
    public let bytesAfter: Int
    /// ‖W − dequant(Q(W))‖ / ‖W‖ for quantized weights.
    public let relativeError: Double?

    public var json: JSONValue {
        ["name": .string(name), "shape": JSONValue(shape), "treatment": .string(treatment), "bytes_before": JSONValue(bytesBefore),
         "bytes_after": JSONValue(bytesAfter), "relative_error": relativeError.map { .number($0) } ?? .null]
    }
}

/// Where quantized weights come from: RTN computes each on demand; GPTQ and AWQ compute a layer's
/// weights when its first one is asked for (the writer goes in checkpoint order, layer by layer).
public protocol QuantizedWeightProvider: AnyObject {
    func quantized(_ role: TensorRole, scheme: QuantScheme) throws -> QuantizedTensor
    /// True when `quantized` may run on another thread while the writer writes (no shared
    /// state between calls): the writer then quantizes the next tensor while it writes this one.
    var quantizesIndependently: Bool { get }
    /// New bf16 values for an unquantized tensor (AWQ's folded norms and router); nil: the source's.
    func replacement(_ role: TensorRole) throws -> [UInt16]?
}

extension QuantizedWeightProvider {
    public func replacement(_ role: TensorRole) throws -> [UInt16]? { nil }
    public var quantizesIndependently: Bool { false }
}

/// Round to nearest from the source weights, rows spread over threads.
public final class RTNProvider: QuantizedWeightProvider, @unchecked Sendable {
    let source: Checkpoint
    let threads: Int
    public var quantizesIndependently: Bool { true }
    public init(source: Checkpoint, threads: Int) {
        self.source = source
        self.threads = threads
    }

    public func quantized(_ role: TensorRole, scheme: QuantScheme) throws -> QuantizedTensor {
        let w = try source.matrix(role)
        return try ParallelQuantize.rtn(w, scheme: scheme, threads: threads, name: role.name)
    }
}

enum ParallelQuantize {
    static func rtn(_ w: WeightMatrix, scheme: QuantScheme, threads: Int, name: String) throws -> QuantizedTensor {
        guard w.format == .bf16 else {
            throw ModelError.unsupported("\(name): quantization reads BF16 weights; this one is \(w.format)")
        }
        let rows = w.rows, cols = w.cols
        let base = UnsafeSendable(w.bytes.baseAddress!.assumingMemoryBound(to: UInt16.self))
        let chunk = max(1, min(256, (rows + threads - 1) / threads))
        let pieces = (rows + chunk - 1) / chunk
        let words = scheme.packedWords(cols: cols), groups = scheme.groups(cols: cols)
        // Each piece of rows writes its own part of the three output arrays.
        var scale: [UInt16] = [], zeroPoint: [Int8]? = nil
        let packed = [Int32](unsafeUninitializedCapacity: rows * words) { p, count in
            scale = [UInt16](unsafeUninitializedCapacity: rows * groups) { s, scount in
                let z = scheme.symmetric ? nil : UnsafeMutablePointer<Int8>.allocate(capacity: rows * groups)
                let out = UnsafeSendable((p.baseAddress!, s.baseAddress!, z))
                parallelFor(pieces, threads: threads) { piece in
                    let r0 = piece * chunk, n = min(chunk, rows - r0)
                    RoundToNearest.quantizeRows(base.value + r0 * cols, rows: n, cols: cols, scheme: scheme, packed: out.value.0 + r0 * words,
                                                scale: out.value.1 + r0 * groups, zeroPoint: out.value.2.map { $0 + r0 * groups })
                }
                if let z {
                    zeroPoint = Array(UnsafeBufferPointer(start: z, count: rows * groups))
                    z.deallocate()
                }
                scount = rows * groups
            }
            count = rows * words
        }
        return QuantizedTensor(rows: rows, cols: cols, scheme: scheme, packed: packed, scale: scale, zeroPoint: zeroPoint)
    }
}

/// Writes a compressed-tensors `pack-quantized` checkpoint from a BF16 one, streaming in
/// checkpoint order: unquantized tensors copied byte for byte, quantized modules as their
/// packed components (Formats/quantized.md).
public final class ModelQuantizer {
    public let source: Checkpoint
    public let plan: QuantizePlan
    public let outputConfigText: String
    public let outputSchema: TensorSchema
    let provider: QuantizedWeightProvider

    public init(source: Checkpoint, plan: QuantizePlan, provider: QuantizedWeightProvider) throws {
        self.source = source
        self.plan = plan
        self.provider = provider
        guard source.config.quantization == nil else {
            throw ModelError.badInput("\(source.directory): already quantized (config.json has quantization_config); quantize a BF16 checkpoint")
        }
        guard source.expectedDType == .bf16 else {
            throw ModelError.unsupported("\(source.directory): torch_dtype \(source.config.torchDtype); quantize reads BF16 checkpoints")
        }
        // config.json as the source wrote it, plus quantization_config.
        let path = source.directory + "/config.json"
        guard case .object(var object) = try JSONParser.parse(try readWholeFile(path)) else {
            throw ModelError.invalidConfig(file: path, field: "", message: "not a JSON object")
        }
        object["quantization_config"] = plan.quantization.json
        outputConfigText = JSONValue.object(object).serialized(pretty: true) + "\n"
        var config = source.config
        config.quantization = plan.quantization
        outputSchema = TensorSchema(config: config)
        // The config must say exactly what the plan decided.
        for t in source.schema.tensors where t.role.isLinear {
            guard outputSchema.quantizedRoles[t.role] == plan.scheme(t.role) else {
                preconditionFailure("\(t.role.moduleName): quantization_config and the plan disagree")
            }
        }
    }

    /// The output tensors, in order.
    public func specs() throws -> [TensorSpec] {
        try outputSchema.tensors.map { t in
            if t.component == .weight {
                let loc = try source.tensor(t.role)
                return TensorSpec(name: t.name, dtype: loc.info.dtype, shape: loc.info.shape)
            }
            return TensorSpec(name: t.name, dtype: t.dtype ?? source.expectedDType, shape: t.shape)
        }
    }

    /// `compress`: shards packed as they are written (seekable zstd, as `dsconv pack`), with a pack
    /// manifest; `verify` and `eval` run the packed output, `unpack` restores the plain one.
    public func write(into out: OutputDirectory, compress: PackOptions? = nil,
                      progress: ((Int, Int, TensorReport?) -> Void)? = nil) throws -> [TensorReport] {
        let specs = try specs()
        let metadata = ["format": "pt", "producer": "dsconv quantize"]
        let layout = ShardLayout(tensors: specs, maxShardSize: plan.options.maxShardSize)
        let writer = compress.map { ShardedWriter.packing(directory: out.partialPath, layout: layout, options: $0, metadata: metadata) }
            ?? ShardedWriter(directory: out.partialPath, layout: layout, metadata: metadata)
        var reports: [TensorReport] = []
        var current: (role: TensorRole, tensor: QuantizedTensor)?
        let lookahead = provider.quantizesIndependently ? Lookahead(provider: provider, threads: plan.options.threads) : nil
        defer { lookahead?.wait() }
        let packedIndices = outputSchema.tensors.indices.filter { outputSchema.tensors[$0].component == .weightPacked }
        try DerivedCheckpoint.write(into: out, configText: outputConfigText, sideFilesFrom: source.directory, writer: writer,
                                    finish: { w in if let compress { _ = try w.writePackManifest(options: compress) } }) { writer in
            for (i, t) in outputSchema.tensors.enumerated() {
                var report: TensorReport?
                switch t.component {
                case .weight:
                    let loc = try source.tensor(t.role)
                    try IntegrityCheck.requireFinite(loc, name: t.name)
                    if let new = try provider.replacement(t.role) {
                        guard loc.info.dtype == .bf16, new.count == loc.info.elementCount else {
                            preconditionFailure("\(t.name): replacement does not match \(loc.info.dtype.rawValue) \(loc.info.shape)")
                        }
                        try new.withUnsafeBytes { try writer.write(t.name, from: .bytes($0)) }
                    } else {
                        try writer.write(t.name, from: .bytes(loc.data))
                    }
                    loc.file.mapped.adviseDone(loc.file.fileRange(loc.info))
                    if t.role.isLinear, case .keep(let why)? = plan.decisions[t.role] {
                        report = TensorReport(name: t.name, shape: loc.info.shape, treatment: "kept \(loc.info.dtype.rawValue): \(why)",
                                              bytesBefore: loc.info.byteCount, bytesAfter: loc.info.byteCount, relativeError: nil)
                    }
                case .weightPacked:
                    guard let scheme = t.scheme else { preconditionFailure("\(t.name) has no scheme") }
                    let loc = try source.tensor(t.role)
                    try IntegrityCheck.requireFinite(loc, name: t.role.name)
                    let (q, error) = try lookahead?.take(t.role)
                        ?? { let q = try provider.quantized(t.role, scheme: scheme)
                             return (q, Self.relativeError(original: loc.data, quantized: q, threads: plan.options.threads)) }()
                    // Quantize the next one while this one is written.
                    if let lookahead, let next = packedIndices.first(where: { $0 > i }), let nextScheme = outputSchema.tensors[next].scheme {
                        let role = outputSchema.tensors[next].role
                        lookahead.start(role, scheme: nextScheme, original: try source.tensor(role).data)
                    }
                    current = (t.role, q)
                    try q.packed.withUnsafeBytes { try writer.write(t.name, from: .bytes($0)) }
                    let zeroPointWords = scheme.symmetric ? 0 : scheme.packedWords(cols: q.rows) * q.groups
                    let after = q.packed.count * 4 + q.scale.count * 2 + 16 + zeroPointWords * 4
                    report = TensorReport(name: t.role.name, shape: loc.info.shape, treatment: scheme.description,
                                          bytesBefore: loc.info.byteCount, bytesAfter: after, relativeError: error)
                    loc.file.mapped.adviseDone(loc.file.fileRange(loc.info))
                case .weightScale, .weightShape, .weightZeroPoint:
                    guard let c = current, c.role == t.role else { preconditionFailure("\(t.name) before its weight_packed") }
                    switch t.component {
                    case .weightScale: try c.tensor.scale.withUnsafeBytes { try writer.write(t.name, from: .bytes($0)) }
                    case .weightShape: try [Int64(c.tensor.rows), Int64(c.tensor.cols)].withUnsafeBytes { try writer.write(t.name, from: .bytes($0)) }
                    default: try (c.tensor.packedZeroPoint() ?? []).withUnsafeBytes { try writer.write(t.name, from: .bytes($0)) }
                    }
                }
                if let report { reports.append(report) }
                progress?(i + 1, outputSchema.tensors.count, report)
            }
        }
        return reports
    }

    /// One quantization (and its error figure) running on another thread while the writer writes.
    final class Lookahead: @unchecked Sendable {
        let provider: QuantizedWeightProvider
        let threads: Int
        private let group = DispatchGroup()
        private var role: TensorRole?
        private var result: Result<(QuantizedTensor, Double), Error>?

        init(provider: QuantizedWeightProvider, threads: Int) {
            self.provider = provider
            self.threads = threads
        }

        func start(_ role: TensorRole, scheme: QuantScheme, original: UnsafeRawBufferPointer) {
            wait()
            self.role = role
            result = nil
            let bytes = UnsafeSendable(original)
            group.enter()
            Thread.detachNewThread { [self] in
                result = Result {
                    let q = try provider.quantized(role, scheme: scheme)
                    return (q, ModelQuantizer.relativeError(original: bytes.value, quantized: q, threads: threads))
                }
                group.leave()
            }
        }

        /// The result for `role` if it was started; nil otherwise.
        func take(_ role: TensorRole) throws -> (QuantizedTensor, Double)? {
            wait()
            guard self.role == role, let r = result else { return nil }
            self.role = nil
            result = nil
            return try r.get()
        }

        func wait() { group.wait() }
    }

    /// ‖W − dequant‖ / ‖W‖, rows spread over threads, straight from the packed words. Weights
    /// over 1024 rows are measured on every eighth block of 256 rows (a report figure, not a check).
    static func relativeError(original: UnsafeRawBufferPointer, quantized q: QuantizedTensor, threads: Int) -> Double {
        let chunk = max(1, min(256, (q.rows + threads - 1) / threads)), pieces = (q.rows + chunk - 1) / chunk
        let sums = Locked((0.0, 0.0))
        let w = UnsafeSendable(original.baseAddress!.assumingMemoryBound(to: UInt16.self))
        let words = q.scheme.packedWords(cols: q.cols), groups = q.groups, gw = q.scheme.groupWidth(cols: q.cols)
        q.packed.withUnsafeBufferPointer { p in
            q.scale.withUnsafeBufferPointer { s in
                (q.zeroPoint ?? []).withUnsafeBufferPointer { z in
                    let pp = UnsafeSendable(p.baseAddress!), sp = UnsafeSendable(s.baseAddress!)
                    let zp = UnsafeSendable(q.zeroPoint == nil ? nil : z.baseAddress)
                    let stride = q.rows > 1024 ? 8 : 1
                    parallelFor((pieces + stride - 1) / stride, threads: threads) { j in
                        let i = j * stride
                        let r0 = i * chunk, n = min(chunk, q.rows - r0)
                        var e = 0.0, nn = 0.0
                        dsk_quant_sq_error(w.value + r0 * q.cols, pp.value + r0 * words, n, q.cols, Int32(q.scheme.bits), gw,
                                           sp.value + r0 * groups, zp.value.map { $0 + r0 * groups }, &e, &nn)
                        sums.withLock { $0.0 += e; $0.1 += nn }
                    }
                }
            }
        }
        let (e, n) = sums.withLock { $0 }
        return n > 0 ? (e / n).squareRoot() : 0
    }
}
