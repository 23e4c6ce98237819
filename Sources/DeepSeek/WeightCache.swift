import Kernels
import SafeTensors

/// Decoded weights (decompressed or dequantized) kept for reuse, least recently used dropped
/// first once `budget` bytes are held. One lock section per lookup-or-insert, so concurrent
/// misses never double-count bytes.
public final class WeightCache: @unchecked Sendable {
    private struct Entry { let buffer: AnyObject; let cost: Int; var tick: Int }
    private struct State { var entries: [String: Entry] = [:]; var bytes = 0; var tick = 0 }
    private let state = Locked(State())
    public let budget: Int

    public init(budget: Int = 2 << 30) { self.budget = budget }

    /// The cached bytes of `key`, or `make()`'s, inserted.
    public func value(_ key: String, make: () throws -> OwnedBytes) throws -> OwnedBytes {
        try object(key, cost: { $0.count }, make: make)
    }

    /// The cached object of `key`, or `make()`'s, inserted with its memory cost.
    public func object<T: AnyObject>(_ key: String, cost: (T) -> Int, make: () throws -> T) throws -> T {
        if let hit = state.withLock({ s -> T? in
            s.tick += 1
            guard var e = s.entries[key] else { return nil }
            e.tick = s.tick
            s.entries[key] = e
            return e.buffer as? T
        }) { return hit }
        let made = try make()
        let c = cost(made)
        return state.withLock { s in
            if let raced = s.entries[key]?.buffer as? T { return raced }
            s.entries[key] = Entry(buffer: made, cost: c, tick: s.tick)
            s.bytes += c
            while s.bytes > budget, let oldest = s.entries.min(by: { $0.value.tick < $1.value.tick }), oldest.key != key {
                s.bytes -= oldest.value.cost
                s.entries[oldest.key] = nil
            }
            return made
        }
    }
}
