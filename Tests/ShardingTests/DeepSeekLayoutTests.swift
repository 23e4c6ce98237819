import DeepSeek
import Foundation
import Kernels
import SafeTensors
import TestSupport
import Testing

@testable import Sharding

/// `reshard --layout deepseek` against what DeepSeek's own `inference/convert.py` (DeepSeek-V3
/// repository) writes. The expectation is derived here from its published `mapping` table and
/// its algorithm, not from dsconv's schema or plan: a second, independent statement of the layout.
/// (`Scripts/check-deepseek-convert.py` runs the real convert.py and compares tensor by tensor.)
enum ConvertPy {
    /// convert.py's `mapping`: Hugging Face module name → (DeepSeek name, split dim or nil).
    static let mapping: [String: (String, Int?)] = [
        "embed_tokens": ("embed", 0), "input_layernorm": ("attn_norm", nil), "post_attention_layernorm": ("ffn_norm", nil),
        "q_proj": ("wq", 0), "q_a_proj": ("wq_a", nil), "q_a_layernorm": ("q_norm", nil), "q_b_proj": ("wq_b", 0),
        "kv_a_proj_with_mqa": ("wkv_a", nil), "kv_a_layernorm": ("kv_norm", nil), "kv_b_proj": ("wkv_b", 0),
        "o_proj": ("wo", 1), "gate": ("gate", nil), "gate_proj": ("w1", 0), "down_proj": ("w2", 1), "up_proj": ("w3", 0),
        "norm": ("norm", nil), "lm_head": ("head", 0), "scale": ("scale", nil),
    ]

    /// One expected tensor of one rank.
    struct Expected {
        let name: String
        let shape: [Int]
        let bytes: [UInt8]
    }

    /// convert.py's loop: rename, then per rank skip non-local routed experts, narrow along dim.
    static func expected(source: ShardedCheckpoint, experts: Int, mp: Int) throws -> [[String: Expected]] {
        var ranks = Array(repeating: [String: Expected](), count: mp)
        let local = experts / mp
        for t in source.tensors {
            var name = t.info.name
            if name.hasPrefix("model.") { name.removeFirst("model.".count) }
            name = name.replacingOccurrences(of: "self_attn", with: "attn").replacingOccurrences(of: "mlp", with: "ffn")
            let parts = name.split(separator: ".").map(String.init)
            let key = parts[parts.count - 2]
            let (newKey, dim) = try #require(mapping[key], "key \(key) not in convert.py's mapping")
            name = name.replacingOccurrences(of: key, with: newKey)
            let bytes = [UInt8](t.data)
            let shape = t.info.shape
            let es = t.info.dtype.size
            for r in 0..<mp {
                let p = name.split(separator: ".").map(String.init)
                if name.contains("experts") && !name.contains("shared_experts") {
                    let idx = try #require(Int(p[p.count - 3]))
                    if idx < r * local || idx >= (r + 1) * local { continue }
                    ranks[r][name] = Expected(name: name, shape: shape, bytes: bytes)
                } else if let dim {
                    #expect(shape[dim] % mp == 0)
                    let per = shape[dim] / mp
                    var s = shape
                    s[dim] = per
                    if dim == 0 {
                        let row = shape.dropFirst().reduce(es, *)
                        ranks[r][name] = Expected(name: name, shape: s, bytes: Array(bytes[(r * per * row)..<((r + 1) * per * row)]))
                    } else {
                        var out: [UInt8] = []
                        for i in 0..<shape[0] {
                            let start = (i * shape[1] + r * per) * es
                            out += bytes[start..<(start + per * es)]
                        }
                        ranks[r][name] = Expected(name: name, shape: s, bytes: out)
                    }
                } else {
                    ranks[r][name] = Expected(name: name, shape: shape, bytes: bytes)
                }
            }
        }
        return ranks
    }
}

@Suite struct DeepSeekLayoutTests {
    static let source = try! Checkpoint(directory: Fixtures.tiny)

    static func reshard(tp: Int, to path: String) throws -> ReshardManifest {
        let plan = try ShardPlan(schema: source.schema, tp: tp, experts: .ep)
        let out = try OutputDirectory(path, force: false)
        let m = try Resharder(source: source, plan: plan, maxShardSize: 1 << 30, threads: 2, layout: DeepSeekLayout()).write(into: out)
        try out.commit()
        return m
    }

    @Test(arguments: [1, 2, 4]) func everyNameShapeAndSliceIsWhatConvertPyWrites(tp: Int) throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let manifest = try Self.reshard(tp: tp, to: dir + "/ds")
        #expect(manifest.layout == "deepseek")
        let expected = try ConvertPy.expected(source: Self.source.weights, experts: Self.source.config.nRoutedExperts ?? 0, mp: tp)
        let files = try listDirectory(dir + "/ds").filter { $0.hasSuffix(".safetensors") }.sorted()
        #expect(files == (0..<tp).map { "model\($0)-mp\(tp).safetensors" }.sorted())
        for r in 0..<tp {
            let f = try SafeTensorsFile(path: dir + "/ds/model\(r)-mp\(tp).safetensors")
            #expect(Set(f.tensors.map(\.name)) == Set(expected[r].keys), "rank \(r) names")
            for t in f.tensors {
                guard let e = expected[r][t.name] else { continue }
                #expect(t.shape == e.shape, "rank \(r) \(t.name): \(t.shape) vs convert.py \(e.shape)")
                #expect(t.dtype == .bf16)
                #expect([UInt8](f.data(t)) == e.bytes, "rank \(r) \(t.name): bytes differ from convert.py's slice")
            }
        }
        // The tokenizer files, as convert.py copies every `*token*` file.
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            #expect(FileManager.default.contentsEqual(atPath: dir + "/ds/" + name, andPath: Fixtures.tiny + "/" + name))
        }
    }

    /// Run as DeepSeek's engine runs it (each rank from its own file), then merged back.
    @Test func runsAsTensorParallelAndMergesBackByteIdentical() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Self.reshard(tp: 4, to: dir + "/ds")
        let sharded = try TensorParallelModel(directory: dir + "/ds", threads: 2)
        let single = Transformer(checkpoint: Self.source, threads: 2)
        let prompt = [100000, 17, 230, 5, 99, 311, 42]
        let ours = try sharded.allLogits(prompt)
        let ref = try single.allLogits(prompt)
        let cmp = LogitComparison(ours: ours, reference: ref)
        #expect(cmp.relativeL2 <= 1e-5, "relative L2 \(cmp.relativeL2)")
        #expect(cmp.top1Agreement == 1)
        #expect(try ReshardIntegrity.run(directory: dir + "/ds", threads: 2).ok)

        let merged = try OutputDirectory(dir + "/merged", force: false)
        try Merger(directory: dir + "/ds").write(into: merged, maxShardSize: 1 << 30)
        try merged.commit()
        let back = try ShardedCheckpoint(directory: dir + "/merged")
        #expect(back.tensors.count == Self.source.weights.tensors.count)
        for t in Self.source.weights.tensors {
            let m = try back.require(t.info.name)
            #expect(m.info.shape == t.info.shape && m.info.dtype == t.info.dtype)
            #expect(m.data.elementsEqual(t.data), "\(t.info.name) differs after merge")
        }
    }

    /// A tp that does not divide the experts: refused before anything is written (convert.py
    /// would only assert at the end of its pass, after loading the whole model).
    @Test func tpThatDoesNotDivideTheExpertsIsRefused() throws {
        #expect(throws: PlanError.self) { try ShardPlan(schema: Self.source.schema, tp: 3, experts: .ep) }
        let plan = try ShardPlan(schema: Self.source.schema, tp: 2, experts: .tp)
        #expect(DeepSeekLayout().refusal(plan: plan, compressed: false) != nil)
        let ep = try ShardPlan(schema: Self.source.schema, tp: 2, experts: .ep)
        #expect(DeepSeekLayout().refusal(plan: ep, compressed: true) != nil)
        #expect(DeepSeekLayout().refusal(plan: ep, compressed: false) == nil)
    }
}
