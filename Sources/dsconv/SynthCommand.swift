import ArgumentParser
import DeepSeek
import SafeTensors

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a random BF16 checkpoint with the real tensor names and shapes (full size or scaled down).")

    @Option(help: "Architecture to imitate: deepseek-v2.5 or deepseek-v2-lite.")
    var like: String

    @Option(help: "Decoder layers.") var layers: Int?
    @Option(help: "Routed experts per MoE layer.") var experts: Int?
    @Option(help: "Hidden size; other widths scale with it unless given.") var hidden: Int?
    @Option(help: "Dense MLP width.") var intermediate: Int?
    @Option(name: .customLong("moe-intermediate"), help: "Expert MLP width.") var moeIntermediate: Int?
    @Option(help: "Attention heads.") var heads: Int?
    @Option(help: "Vocabulary size.") var vocab: Int?
    @Option(name: .customLong("kv-lora-rank"), help: "KV latent width.") var kvLoraRank: Int?
    @Option(name: .customLong("q-lora-rank"), help: "Query LoRA width.") var qLoraRank: Int?
    @Option(name: .customLong("experts-per-token"), help: "Routed experts per token.") var expertsPerToken: Int?
    @Option(help: "Expert groups (group-limited routing).") var groups: Int?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Output directory.") var out: String
    @OptionGroup var shardSize: ShardSizeOption
    var maxShardSize: String { shardSize.maxShardSize }
    @Option(help: "Directory to copy tokenizer.json, tokenizer_config.json and the other side files (*.py, generation_config.json, LICENSE, README) from.") var tokenizer: String?
    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }
    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        guard ModelPreset(rawValue: like) != nil else {
            throw ValidationError("--like must be one of \(ModelPreset.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        for (v, n) in [(layers, "layers"), (experts, "experts"), (hidden, "hidden"), (heads, "heads"), (vocab, "vocab")] {
            if let v, v < 1 { throw ValidationError("--\(n) must be at least 1") }
        }
    }

    func run() throws {
        try runCommand {
            guard let preset = ModelPreset(rawValue: like), let shard = parseSize(maxShardSize) else { return Exit.badInput }
            var sizes = SynthSizes()
            sizes.layers = layers
            sizes.experts = experts
            sizes.hidden = hidden
            sizes.intermediate = intermediate
            sizes.moeIntermediate = moeIntermediate
            sizes.heads = heads
            sizes.vocab = vocab
            sizes.kvLoraRank = kvLoraRank
            sizes.qLoraRank = qLoraRank
            sizes.expertsPerToken = expertsPerToken
            sizes.groups = groups
            let config = try DeepSeek.Synth.config(like: preset, sizes: sizes)
            let schema = TensorSchema(config: config)
            let progress = Progress("synth")
            let total = schema.tensors.count
            var index = 0
            try OutputDirectory.write(out, force: force, inputs: tokenizer.map { [$0] } ?? [], producer: "dsconv synth") { output in
                try DeepSeek.Synth.write(config: config, seed: seed, out: output, maxShardSize: shard,
                                         tokenizerFrom: tokenizer, threads: threads.count) { name, bytes in
                    index += 1
                    progress.step(index, of: total, "\(name) \(formatBytes(bytes))")
                }
            }
            note("wrote \(out): \(formatCount(schema.totalParameters)) parameters, \(formatBytes(schema.totalParameters * 2))")
            return Exit.ok
        }
    }
}
