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
/// Runs on `SpinningPool.shared` where it is free (else on Dispatch's threads).
public func parallelFor(_ count: Int, threads: Int, _ body: @Sendable (Int) -> Void) {
    guard count > 0 else { return }
    let workers = max(1, min(threads, count))
    if workers == 1 {
        for i in 0..<count { body(i) }
        return
    }
    let next = AtomicCounter()
    withoutActuallyEscaping(body) { body in
        let share: @Sendable () -> Void = {
            while true {
                let i = next.increment()
                if i >= count { break }
                body(i)
            }
        }
        if SpinningPool.shared.run(participants: workers, share) { return }
        DispatchQueue.concurrentPerform(iterations: workers) { _ in share() }
    }
}

/// Worker threads that stay awake a short while after each parallel region. A decoded token runs
/// a few dozen regions of a few hundred microseconds; a sleeping thread takes tens of
/// microseconds to wake (measured here: 45 µs per region on this VM, against 200 µs of work),
/// so workers spin for `spinSeconds` before they sleep, as llama.cpp's do. One region at a time:
/// a region started while another runs (nested, or from another thread) goes to Dispatch.
public final class SpinningPool: @unchecked Sendable {
    public static let shared = SpinningPool(workers: availableCores - 1)

    /// How long an idle worker spins before it sleeps on the condition variable.
    static let spinSeconds = 0.0002

    let workers: Int
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// The current region: its work-sharing loop and how many threads take part (the caller first).
    private nonisolated(unsafe) var job: (@Sendable () -> Void)? = nil
    private nonisolated(unsafe) var participants = 0
    /// Guards `sleepers` and the generation's increments, so a worker going to sleep misses no region.
    private let lock = HeapMutex()
    private let wake = HeapCondition()
    private nonisolated(unsafe) var sleepers = 0

    init(workers: Int) {
        self.workers = max(0, workers)
        for index in 0..<self.workers {
            let context = Unmanaged.passRetained(WorkerContext(pool: self, index: index)).toOpaque()
            var thread = pthread_t()
            if pthread_create(&thread, nil, { raw in
                let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                context.pool.workerLoop(context.index)
                return nil
            }, context) == 0 {
                pthread_detach(thread)
            } else {
                Unmanaged<WorkerContext>.fromOpaque(context).release()
            }
        }
    }

    private final class WorkerContext {
        let pool: SpinningPool
        let index: Int
        init(pool: SpinningPool, index: Int) {
            self.pool = pool
            self.index = index
        }
    }

    /// Runs `share` on the caller and `participants − 1` workers; false (nothing run) where the
    /// pool is taken or has too few workers.
    func run(participants count: Int, _ share: @escaping @Sendable () -> Void) -> Bool {
        guard count - 1 <= workers, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        job = share
        participants = count
        pending.store(workers, ordering: .relaxed)
        lock.withLock {
            generation.wrappingAdd(1, ordering: .releasing)
            if sleepers > 0 { wake.broadcast() }
        }
        share()
        while pending.load(ordering: .acquiring) > 0 { dsk_cpu_relax() }
        job = nil
        busy.store(false, ordering: .releasing)
        return true
    }

    private func workerLoop(_ index: Int) {
        var seen = 0
        while true {
            var spun = 0
            let start = DispatchTime.now().uptimeNanoseconds
            while generation.load(ordering: .acquiring) == seen {
                dsk_cpu_relax()
                spun += 1
                if spun % 256 == 0, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 > Self.spinSeconds {
                    lock.withLock {
                        while generation.load(ordering: .acquiring) == seen {
                            sleepers += 1
                            lock.wait(wake)
                            sleepers -= 1
                        }
                    }
                }
            }
            seen = generation.load(ordering: .acquiring)
            if index + 1 < participants, let job { job() }
            pending.wrappingSubtract(1, ordering: .releasing)
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

    /// Waits for `condition` inside `withLock` (the lock released while waiting, held again after).
    func wait(_ condition: HeapCondition) { pthread_cond_wait(condition.cond, mutex) }
}

/// A pthread condition variable at a fixed heap address, waited on with a `HeapMutex`.
final class HeapCondition: @unchecked Sendable {
    fileprivate let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        cond = .allocate(capacity: 1)
        cond.initialize(to: pthread_cond_t())
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        cond.deinitialize(count: 1)
        cond.deallocate()
    }

    func broadcast() { pthread_cond_broadcast(cond) }
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
