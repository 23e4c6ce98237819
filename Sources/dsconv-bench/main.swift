import CKernels
import DeepSeek
import Foundation
import Kernels
import SafeTensors

// Kernel and model measurements for Scripts/bench. Prints one JSON object per case.
//   dsconv-bench sgemm [--threads N]                 OpenBLAS sgemm peak (GFLOP/s)
//   dsconv-bench memcpy                              memcpy bandwidth (GB/s)
//   dsconv-bench prefill DIR [--tokens T] [--threads N]
//   dsconv-bench decode DIR [--tokens T] [--threads N]

func arg(_ name: String, _ def: Int) -> Int {
    let a = CommandLine.arguments
    if let i = a.firstIndex(of: name), i + 1 < a.count, let v = Int(a[i + 1]) { return v }
    return def
}

/// A /proc/self/status field in MB (VmHWM: peak RSS including mapped weight pages; RssAnon:
/// anonymous memory now, i.e. activations, caches and scratch).
func statusMB(_ field: String) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix(field + ":") {
        return (Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "0") ?? 0) / 1024
    }
    return 0
}

func peakRSSMB() -> Int { statusMB("VmHWM") }

func time(_ body: () throws -> Void) rethrows -> Double {
    let t = Date()
    try body()
    return Date().timeIntervalSince(t)
}

let threads = arg("--threads", availableCores)
Linear.configureBLAS()
let args = CommandLine.arguments
guard args.count >= 2 else { print("usage: dsconv-bench sgemm|memcpy|prefill DIR|decode DIR"); exit(2) }

switch args[1] {
case "sgemm":
    Linear.setBLASThreadsForBenchmark(threads)
    let m = 512, n = 5120, k = 5120
    let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: n * k)
    var c = [Float](repeating: 0, count: m * n)
    var best = 0.0
    for _ in 0..<3 {
        let s = time { a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            Linear.sgemmABT(ap.baseAddress!, lda: k, bp.baseAddress!, ldb: k, cp.baseAddress!, ldc: n, m: m, n: n, k: k)
        } } } }
        best = max(best, 2.0 * Double(m * n * k) / s / 1e9)
    }
    print("{\"case\":\"sgemm\",\"m\":\(m),\"n\":\(n),\"k\":\(k),\"gflops\":\(best)}")
case "memcpy":
    let size = 1 << 30
    let src = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    let dst = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    memset(src, 1, size); memset(dst, 0, size)
    var best = 0.0
    var check = 0
    for i in 0..<4 {
        let (a, b) = i % 2 == 0 ? (dst, src) : (src, dst)
        // Two threads copy halves, as the decode kernels read with all threads.
        let half = size / 2
        let secs = Locked([Double]())
        let pa = UnsafeSendable(a), pb = UnsafeSendable(b)
        parallelFor(2, threads: threads) { j in
            let t = dsk_timed_copy(pa.value + j * half, pb.value + j * half, half)
            secs.withLock { $0.append(t) }
        }
        let s = secs.withLock { $0.max() ?? 1 }
        check += Int(a.load(fromByteOffset: (i * 4099) % size, as: UInt8.self))
        best = max(best, Double(size) / s / 1e9)
    }
    if check < 0 { print(check) }
    // Copy bandwidth counts bytes read (the decode kernels read weights).
    print("{\"case\":\"memcpy\",\"bytes\":\(size),\"threads\":\(threads),\"gb_per_s\":\(best)}")
case "prefill", "decode":
    guard args.count >= 3 else { print("need a model directory"); exit(2) }
    let ckpt = try Checkpoint(directory: args[2])
    let c = ckpt.config
    let model = Transformer(checkpoint: ckpt, threads: threads)
    let schema = ckpt.schema
    // Parameters one token multiplies through, without the embedding lookup (and lm_head apart).
    let perToken = Double(schema.activeParameters - c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2))
    let head = Double(c.vocabSize * c.hiddenSize)
    let tokens = arg("--tokens", args[1] == "prefill" ? 512 : 32)
    let prompt = (0..<tokens).map { ($0 * 7919 + 13) % min(c.vocabSize, 100_000) }
    if args[1] == "prefill" {
        _ = try model.forward(Array(prompt.prefix(8)), cache: KVCache(config: c))  // warm the page cache and code
        let s = try time { _ = try model.forward(prompt, cache: KVCache(config: c)) }
        // Attention: QKᵀ and PV over the causal triangle, per head.
        let attention = Double(c.numHiddenLayers) * Double(c.numAttentionHeads) * Double(tokens * (tokens + 1) / 2)
            * 2 * Double(c.qHeadDim + c.vHeadDim)
        let flops = 2 * perToken * Double(tokens) + 2 * head + attention
        print("{\"case\":\"prefill\",\"tokens\":\(tokens),\"seconds\":\(s),\"tokens_per_second\":\(Double(tokens) / s),\"gflops\":\(flops / s / 1e9),\"peak_rss_mb\":\(peakRSSMB()),\"rss_anon_mb\":\(statusMB("RssAnon"))}")
    } else {
        let cache = KVCache(config: c)
        _ = try model.forward(Array(prompt.prefix(16)), cache: cache)
        var next = 1
        _ = try model.forward([next], cache: cache)  // warm
        let s = try time {
            for i in 0..<tokens {
                let logits = try model.forward([next], cache: cache).data
                next = (logits.indices.max { logits[$0] < logits[$1] } ?? i) % min(c.vocabSize, 100_000)
            }
        }
        // Weight bytes a decoded token reads: its active parameters (bf16) and lm_head.
        let bytes = (perToken + head) * 2
        print("{\"case\":\"decode\",\"tokens\":\(tokens),\"seconds\":\(s),\"tokens_per_second\":\(Double(tokens) / s),\"weight_gb_per_s\":\(bytes * Double(tokens) / s / 1e9),\"peak_rss_mb\":\(peakRSSMB()),\"rss_anon_mb\":\(statusMB("RssAnon"))}")
    }
default:
    print("unknown case \(args[1])")
    exit(2)
}
