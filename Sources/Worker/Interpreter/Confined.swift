import NIOCore
import Sandbox

/// Runs `body` on a thread of its own, which takes a step's Landlock layer, and
/// resumes the caller from `loop`'s thread, never from the confined one.
///
/// Why the hop: a thread inherits the Landlock domain of the thread that
/// creates it. Resumed from the confined thread, a continuation could make the
/// Swift runtime start a new pool thread right there, carrying the finished
/// step's layer, and whatever the worker did on it next (make the next step's
/// home, write its script, start its forwarder) would fail with EACCES or run
/// under the wrong layer. A worker's tasks run on its event loop
/// (`EventLoopAsGlobalExecutor`), which would send the resumed task there
/// anyway; the hop does so without relying on it. The event loop's thread never
/// takes a step's layer; waking it only writes an eventfd.
func confined<T: Sendable>(on loop: any EventLoop, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
        let started = DetachedThread.run {
            let result = Result { try body() }
            loop.execute { cont.resume(with: result) }
        }
        if !started { cont.resume(throwing: ConfinedThreadUnavailable()) }
    }
}

struct ConfinedThreadUnavailable: Error, CustomStringConvertible {
    var description: String { "cannot start a thread for the step" }
}
