import ArgumentParser
import Compression
import ModelQuantizer
import Sharding

/// `--json`: one JSON object on stdout, on failure too (human text and progress on stderr).
struct JSONOption: ParsableArguments {
    @Flag(help: "Print one JSON object on stdout (on failure too).")
    var json = false
}

/// `--force`: replace an existing output, only one dsconv wrote (Formats/output-directories.md).
struct ForceOption: ParsableArguments {
    @Flag(help: "Replace an existing output that dsconv wrote (never anything else).")
    var force = false
}

/// `--max-shard-size`: the largest safetensors shard an output is cut into.
struct ShardSizeOption: ParsableArguments {
    @Option(name: .customLong("max-shard-size"), help: "Largest shard, e.g. 5GB (default) or 200MB.")
    var maxShardSize = "5GB"

    func validate() throws {
        guard parseSize(maxShardSize) != nil else { throw ValidationError("--max-shard-size \(maxShardSize) is not a size between 1 byte and 1 PB (e.g. 5GB, 200MB)") }
    }

    var bytes: Int { parseSize(maxShardSize) ?? 5_000_000_000 }
}

/// `--level`: the zstd level of packed output.
struct ZstdLevelOption: ParsableArguments {
    @Option(help: "zstd level, -7...22 (1 = fast; higher barely helps on weights).")
    var level: Int32 = 1

    func validate() throws {
        guard (-7...22).contains(level) else { throw ValidationError("--level must be in -7...22") }
    }
}

/// `--compress [--level N]`: shards packed as they are written (seekable zstd, as dsconv pack).
struct CompressionOptions: ParsableArguments {
    @Flag(help: "Write packed shards (seekable zstd, as dsconv pack) directly, in the same pass; verify and eval run them as they are, unpack restores the plain output.")
    var compress = false

    @OptionGroup var zstd: ZstdLevelOption

    var level: Int32 { zstd.level }
}

// Enumerated flags, parsed once by ArgumentParser (which lists the choices on a bad value).
extension QuantizeOptions.Method: ExpressibleByArgument {}
extension ExpertMode: ExpressibleByArgument {}
extension FrameTransform: ExpressibleByArgument {}

/// `calibrate`/`quantize --expert-tokens`.
enum ExpertTokens: String, CaseIterable, ExpressibleByArgument {
    /// Each routed expert sees its own tokens.
    case routed
    /// Every token through every expert (only routed outputs count).
    case all
}

/// `reshard --layout`: the output layouts by the name the manifest records.
enum LayoutArgument: String, CaseIterable, ExpressibleByArgument {
    case hf, deepseek

    var layout: any ReshardLayout { self == .deepseek ? DeepSeekLayout() : HuggingFaceRankLayout() }
}
