import CKernels
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Number of online cores.
public var availableCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

/// Runs `body(i)` for i in 0..<count on up to `threads` threads, handing out indices dynamically
/// so uneven work balances. Deterministic results are the caller's job (each i owns its output).
public func parallelFor(_ count: Int, threads: Int, _ body: @Sendable (Int) -> Void) {
    guard count > 0 else { return }
    let workers = max(1, min(threads, count))
    if workers == 1 {
        for i in 0..<count { body(i) }
        return
    }
    let next = AtomicCounter()
    DispatchQueue.concurrentPerform(iterations: workers) { _ in
        while true {
            let i = next.increment()
            if i >= count { break }
            body(i)
        }
    }
}

/// `body(i)` for i in 0..<count on up to `threads` threads, the results in index order.
public func parallelMap<T: Sendable>(_ count: Int, threads: Int, _ body: @Sendable (Int) -> T) -> [T] {
    let slots = UnsafeMutablePointer<T?>.allocate(capacity: max(count, 1))
    slots.initialize(repeating: nil, count: count)
    defer {
        slots.deinitialize(count: count)
        slots.deallocate()
    }
    let p = UnsafeSendable(slots)
    parallelFor(count, threads: threads) { i in p.value[i] = body(i) }
    return (0..<count).compactMap { slots[$0] }
}

/// A pthread mutex at a fixed heap address (a stored `pthread_mutex_t` property has no address
/// Swift guarantees to be stable, so `&property` must not be handed to pthreads).
final class HeapMutex: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A fetch-and-add counter, for handing out work (one atomic instruction per piece, so pieces
/// may be small: decode hands out a few hundred KB of weights at a time).
public final class AtomicCounter: Sendable {
    private let value: Atomic<Int>

    public init(_ start: Int = 0) { value = Atomic(start) }

    /// Returns the value before adding `by`.
    public func increment(by: Int = 1) -> Int {
        value.wrappingAdd(by, ordering: .relaxed).oldValue
    }

    public var current: Int { value.load(ordering: .relaxed) }
}

/// A mutex around a value, for results gathered from parallel workers.
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = HeapMutex()

    public init(_ value: Value) { self.value = value }

    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&value) }
    }
}

/// Wraps a pointer (or other value) known to be used safely across threads, e.g. disjoint slices.
public struct UnsafeSendable<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}

/// Process-wide allocator setting for the forward pass: keep large freed blocks in the heap
/// (instead of returning them to the kernel at once), so that per-layer scratch buffers are reused
/// rather than faulted in and zeroed again for every matrix.
public func keepFreedMemoryForReuse() {
    dsk_keep_freed_memory()
}
