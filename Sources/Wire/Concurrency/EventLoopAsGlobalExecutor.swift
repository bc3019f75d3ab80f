import CExecutorHook
import NIOCore
import Synchronization

/// Swift Concurrency's global jobs, run on one event loop instead of the
/// runtime's cooperative pool.
///
/// A worker serves its job on the event loop it makes of the thread it starts
/// on, and does its work in tasks. Left to the runtime, every `Task` a frame
/// starts and every continuation a frame resumes would go to the cooperative
/// pool: threads each new worker creates (a stack mapped and faulted in, a
/// clone, an exit: three or four per worker), and a wake-up across threads for
/// each hop between an arriving frame and the code waiting for it. With this
/// hook the loop runs them itself, between the frames it reads.
///
/// What runs in a task must then not block, as nothing on an event loop may: a
/// worker's blocking work (a step, a peer's output, `waitpid`) runs on threads
/// of its own, whose results come back to the loop through this hook. A
/// `Task.sleep` wakes on libdispatch's timer thread (which the loop's thread
/// creates, so it never carries a step's Landlock layer) and resumes here.
///
/// The control plane does not install it: several of its tasks still do
/// blocking work (`/audit/verify`, a file trigger's first walk, fsyncs on
/// pause and on registration), which would stall the loops that serve the API
/// and the workers' channels.
///
/// Written here rather than taken from NIO: its
/// `NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor`
/// installs the same hook only for its singleton group, whose threads a worker
/// does not want, and finds the hook with dlsym, which a runtime linked in
/// statically (`--static-swift-stdlib`, how skelm is built) does not answer.
public enum EventLoopAsGlobalExecutor {
    /// The runtime's signature for the hook: the job, and the enqueue it replaces.
    private typealias Original = @convention(thin) (UnownedJob) -> Void
    private typealias Hook = @convention(thin) (UnownedJob, Original) -> Void

    private final class Target: Sendable {
        let loop: any EventLoop
        init(_ loop: any EventLoop) { self.loop = loop }
    }

    /// The loop jobs go to. One word, read atomically: a thread that sees the
    /// hook before this falls back to the runtime's own enqueue. A target it
    /// replaces is never released, since a thread may still be reading it.
    private static let target = Atomic<Unmanaged<Target>?>(nil)
    /// Whether the runtime took our hook, on the first call.
    private static let hooked = Atomic(false)

    /// Call on `loop`'s thread, before the first task, with a loop made by
    /// `withCurrentThreadAsEventLoop`: jobs sent to a loop that has shut down
    /// are lost. A second call points the hook at the new loop; that is for the
    /// worker template, whose warm-up runs tasks on a loop it then stops, and
    /// whose forked workers each point the hook at their own loop before they
    /// start a task. False if another hook was already installed (it is left
    /// in place).
    @discardableResult
    public static func install(onto loop: any EventLoop) -> Bool {
        guard loop.inEventLoop else { return false }
        if target.exchange(Unmanaged.passRetained(Target(loop)), ordering: .acquiringAndReleasing) != nil {
            return hooked.load(ordering: .acquiring)
        }
        let hook: Hook = { job, original in
            guard let target = EventLoopAsGlobalExecutor.target.load(ordering: .acquiring) else { return original(job) }
            target.takeUnretainedValue().loop.enqueue(ExecutorJob(job))
        }
        let taken = sk_install_global_enqueue_hook(unsafeBitCast(hook, to: UnsafeMutableRawPointer.self)) != 0
        hooked.store(taken, ordering: .releasing)
        return taken
    }
}
