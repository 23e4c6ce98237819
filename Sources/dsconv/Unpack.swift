import ArgumentParser
import Checkpoints
import Compression
import DeepSeek
import Foundation
import JSON
import SafeTensors

struct Unpack: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restore a packed checkpoint byte for byte (sha256-checked).")

    @Argument(help: "Packed directory.")
    var directory: String

    @Option(help: "Output directory.")
    var out: String

    @OptionGroup var forceOption: ForceOption
    var force: Bool { forceOption.force }

    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try runCommand {
            let kind = CheckpointKind.detect(directory)
            guard kind == .packed else {
                throw ModelError.badInput("\(directory) is \(kind.noun); unpack reads a packed directory (\(PackManifest.fileName))")
            }
            try OutputDirectory.write(out, force: force, inputs: [directory], producer: "dsconv unpack") { output in
                try PackDirectory.unpack(directory, into: output, threads: threads.count) { name in note("unpacked \(name) (sha256 OK)") }
            }
            return Exit.ok
        }
    }
}
