import CKernels

/// Counting NaN and Inf in raw tensor bytes.
public enum NonFiniteScan {
    public enum Format: Sendable { case bf16, f16, f32, f64, f8e4m3, f8e5m2 }

    /// Returns (count, index of first) over the elements in `bytes`.
    public static func count(_ bytes: UnsafeRawBufferPointer, format: Format) -> (count: Int, first: Int?) {
        guard let base = bytes.baseAddress else { return (0, nil) }
        var first = 0
        let n: Int
        let c: Int
        switch format {
        case .bf16: n = bytes.count / 2; c = dsk_count_nonfinite_bf16(base.assumingMemoryBound(to: UInt16.self), n, &first)
        case .f16: n = bytes.count / 2; c = dsk_count_nonfinite_f16(base.assumingMemoryBound(to: UInt16.self), n, &first)
        case .f32: n = bytes.count / 4; c = dsk_count_nonfinite_f32(base.assumingMemoryBound(to: UInt32.self), n, &first)
        case .f64: n = bytes.count / 8; c = dsk_count_nonfinite_f64(base.assumingMemoryBound(to: UInt64.self), n, &first)
        case .f8e4m3: n = bytes.count; c = dsk_count_nonfinite_f8e4m3(base.assumingMemoryBound(to: UInt8.self), n, &first)
        case .f8e5m2: n = bytes.count; c = dsk_count_nonfinite_f8e5m2(base.assumingMemoryBound(to: UInt8.self), n, &first)
        }
        return (c, c > 0 ? first : nil)
    }
}

/// Streaming SHA-256.
public struct SHA256 {
    private var ctx = dsk_sha256_ctx()

    public init() { dsk_sha256_init(&ctx) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let b = bytes.baseAddress else { return }
        dsk_sha256_update(&ctx, b, bytes.count)
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    public mutating func finalizeHex() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        dsk_sha256_final(&ctx, &out)
        return out.map { b in let s = String(b, radix: 16); return s.count == 1 ? "0" + s : s }.joined()
    }

    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var h = SHA256()
        h.update(bytes)
        return h.finalizeHex()
    }
}
