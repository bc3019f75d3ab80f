import CExecutorHook
import NIOCore
import Synchronization

/// Swift Concurrency's global jobs, run on event loops instead of the
/// runtime's cooperative pool.
///
/// Both sides of the wire are NIO servers that do their real work in tasks. Left
/// to the runtime, every `Task` started from a channel handler and every
/// continuation a frame resumes goes to the cooperative pool: another thread,
/// woken across threads, for each hop between an arriving frame and the code
/// waiting for it, and in a worker, pool threads created anew in each process
/// (a stack mapped and faulted in, a clone, an exit). With this hook a job
/// enqueued from one of the group's loops stays on that loop, and one enqueued
/// from any other thread goes to the group's next loop.
///
/// - A worker installs it onto the one loop it makes of its only thread, and
///   stays single-threaded but for a step's own thread (its Landlock layer binds
///   the thread that forks it) and the thread that reaps a peer process.
/// - The control plane installs it onto the loops that serve its HTTP API and
///   its workers' channels, once the gateway is built: building it waits on
///   futures (binding the egress socket, connecting to PostgreSQL), which NIO
///   refuses to do on one of its loops.
///
/// What runs in a task must not block then, as it must not on an event loop:
/// blocking work (SQLite, fsync, waitpid) already runs on threads of its own.
/// A `Task.sleep` resumes on the runtime's timer thread and comes back with its
/// next hop.
///
/// Written here rather than taken from NIO: its
/// `NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor`
/// installs the same hook only for its singleton group (a worker wants no
/// threads of that group), and finds the hook with dlsym, which a runtime linked
/// in statically (`--static-swift-stdlib`, how skelm is built) does not answer.
public enum EventLoopsAsGlobalExecutor {
    /// The runtime's signature for the hook: the job, and the enqueue it replaces.
    private typealias Original = @convention(thin) (UnownedJob) -> Void
    private typealias Hook = @convention(thin) (UnownedJob, Original) -> Void

    private final class Target: Sendable {
        let group: any EventLoopGroup
        init(_ group: any EventLoopGroup) { self.group = group }
    }

    /// Set once and never released. One word, read atomically: a thread that
    /// sees the hook before this (nothing orders the runtime's read of the hook
    /// with it) falls back to the runtime's own enqueue rather than crashing.
    private static let target = Atomic<Unmanaged<Target>?>(nil)

    /// Call once per process, before the work it should carry starts.
    public static func install(onto group: any EventLoopGroup) {
        let (set, _) = target.compareExchange(expected: nil, desired: Unmanaged.passRetained(Target(group)),
                                              successOrdering: .releasing, failureOrdering: .relaxed)
        precondition(set, "the global executor is moved once")
        let hook: Hook = { job, original in
            guard let target = EventLoopsAsGlobalExecutor.target.load(ordering: .acquiring) else { return original(job) }
            // `any()` is the calling thread's own loop when it is one of the group's.
            target.takeUnretainedValue().group.any().enqueue(ExecutorJob(job))
        }
        sk_global_enqueue_hook_slot().pointee = unsafeBitCast(hook, to: UnsafeMutableRawPointer.self)
    }
}
