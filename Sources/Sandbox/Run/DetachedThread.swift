#if canImport(Glibc)
import Glibc
#endif

/// A detached pthread running `body` once.
///
/// Not `Foundation.Thread`: its first use in a process runs Foundation's thread
/// bookkeeping set-up, which every forked worker would pay again for its first
/// step. A step's Landlock layer binds the thread that forks it, so each step
/// gets a thread of its own, and this is the cheapest one there is.
public enum DetachedThread {
    private final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread; false (and `body` never runs) if none could be made.
    @discardableResult
    public static func run(_ body: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let started = pthread_create(&thread, &attributes, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box)
        if started != 0 { Unmanaged<Box>.fromOpaque(box).release() }
        return started == 0
    }
}
