import ArgumentParser
import Checkpoints
import Compression
import DeepSeek
import Foundation
import JSON
import ModelQuantizer
import Quantization
import SafeTensors
import Serving

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a BF16 checkpoint to int8 / int4 as compressed-tensors pack-quantized (what vLLM and transformers load).")

    @Argument(help: "Source BF16 checkpoint directory.")
    var source: String

    @Option(help: "Integer width: 8 (per output channel by default) or 4 (groups of 128 by default).")
    var bits: Int

    @Option(name: .customLong("group-size"), help: "Columns per scale (a power of two: 32, 64, 128), or 'channel'. Default: 128 for int4, per channel for int8; where vLLM refuses it at a --serve-tp size, a module takes the nearest scheme vLLM loads (smaller groups, per channel, group scales for experts on H100).")
    var groupSize: String?

    @Flag(help: "Asymmetric (with zero points). int4 only: vLLM has no MoE kernel for int8 with zero points, and transformers 5.24 drops the zero points of fused experts.")
    var asymmetric = false

    @Option(name: .customLong("serve-tp"), help: "Tensor-parallel sizes the output will be served at by vLLM, e.g. 8 or 1,2,4,8 (default: 1,2,4,8, those the model's heads allow).")
    var serveTP = "1,2,4,8"

    @Option(name: .customLong("serve-gpu"), help: "GPU generations it will be served on: a100 (8.0), h100 (9.0), or both (default: a100,h100).")
    var serveGPU = "a100,h100"

    @Option(help: "rtn (round to nearest), gptq or awq (calibrated).")
    var method = QuantizeOptions.Method.rtn

    @OptionGroup var calibration: CalibrationOptions

    @Option(help: "With --method awq: search scales and clips on this `dsconv calibrate` statistics file instead of running calibration text (one calibration, many quantizations).")
    var stats: String?

    @Flag(name: .customLong("no-act-order"), help: "GPTQ: process columns in their order instead of by descending Hessian diagonal.")
    var noActOrder = false

    @Option(name: .customLong("hessian-memory"), help: "GPTQ: most memory for routed experts' Hessians at once, e.g. 1GB (default). A layer's experts are calibrated in groups that fit, each group one pass over the layer's stored MoE inputs; results do not depend on it.")
    var hessianMemory = "1GB"

    @Option(help: "Keep modules whose name matches this regex in BF16 (repeatable).")
    var ignore: [String] = []

    @Flag(name: .customLong("quantize-kv-b"), help: "Quantize kv_b_proj too (kept BF16 by default).")
    var quantizeKvB = false

    @Flag(name: .customLong("group-fallback"), help: "Choose by divisibility alone, engines aside: widths the group does not divide get the largest power-of-two group that does.")
    var groupFallback = false

    @Flag(name: .customLong("keep-unfit"), help: "Choose by divisibility alone, engines aside: widths the group does not divide stay BF16.")
    var keepUnfit = false

    @Flag(name: .customLong("strict-groups"), help: "Refuse widths the group does not divide (engines aside).")
    var strictGroups = false

    @Option(help: "Output directory.")
    var out: String

    @OptionGroup var compression: CompressionOptions
    var compress: Bool { compression.compress }
    var level: Int32 { compression.level }

    @OptionGroup var shardSize: ShardSizeOption
    var maxShardSize: String { shardSize.maxShardSize }

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        guard QuantScheme.supportedBits.contains(bits) else { throw ValidationError("--bits \(bits): 4 or 8 expected") }
        guard parseSize(hessianMemory) != nil else { throw ValidationError("--hessian-memory \(hessianMemory) is not a size between 1 byte and 1 PB") }
        if [groupFallback, strictGroups, keepUnfit].filter({ $0 }).count > 1 { throw ValidationError("--group-fallback, --keep-unfit and --strict-groups exclude each other") }
        _ = try parsedGroupSize()
        _ = try parsedServing()
        if asymmetric && bits == 8 {
            throw ValidationError("--bits 8 --asymmetric: no vLLM MoE kernel takes int8 with zero points (vLLM 0.34 refuses it at every tensor-parallel size) and transformers 5.24 drops fused experts' zero points; use --bits 8 (symmetric), or --bits 4 --asymmetric")
        }
        if stats != nil {
            if method == .gptq {
                throw ValidationError("--stats with --method gptq: GPTQ needs each input's full second-moment matrix (its Hessian), which a statistics file does not hold; give --text (or nothing, for the builtin set)")
            }
            if method != .awq { throw ValidationError("--stats is used by --method awq only (rtn needs no calibration)") }
            if calibration.text != nil { throw ValidationError("give --stats or --text, not both") }
        }
    }

    /// nil: per channel.
    func parsedGroupSize() throws -> Int? {
        guard let text = groupSize else { return bits == 4 ? 128 : nil }
        if text == "channel" { return nil }
        guard let g = Int(text), g >= 1, g & (g - 1) == 0 else {
            throw ValidationError("--group-size \(text): a power of two expected (32, 64, 128), or 'channel'")
        }
        return g
    }

    func parsedServing() throws -> (tps: [Int], gpus: [GPUGeneration]) {
        var tps: [Int] = []
        for part in serveTP.split(separator: ",", omittingEmptySubsequences: false) {
            guard let tp = Int(part), VLLMTarget.tensorParallelSizes.contains(tp) else {
                throw ValidationError("--serve-tp \(serveTP): sizes among 1, 2, 4, 8 expected, comma-separated")
            }
            if !tps.contains(tp) { tps.append(tp) }
        }
        var gpus: [GPUGeneration] = []
        for part in serveGPU.split(separator: ",", omittingEmptySubsequences: false) {
            guard let g = GPUGeneration(argument: String(part)) else {
                throw ValidationError("--serve-gpu \(serveGPU): a100 (8.0) or h100 (9.0) expected, comma-separated")
            }
            if !gpus.contains(g) { gpus.append(g) }
        }
        return (tps.sorted(), gpus.sorted())
    }

    func run() throws {
        try runCommand(json: json) {
            var options = QuantizeOptions()
            options.bits = bits
            options.groupSize = try parsedGroupSize()
            (options.servingTPs, options.servingGPUs) = try parsedServing()
            options.symmetric = !asymmetric
            options.method = method
            options.ignore = ignore
            options.quantizeKvB = quantizeKvB
            options.groupMismatch = groupFallback ? .fallback : strictGroups ? .refuse : keepUnfit ? .keep : .serve
            options.threads = threads.count
            options.maxShardSize = parseSize(maxShardSize) ?? 5_000_000_000
            let ckpt = try OpenedCheckpoint.open(source, threads: threads.count).plain(for: "quantize")
            let plan = try QuantizePlan(schema: ckpt.schema, options: options)
            let calibrationInput: ProviderChoice.Calibration
            switch options.method {
            case .rtn: calibrationInput = .none
            case .awq where stats != nil:
                calibrationInput = .statistics(try CalibrationMoments.read(path: stats ?? "", schema: ckpt.schema))
                note("awq: statistics from \(stats ?? "")")
            case .gptq, .awq:
                calibrationInput = .windows(try calibration.windows(source: source, config: ckpt.config),
                                            allTokensThroughExperts: calibration.allTokensThroughExperts, backend: calibration.backend)
            }
            let provider = try ProviderChoice.make(source: ckpt, plan: plan, calibration: calibrationInput, actOrder: !noActOrder,
                                                   hessianMemory: parseSize(hessianMemory) ?? 1 << 30) { note($0) }
            let quantizer = try ModelQuantizer(source: ckpt, plan: plan, provider: provider)
            let progress = Progress("quantize")
            let start = Date()
            let reports = try OutputDirectory.write(out, force: force, inputs: [source] + (stats.map { [$0] } ?? []) + (calibration.text.map { [$0] } ?? []), producer: "dsconv quantize") { output in
                var pack = PackOptions()
                pack.level = level
                pack.threads = threads.count
                return try quantizer.write(into: output, compress: compress ? pack : nil) { i, n, report in
                    // The report: one line per tensor (not throttled); the bar on a TTY.
                    if let r = report { note(Self.line(r)) }
                    progress.update(done: i, total: n)
                }
            }
            let seconds = Date().timeIntervalSince(start)
            let before = ckpt.weights.tensors.reduce(0) { $0 + $1.info.byteCount }
            let after = try quantizer.specs().reduce(0) { $0 + $1.byteCount }
            let parameters = ckpt.schema.totalParameters
            let bpw = 8 * Double(after) / Double(max(parameters, 1))
            note(String(format: "wrote %@: %@ → %@ (%.2f bits per weight) in %.1f s", out, formatBytes(before), formatBytes(after), bpw, seconds))
            for n in plan.servingNotes { note("serving: " + n) }
            // What each engine will do with what was written (as `dsconv inspect OUT` says).
            let written = try OpenedCheckpoint.open(out, threads: 1)
            let engines = try Inspect.engineStatements(written, directory: out)
            Inspect.printServing(engines, to: note)
            if json {
                printJSON(["out": .string(out), "bits": JSONValue(bits), "group_size": options.groupSize.map { JSONValue($0) } ?? .null,
                           "symmetric": .bool(!asymmetric), "method": .string(method.rawValue), "bytes_before": JSONValue(before),
                           "bytes_after": JSONValue(after), "bits_per_weight": .number(bpw), "seconds": .number(seconds),
                           "serving": Inspect.servingJSON(engines), "serving_notes": JSONValue(plan.servingNotes),
                           "tensors": .array(reports.map(\.json))])
            }
            return Exit.ok
        }
    }

    static func line(_ r: TensorReport) -> String {
        let err = r.relativeError.map { String(format: ", rel. error %.4f", $0) } ?? ""
        return "\(r.name) \(r.shape): \(r.treatment), \(formatBytes(r.bytesBefore)) → \(formatBytes(r.bytesAfter))\(err)"
    }
}
