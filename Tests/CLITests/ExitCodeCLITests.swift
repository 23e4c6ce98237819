import Foundation
import JSON
import TestSupport
import Testing

/// One kind of failure, one exit code, whichever command finds it (issue #9): damaged checkpoint
/// data exits 1 from every command that reads it, bad input exits 2, and nothing is written.
@Suite struct ExitCodeCLITests {
    static let tiny = CLI.fixtures + "/tiny-dsv2.5"
    let fm = FileManager.default

    enum Damage: String, CaseIterable {
        case truncated, malformedHeader, nonFinite, droppedFromIndex, shardRemoved
    }

    /// The tiny model with one kind of damage; files not touched are links.
    func damaged(_ dir: String, _ damage: Damage) throws -> String {
        let out = dir + "/" + damage.rawValue
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let index = try JSONParser.parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.tiny + "/model.safetensors.index.json"))))
        let tensor = "model.layers.1.mlp.experts.1.up_proj.weight"
        let shard = try #require(index["weight_map"]?[tensor]?.stringValue)
        for name in try fm.contentsOfDirectory(atPath: Self.tiny) {
            if name == shard || name == "model.safetensors.index.json" {
                try fm.copyItem(atPath: Self.tiny + "/" + name, toPath: out + "/" + name)
            } else {
                try fm.createSymbolicLink(atPath: out + "/" + name, withDestinationPath: Self.tiny + "/" + name)
            }
        }
        let path = out + "/" + shard
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        switch damage {
        case .truncated:
            bytes.removeLast(1000)
        case .malformedHeader:
            for i in 8..<20 { bytes[i] = UInt8(ascii: "{") }
        case .nonFinite:
            let header = try JSONParser.parse(Array(bytes[8..<(8 + headerLength)]))
            let start = Int(try #require(header[tensor]?["data_offsets"]?.arrayValue?.first?.integerValue))
            bytes[8 + headerLength + start] = 0xc0
            bytes[8 + headerLength + start + 1] = 0x7f  // a bf16 NaN
        case .droppedFromIndex:
            var text = try String(contentsOfFile: out + "/model.safetensors.index.json", encoding: .utf8)
            let entry = "\"\(tensor)\": \"\(shard)\","
            #expect(text.contains(entry))
            text = text.replacingOccurrences(of: entry, with: "")
            try fm.removeItem(atPath: out + "/model.safetensors.index.json")
            try text.write(toFile: out + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        case .shardRemoved:
            try fm.removeItem(atPath: path)
            return out
        }
        try fm.removeItem(atPath: path)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return out
    }

    @Test func damagedDataExitsOneFromEveryCommand() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        for damage in Damage.allCases {
            let model = try damaged(dir, damage)
            var commands: [[String]] = [
                ["verify", model], ["verify", model, "--json"], ["verify", model, "--prompt", "hi", "--max-new-tokens", "1"],
                ["reshard", model, "--tp", "2", "--out", dir + "/out"], ["quantize", model, "--bits", "8", "--out", dir + "/out"],
            ]
            // inspect and pack read metadata and bytes, not values: a NaN is verify's, reshard's and quantize's to find.
            if damage != .nonFinite { commands += [["inspect", model], ["pack", model, "--out", dir + "/out"]] }
            for args in commands {
                let r = try CLI.run(args)
                #expect(r.code == 1, "\(damage): \(args.first ?? "") exited \(r.code): \(r.stderr.suffix(300))")
                #expect(!fm.fileExists(atPath: dir + "/out"), "\(damage): \(args.first ?? "") left an output")
                if args.contains("--json") {
                    let doc = try JSONParser.parse(Array(r.stdout.utf8))
                    #expect(doc["ok"]?.boolValue == false && doc["exit_code"]?.integerValue == 1, "\(damage): \(r.stdout)")
                }
            }
        }
    }

    @Test func badInputExitsTwoFromEveryCommand() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = dir + "/model"
        try fm.createDirectory(atPath: model, withIntermediateDirectories: true)
        for name in try fm.contentsOfDirectory(atPath: Self.tiny) where name != "config.json" {
            try fm.createSymbolicLink(atPath: model + "/" + name, withDestinationPath: Self.tiny + "/" + name)
        }
        for config in ["{\"model_type\": ", "{\"rope_theta\": 0}"] {
            var text = config
            if config.hasPrefix("{\"rope_theta\"") {
                text = try String(contentsOfFile: Self.tiny + "/config.json", encoding: .utf8)
                    .replacingOccurrences(of: "\"rope_theta\": 10000", with: "\"rope_theta\": 0")
                #expect(text.contains("\"rope_theta\": 0"))
            }
            try? fm.removeItem(atPath: model + "/config.json")
            try text.write(toFile: model + "/config.json", atomically: true, encoding: .utf8)
            for args in [["inspect", model], ["verify", model], ["reshard", model, "--tp", "2", "--out", dir + "/out"],
                         ["quantize", model, "--bits", "8", "--out", dir + "/out"], ["pack", model, "--out", dir + "/out"]] {
                let r = try CLI.run(args)
                #expect(r.code == 2, "\(config): \(args.first ?? "") exited \(r.code): \(r.stderr.suffix(300))")
                #expect(!fm.fileExists(atPath: dir + "/out"))
            }
        }
    }
}
