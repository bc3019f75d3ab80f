/// What a directory watcher emits once changes have settled: every path that
/// changed, each once, in the order of its last change.
struct FileEventBatch: Sendable, Equatable {
    var events: [FileEvent] = []
    /// Events not listed because the batch already held its limit of paths.
    /// A consumer that must see everything rescans the directory.
    var omitted = 0
    var truncated: Bool { omitted > 0 }
    /// Events were lost before they were collected: the kernel's queue
    /// overflowed (IN_Q_OVERFLOW), or the consumer fell so far behind that a
    /// batch could not be buffered. The listed events are true but not all:
    /// rescan the directory.
    var overflowed = false
    /// Subdirectories (relative paths) that could not be watched, usually
    /// because fs.inotify.max_user_watches was reached: changes under them
    /// are not reported.
    var unwatched: [String] = []

    var isEmpty: Bool { events.isEmpty && omitted == 0 && !overflowed && unwatched.isEmpty }
}
