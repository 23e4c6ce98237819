import ArgumentParser
import Checkpoints
import Compression
import DeepSeek
import Foundation
import JSON
import SafeTensors
import Sharding

struct Reshard: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cut a checkpoint into N tensor-parallel rank directories (experts split or whole), streaming.")

    @Argument(help: "Source checkpoint directory.")
    var source: String

    @Option(help: "Tensor-parallel size.")
    var tp: Int

    @Option(help: "Routed experts: tp (split each expert, the vLLM default; the default with --layout hf) or ep (whole experts per rank; the default, and the only choice, with --layout deepseek).")
    var experts: ExpertMode?

    @Option(help: "Output layout: hf (rank-NN/ Hugging Face directories, default) or deepseek (model{r}-mp{N}.safetensors with DeepSeek's tensor names, what DeepSeek-V3's inference/generate.py loads).")
    var layout = LayoutArgument.hf

    @Option(help: "Output directory (rank-00 … rank-N-1 and dsconv-manifest.json).")
    var out: String?

    @Option(name: .customLong("group-size"), help: "Quantization group size every row-parallel slice must align to.")
    var groupSize: Int?

    @OptionGroup var shardSize: ShardSizeOption
    var maxShardSize: String { shardSize.maxShardSize }

    @Flag(name: .customLong("dry-run"), help: "Print the plan and the bytes per rank; write nothing.")
    var dryRun = false

    @OptionGroup var compression: CompressionOptions
    var compress: Bool { compression.compress }
    var level: Int32 { compression.level }

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        if !dryRun && out == nil { throw ValidationError("--out is required (or --dry-run)") }
        // Beyond any real deployment, and bounded before anything is allocated per rank.
        if tp < 1 || tp > 4096 { throw ValidationError("--tp must be between 1 and 4096") }
        if let g = groupSize, g < 1 || g > 1 << 20 { throw ValidationError("--group-size must be between 1 and 1048576") }
    }

    func run() throws {
        try runCommand(json: json) {
            let ckpt = try OpenedCheckpoint.open(source, threads: threads.count).plain(for: "reshard")
            let outputLayout = layout.layout
            let mode = experts ?? (outputLayout is DeepSeekLayout ? .ep : .tp)
            if let g = groupSize, ckpt.config.quantization != nil {
                throw ModelError.badInput("--group-size \(g): \(source) is already quantized, and its slices are cut at its own groups; --group-size aligns a BF16 source for a later quantization")
            }
            let plan: ShardPlan
            do { plan = try ShardPlan(schema: ckpt.schema, tp: tp, experts: mode, groupSize: groupSize) } catch let e as PlanError {
                throw ModelError.badInput("\(source): \(e.message)")
            }
            if let why = outputLayout.refusal(plan: plan, compressed: compress) { throw ModelError.badInput(why) }
            let bytes = plan.bytesPerRank { ckpt.weights[$0.name]?.info.dtype.size ?? ckpt.expectedDType.size }
            if dryRun {
                printPlan(plan, ckpt: ckpt, bytes: bytes, layout: outputLayout)
                return Exit.ok
            }
            try Resharder.preflight(ckpt)
            guard let out, let shard = parseSize(maxShardSize) else { return Exit.badInput }
            let progress = Progress("reshard")
            let start = Date()
            var options = PackOptions()
            options.level = level
            let resharder = Resharder(source: ckpt, plan: plan, maxShardSize: shard, threads: threads.count, compress: compress ? options : nil,
                                      layout: outputLayout)
            let manifest = try OutputDirectory.write(out, force: force, inputs: [source], producer: "dsconv reshard") { output in
                try resharder.write(into: output) { i, n, name in progress.step(i, of: n, name) }
            }
            let seconds = Date().timeIntervalSince(start)
            let total = bytes.reduce(0, +)
            note(String(format: "wrote %@: %d ranks, %@ in %.1f s (%.2f GB/s)", out, tp, formatBytes(total), seconds, Double(total) / seconds / 1e9))
            if json {
                printJSON(["out": .string(out), "tp": JSONValue(tp), "experts": .string(mode.rawValue), "layout": .string(outputLayout.name),
                           "bytes_per_rank": JSONValue(bytes),
                           "files": JSONValue(manifest.ranks.reduce(0) { $0 + $1.files.count }), "seconds": .number(seconds)])
            }
            return Exit.ok
        }
    }

    func printPlan(_ plan: ShardPlan, ckpt: Checkpoint, bytes: [Int], layout: any ReshardLayout) {
        // One line per kind of tensor: how it splits, and the per-rank slice of its first instance.
        var seen: [String: PlannedSlice] = [:]
        var order: [String] = []
        for s in plan.ranks[0] {
            let key = s.role.kind + (s.dim.map { " dim \($0)" } ?? " whole")
            if seen[key] == nil { seen[key] = s; order.append(key) }
        }
        if json {
            printJSON(["tp": JSONValue(plan.tp), "experts": .string(plan.experts.rawValue), "bytes_per_rank": JSONValue(bytes),
                       "local_experts": .array(plan.localExperts.map { JSONValue($0) }),
                       "layout": .string(layout.name),
                       "ranks": .array(plan.ranks.map { r in .array(r.map { s in
                           ["name": .string(s.name), "stored_as": .string(layout.naming.name(s.role, s.component)), "dim": s.dim.map { JSONValue($0) } ?? .null, "offset": JSONValue(s.offset),
                            "length": JSONValue(s.length), "shape": JSONValue(s.shape)] }) })])
            return
        }
        print("plan: \(ckpt.directory) → tp \(plan.tp), layout \(layout.name), experts \(plan.experts.rawValue)\(plan.groupSize.map { ", group size \($0)" } ?? "")")
        for key in order {
            let s = seen[key]!
            let how = s.dim == nil ? "replicated/whole" : "split dim \(s.dim!): \(s.sourceShape) → \(s.shape) per rank"
            let stored = layout.naming.name(s.role, s.component)
            print("  \(key.padding(toLength: 24, withPad: " ", startingAt: 0)) e.g. \(s.name)\(stored == s.name ? "" : " (as \(stored))"): \(how)")
        }
        for (r, b) in bytes.enumerated() {
            print("  rank \(r): \(plan.ranks[r].count) tensors, \(formatBytes(b))\(plan.experts == .ep ? ", experts \(plan.localExperts[r].first ?? 0)…\(plan.localExperts[r].last ?? 0)" : "")")
        }
    }
}
