import CKernels
import Compression
import DeepSeek
import JSON
import Tokenizer
import Foundation
import Kernels
import SafeTensors

// Kernel and model measurements for Scripts/bench. Prints one JSON object per case.
//   dsconv-bench sgemm [--threads N]                 OpenBLAS sgemm peak (GFLOP/s)
//   dsconv-bench memcpy                              memcpy bandwidth (GB/s)
//   dsconv-bench read [--threads N]                  read bandwidth of a 2 GB buffer (GB/s), no writes
//   dsconv-bench gemm [--threads N]                  our GEMM tiles (f32 exact, bf16 kind) at 512 × 5120 × 5120 (GFLOP/s)
//   dsconv-bench prefill DIR [--tokens T] [--threads N] [--bf16-activations]
//   dsconv-bench decode DIR [--tokens T] [--threads N] [--int8-activations | --bf16-activations]
//                                                    tokens/s, and weight GB/s as stored: whole tokens and decoder layers alone
//   dsconv-bench forkjoin       one parallel region's overhead (8 × 25 µs of work)
//   dsconv-bench warm DIR|FILE  DIR's shards (or one file) read into the page cache through the forward pass's maps

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

/// Times a decoded token's embedding and decoder layers apart from its final norm and lm_head: the
/// forward pass records the last layer's hidden states just before the head runs.
final class LayerClock: ForwardObserver {
    let lastName: String
    var layers = 0.0, head = 0.0
    private var began = Date(), split = Date()
    init(lastLayer: Int) { lastName = "layers.\(lastLayer).hidden_states" }
    func start() { began = Date() }
    func record(_ name: String, _ value: Matrix) {
        guard name == lastName else { return }
        split = Date()
        layers += split.timeIntervalSince(began)
    }
    func stop() { head += Date().timeIntervalSince(split) }
}

let threads = arg("--threads", availableCores)
keepFreedMemoryForReuse()
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
case "gemm":
    // Our own tiles on the sgemm case's shape, through Linear (X packed once, threads over rows).
    let m = 512, n = 5120, k = 5120
    var x = Matrix(rows: m, cols: k)
    for i in 0..<x.data.count { x.data[i] = Float(i % 97) / 97 - 0.5 }
    let wbytes = UnsafeMutableRawBufferPointer.allocate(byteCount: n * k * 2, alignment: 64)
    for i in 0..<(n * k) { wbytes.storeBytes(of: UInt16(0x3c00 + (i % 255)), toByteOffset: i * 2, as: UInt16.self) }
    let w = WeightMatrix(bytes: UnsafeRawBufferPointer(wbytes), format: .bf16, rows: n, cols: k, owner: nil)
    var result: [String: Double] = [:]
    for (name, backend) in [("f32_tiles", LinearBackend.reference), ("bf16", LinearBackend.bf16Activations)] {
        if name == "f32_tiles" && Linear.exactGemm.kind == nil { continue }
        var best = 0.0
        for _ in 0..<3 {
            let s = time { _ = Linear.apply(x, w, threads: threads, backend: backend) }
            best = max(best, 2.0 * Double(m * n * k) / s / 1e9)
        }
        result[name] = best
    }
    print("{\"case\":\"gemm\",\"threads\":\(threads),\"bf16_kind\":\"\(Linear.bf16KindName)\",\"f32_tiles_gflops\":\(result["f32_tiles"] ?? 0),\"bf16_gflops\":\(result["bf16"] ?? 0)}")
case "forkjoin":
    // One parallel region's cost: 8 items of 25 µs of spinning (200 µs of work), 2000 times;
    // the ideal is 200 µs / threads per region.
    @Sendable nonisolated func spin(_ us: Double) {
        let t = DispatchTime.now().uptimeNanoseconds
        while Double(DispatchTime.now().uptimeNanoseconds - t) < us * 1000 {}
    }
    let n = 2000
    let s = time { for _ in 0..<n { parallelFor(8, threads: threads) { _ in spin(25) } } }
    print("{\"case\":\"forkjoin\",\"threads\":\(threads),\"microseconds\":\(s / Double(n) * 1e6),\"ideal\":\(200.0 / Double(threads))}")
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
case "read":
    // Read bandwidth of a large buffer over all threads (what decode is bound by), no writes.
    let size = 2 << 30
    let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    memset(buf, 1, size)
    var best = 0.0
    let part = size / threads / 64 * 64
    let sinks = Locked(UInt64(0))
    for _ in 0..<4 {
        let secs = Locked([Double]())
        let p = UnsafeSendable(buf)
        parallelFor(threads, threads: threads) { j in
            var sink: UInt64 = 0
            let t = dsk_timed_read(p.value + j * part, part, &sink)
            secs.withLock { $0.append(t) }
            sinks.withLock { $0 ^= sink }
        }
        best = max(best, Double(part * threads) / (secs.withLock { $0.max() ?? 1 }) / 1e9)
    }
    if sinks.withLock({ $0 }) == 42 { print("") }
    print("{\"case\":\"read\",\"bytes\":\(size),\"threads\":\(threads),\"gb_per_s\":\(best)}")
case "warm":
    // A model's shards read into the page cache through the same maps the forward pass makes
    // (MappedFile: huge-page advice), a byte per page: pages this process faults in come as the
    // folios its own reads would make, where `cat` leaves readahead's (smaller, often 4 KB-mapped
    // later). A file named instead of a directory (a GGUF) is read the same way: the peer bench
    // brings both sides' files in through this one reader before each decode run.
    guard args.count >= 3 else { print("need a model directory or a file"); exit(2) }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: args[2], isDirectory: &isDirectory) else { print("no such file: \(args[2])"); exit(2) }
    let files = isDirectory.boolValue
        ? try FileManager.default.contentsOfDirectory(atPath: args[2]).filter { $0.hasSuffix(".safetensors") }.sorted().map { args[2] + "/" + $0 }
        : [args[2]]
    var touched = 0, sum: UInt8 = 0
    for f in files {
        let map = try MappedFile(path: f)
        let b = map.bytes
        var i = 0
        while i < b.count { sum &+= b[i]; i += 4096 }
        touched += b.count
    }
    print("{\"case\":\"warm\",\"files\":\(files.count),\"bytes\":\(touched),\"check\":\(sum)}")
case "prefill", "decode":
    guard args.count >= 3 else { print("need a model directory"); exit(2) }
    let ckpt = try Checkpoint(directory: args[2])
    let c = ckpt.config
    let model = Transformer(checkpoint: ckpt, threads: threads)
    if CommandLine.arguments.contains("--int8-activations") { model.backend = .fastInt8Activations }
    if CommandLine.arguments.contains("--bf16-activations") { model.backend = .bf16Activations }
    let schema = ckpt.schema
    // Parameters one token multiplies through, without the embedding lookup (and lm_head apart).
    let perToken = Double(schema.activeParameters - c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2))
    let head = Double(c.vocabSize * c.hiddenSize)
    let tokens = arg("--tokens", args[1] == "prefill" ? 512 : 32)
    let prompt = (0..<tokens).map { ($0 * 7919 + 13) % min(c.vocabSize, 100_000) }
    if args[1] == "prefill" {
        // One untimed run of the same prompt first, as llama-bench warms up: the weights in the page
        // cache, the code, and the activations' memory faulted in once (a process that prefills
        // window after window, as eval and calibration do, pays that once).
        _ = try model.forward(prompt, cache: KVCache(config: c))
        let s = try time { _ = try model.forward(prompt, cache: KVCache(config: c)) }
        // Attention: QKᵀ and PV over the causal triangle, per head.
        let attention = Double(c.numHiddenLayers) * Double(c.numAttentionHeads) * Double(tokens * (tokens + 1) / 2)
            * 2 * Double(c.qHeadDim + c.vHeadDim)
        let flops = 2 * perToken * Double(tokens) + 2 * head + attention
        let kernels = model.backend == .bf16Activations ? Linear.bf16KindName : Linear.exactGemm.name
        print("{\"case\":\"prefill\",\"kernels\":\"\(kernels)\",\"tokens\":\(tokens),\"seconds\":\(s),\"tokens_per_second\":\(Double(tokens) / s),\"gflops\":\(flops / s / 1e9),\"peak_rss_mb\":\(peakRSSMB()),\"rss_anon_mb\":\(statusMB("RssAnon"))}")
    } else {
        let cache = KVCache(config: c)
        _ = try model.forward(Array(prompt.prefix(16)), cache: cache)
        var next = 1
        _ = try model.forward([next], cache: cache)  // warm
        let clock = LayerClock(lastLayer: c.numHiddenLayers - 1)
        let s = try time {
            for i in 0..<tokens {
                clock.start()
                let logits = try model.forward([next], cache: cache, observer: clock).data
                clock.stop()
                next = (logits.indices.max { logits[$0] < logits[$1] } ?? i) % min(c.vocabSize, 100_000)
            }
        }
        // Weight bytes a decoded token reads, as stored (bf16, or packed codes and their scales):
        // its active tensors, lm_head included, the embedding's one row apart.
        let bytes = Double(schema.activeWeightBytes - (c.tieWordEmbeddings ? 0 : schema.storedBytes(of: .embedding)))
        // The decoder layers and the final norm and lm_head, timed apart within each token (the
        // clock notes when the last layer's output is recorded): in a 2-layer synth the (BF16)
        // head is about half of what a token reads, in the 60-layer model 2%; the decoder layers'
        // rate is what carries over to the real model.
        let headSeconds = clock.head
        let layers = max(clock.layers, 1e-9)
        // The decoder layers' own bytes: without the final norm and head.
        let layerBytes = bytes - Double(schema.storedBytes(of: c.tieWordEmbeddings ? .embedding : .lmHead) + schema.storedBytes(of: .finalNorm))
        print("{\"case\":\"decode\",\"tokens\":\(tokens),\"seconds\":\(s),\"tokens_per_second\":\(Double(tokens) / s),\"head_seconds\":\(headSeconds),\"layers_tokens_per_second\":\(Double(tokens) / layers),\"weight_gb_per_s\":\(bytes * Double(tokens) / s / 1e9),\"layers_weight_gb_per_s\":\(layerBytes * Double(tokens) / layers / 1e9),\"peak_rss_mb\":\(peakRSSMB()),\"rss_anon_mb\":\(statusMB("RssAnon"))}")
    }
case "tokenize":
    // One thread, one document at a time: MB/s of UTF-8, load time, and a checksum of every id.
    guard args.count >= 4 else { print("usage: dsconv-bench tokenize TOKENIZER_DIR CORPUS.jsonl"); exit(2) }
    var tok: Tokenizer? = nil
    let load = try time { tok = try Tokenizer(directory: args[2]) }
    let lines = try String(contentsOfFile: args[3], encoding: .utf8).split(separator: "\n")
    let docs = try lines.map { try JSONParser.parse(String($0)).stringValue ?? "" }
    let size = docs.reduce(0) { $0 + $1.utf8.count }
    var encoded: [[Int]] = []
    let s = time { encoded = docs.map { tok!.encode($0, addSpecialTokens: false) } }
    var h: UInt64 = 0
    for e in encoded { for i in e { h = UInt64((UInt128(h) * 1_000_003 + UInt128(i + 1)) % (UInt128(1) << 61)) } }
    print("{\"case\":\"tokenize\",\"load_seconds\":\(load),\"bytes\":\(size),\"tokens\":\(encoded.reduce(0) { $0 + $1.count }),\"mb_per_s\":\(Double(size) / s / 1e6),\"checksum\":\(h)}")
case "codec":
    // In-memory pack/unpack speed of one safetensors file's data, frame by frame as `dsconv pack`
    // cuts it (2 MiB frames), without disk I/O: what the codec itself sustains.
    guard args.count >= 3 else { print("need a safetensors file"); exit(2) }
    let file = try SafeTensorsFile(path: args[2])
    let transform = FrameTransform(rawValue: CommandLine.arguments.firstIndex(of: "--transform").map { CommandLine.arguments[$0 + 1] } ?? "bf16-exp-rans") ?? .bf16ExpRans
    let data = file.mapped.bytes
    var ranges: [Range<Int>] = []
    for t in file.tensors {
        let r = file.fileRange(t)
        var o = r.lowerBound
        while o < r.upperBound { ranges.append(o..<min(r.upperBound, o + (2 << 20))); o += 2 << 20 }
    }
    let frameRanges = ranges
    let total = ranges.reduce(0) { $0 + $1.count }
    // Touch the input once so the timing sees memory, not the disk.
    var sink: UInt8 = 0
    for r in ranges { sink ^= data[r.lowerBound] }
    let frames = Locked([Int: ([UInt8], Int)]())
    let pd = UnsafeSendable(data)
    let c = time {
        let counter = AtomicCounter()
        parallelFor(threads, threads: threads) { _ in
            let z = ZstdCompressor(level: 1)
            let wrap = ZstdCompressor(level: -7)
            while true {
                let i = counter.increment()
                if i >= frameRanges.count { break }
                let r = try? Packer.compressFrame(UnsafeRawBufferPointer(rebasing: pd.value[frameRanges[i]]), transform, z: z, wrap: wrap)
                frames.withLock { $0[i] = r ?? ([], 0) }
            }
        }
    }
    let packed = frames.withLock { $0.values.reduce(0) { $0 + $1.0.count } }
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 64)
    memset(output.baseAddress!, 0, total)
    let po = UnsafeSendable(output)
    var offsetList: [Int] = []
    var acc = 0
    for r in frameRanges { offsetList.append(acc); acc += r.count }
    let offsets = offsetList
    let all = frames.withLock { $0 }
    let d = time {
        let counter = AtomicCounter()
        parallelFor(threads, threads: threads) { _ in
            let z = ZstdDecompressor()
            var scratch = [UInt8](repeating: 0, count: 5 << 20)
            while true {
                let i = counter.increment()
                if i >= frameRanges.count { break }
                let (frame, size) = all[i]!
                let dst = UnsafeMutableRawBufferPointer(rebasing: po.value[offsets[i]..<(offsets[i] + frameRanges[i].count)])
                if transform == .none {
                    try? frame.withUnsafeBytes { try z.decompress($0, into: dst, file: "", offset: 0) }
                } else {
                    scratch.withUnsafeMutableBytes { sb in
                        let tmp = UnsafeMutableRawBufferPointer(rebasing: sb[0..<size])
                        try? frame.withUnsafeBytes { try z.decompress($0, into: tmp, file: "", offset: 0) }
                        _ = transform.invert(UnsafeRawBufferPointer(tmp), into: dst)
                    }
                }
            }
        }
    }
    var same = true
    for (i, r) in frameRanges.enumerated() where !UnsafeRawBufferPointer(rebasing: output[offsets[i]..<(offsets[i] + r.count)]).elementsEqual(UnsafeRawBufferPointer(rebasing: data[r])) { same = false; break }
    output.deallocate()
    print("{\"case\":\"codec\",\"transform\":\"\(transform.rawValue)\",\"bytes\":\(total),\"bits_per_weight\":\(8.0 * Double(packed) / Double(total / 2)),\"compress_gb_per_s\":\(Double(total) / c / 1e9),\"decompress_gb_per_s\":\(Double(total) / d / 1e9),\"round_trip_ok\":\(same),\"check\":\(sink & 0)}")
default:
    print("unknown case \(args[1])")
    exit(2)
}
