import NIOCore
import NIOPosix
import Synchronization

/// Where the proxy's decisions run: they resolve names (getaddrinfo), which
/// blocks for as long as DNS takes, so not on an event loop. A few threads of
/// the proxy's own, shared fairly: a job has at most `perJob` decisions running
/// at once and queues the rest, so a step that asks for slow names (any
/// subdomain of a wildcard it may reach) delays its own connections, and can
/// hold no more than a quarter of the threads from every other job.
final class EgressResolver: Sendable {
    static let threads = 16
    static let perJob = 4

    private struct Queue {
        var running = 0
        var waiting: [@Sendable () -> Void] = []
    }

    private let pool = NIOThreadPool(numberOfThreads: EgressResolver.threads)
    private let queues = Mutex<[String: Queue]>([:])

    init() {
        pool.start()
    }

    /// `body` on the pool, its result on `loop`; fails once the pool is shut down.
    func run<T: Sendable>(jobId: String, on loop: any EventLoop, _ body: @escaping @Sendable () -> T) -> EventLoopFuture<T> {
        let promise = loop.makePromise(of: T.self)
        let work: @Sendable () -> Void = { [pool] in
            pool.runIfActive(eventLoop: loop, body).whenComplete { result in
                self.finished(jobId: jobId)
                promise.completeWith(result)
            }
        }
        let now = queues.withLock { all in
            if all[jobId, default: Queue()].running < Self.perJob {
                all[jobId, default: Queue()].running += 1
                return true
            }
            all[jobId, default: Queue()].waiting.append(work)
            return false
        }
        if now { work() }
        return promise.futureResult
    }

    /// A decision of the job ended: its slot goes to the job's next in line, if any.
    private func finished(jobId: String) {
        let next: (@Sendable () -> Void)? = queues.withLock { all in
            guard var queue = all[jobId] else { return nil }
            guard !queue.waiting.isEmpty else {
                queue.running -= 1
                all[jobId] = queue.running > 0 ? queue : nil
                return nil
            }
            let next = queue.waiting.removeFirst()
            all[jobId] = queue
            return next
        }
        next?()
    }

    func shutdown() {
        pool.shutdownGracefully { _ in }
    }
}
