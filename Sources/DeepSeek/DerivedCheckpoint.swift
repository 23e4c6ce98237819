import SafeTensors

/// The one writer of derived checkpoints (`quantize`, `dequantize`, `merge`, `synth`): the
/// output's config.json, the side files of the directory it derives from
/// (`Checkpoint.sideFiles`: remote code, generation and tokenizer files, LICENSE, README), then
/// the tensors through a sharded writer, finished, or aborted on any error so that no
/// half-written shard remains (the output directory itself is swapped in only on success).
public enum DerivedCheckpoint {
    /// `sideFilesFrom`: the directory whose side files are copied (nil: none); `requiredFiles`:
    /// files copied from it whether or not they count as side files (missing ones are an error).
    /// `finish`: what follows the last shard (a pack manifest).
    public static func write(into out: OutputDirectory, configText: String, sideFilesFrom source: String?,
                             requiredFiles: [String] = [], writer: ShardedWriter,
                             finish: ((ShardedWriter) throws -> Void)? = nil,
                             tensors body: (ShardedWriter) throws -> Void) throws {
        try writeFileAtomically(out.path("config.json"), configText)
        if let source {
            for f in Set(requiredFiles + Checkpoint.sideFiles(in: source)).sorted() {
                try copyFile(from: source + "/" + f, to: out.path(f))
            }
        }
        do {
            try body(writer)
            try writer.finish()
            try finish?(writer)
        } catch {
            writer.abort()
            throw error
        }
    }
}
