import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Time the calling thread has spent on a CPU. A validation's limits count
/// this, not the wall clock: on a loaded host a thread waits for a core, and a
/// wall-clock limit would then refuse a value the same host accepts when idle.
/// Validation runs on one thread from start to end, so its own CPU time is its cost.
public enum ThreadCPUTime {
    public static func now() -> Duration {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return .seconds(Int64(ts.tv_sec)) + .nanoseconds(Int64(ts.tv_nsec))
    }
}
