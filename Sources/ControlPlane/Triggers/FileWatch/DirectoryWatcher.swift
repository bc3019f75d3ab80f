import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Reports what changed under one directory, for `file` triggers: inotify on a
/// dedicated thread, as `FileWatcher` does, with changes collected into
/// batches.
///
/// A batch is emitted once `debounce` passes with no new event, or `maxDelay`
/// after its first event however busy the directory is, so a writer that
/// never pauses still produces batches. `FileEventCollector` says how events
/// on one path collapse; a batch lists at most `maxPaths` paths and counts
/// the rest. With `recursive`, subdirectories are watched too, those made
/// later included; what a new subdirectory already holds when its watch is
/// added is reported as created, so files written into it right after the
/// mkdir are not missed. Directory entries are reported like files, with
/// `isDirectory`; a directory renamed is one event, its contents' paths change
/// without events of their own.
///
/// `batches` ends when `stop()` is called, when its consumer goes away
/// (cancelled, or the stream dropped), or when the directory itself goes
/// (deleted, renamed, unmounted; the batch pending then is emitted first);
/// `endReason` then says which. `stop()` emits nothing more; the thread sees
/// it within a quarter second and closes the inotify descriptor.
final class DirectoryWatcher: Sendable {
    typealias Batch = FileEventBatch

    enum EndReason: Sendable, Equatable {
        case stopped
        case deleted
        /// Renamed: its path no longer names it.
        case moved
        case unmounted
        /// Polling or reading the inotify descriptor failed with this errno.
        case failed(errno: Int32)
    }

    let directory: String
    let batches: AsyncStream<Batch>
    private let control: Control

    /// Why `batches` ended; nil while it runs.
    var endReason: EndReason? { control.reason.withLock { $0 } }

    /// - Parameters:
    ///   - filter: an fnmatch(3) pattern for base names (`*.csv`); nil reports every name.
    ///   - maxDelay: at most this long from a batch's first event to its emission; 10 × `debounce` when nil.
    /// - Throws: the errno of a directory that cannot be watched (ENOENT, ENOTDIR, EACCES),
    ///   or of inotify itself (EMFILE: fs.inotify.max_user_instances reached).
    init(directory: String, recursive: Bool = false, filter: String? = nil,
         debounce: Duration = .milliseconds(500), maxDelay: Duration? = nil,
         maxPaths: Int = 1000) throws(POSIXError) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw Self.error(errno) }
        var tree: WatchTree
        do { tree = try WatchTree(fd: fd, root: directory, recursive: recursive) } catch {
            close(fd)
            throw error
        }
        var collector = FileEventCollector(maxPaths: maxPaths, filter: filter)
        if recursive {
            for dir in tree.addSubtree("").unwatched { collector.couldNotWatch(dir) }
        }
        let (stream, feed) = AsyncStream.makeStream(of: Batch.self, bufferingPolicy: .bufferingOldest(Self.bufferedBatches))
        let control = Control(feed: feed)
        feed.onTermination = { [weak control] _ in control?.requestStop() }
        self.directory = directory
        self.batches = stream
        self.control = control
        let loop = Loop(tree: tree, collector: collector, debounce: debounce,
                        maxDelay: maxDelay ?? debounce * 10, control: control)
        let thread = Thread { [loop] in
            var loop = loop
            loop.run()
        }
        thread.name = "skelm-dir-watch"
        thread.start()
    }

    func stop() { control.end(.stopped) }

    /// Batches waiting for a slow consumer. When full, the next batch is lost
    /// and the one after it says `overflowed`, as the kernel's queue does.
    static let bufferedBatches = 16

    private static func error(_ code: Int32) -> POSIXError {
        POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
    }

    /// What the caller and the watch thread share.
    private final class Control: Sendable {
        let stopping = Atomic<Bool>(false)
        let reason = Mutex<EndReason?>(nil)
        let feed: AsyncStream<Batch>.Continuation

        init(feed: AsyncStream<Batch>.Continuation) { self.feed = feed }

        func requestStop() {
            reason.withLock { if $0 == nil { $0 = .stopped } }
            stopping.store(true, ordering: .relaxed)
        }

        /// The first reason given is the one kept.
        func end(_ why: EndReason) {
            reason.withLock { if $0 == nil { $0 = why } }
            stopping.store(true, ordering: .relaxed)
            feed.finish()
        }
    }

    /// The watch thread's state; nothing else touches it.
    private struct Loop {
        var tree: WatchTree
        var collector: FileEventCollector
        let debounce: Duration
        let maxDelay: Duration
        let control: Control
        private var first: ContinuousClock.Instant?
        private var last: ContinuousClock.Instant?
        /// A batch was dropped because the consumer's buffer was full.
        private var lostBatch = false
        private var ending: EndReason?

        init(tree: WatchTree, collector: FileEventCollector, debounce: Duration, maxDelay: Duration, control: Control) {
            self.tree = tree
            self.collector = collector
            self.debounce = debounce
            self.maxDelay = maxDelay
            self.control = control
        }

        mutating func run() {
            defer { close(tree.fd) }
            let clock = ContinuousClock()
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            var pfd = pollfd(fd: tree.fd, events: Int16(POLLIN), revents: 0)
            touch(clock.now)
            while !control.stopping.load(ordering: .relaxed) {
                let ready = poll(&pfd, 1, timeout(clock.now))
                if ready < 0, errno != EINTR { return control.end(.failed(errno: errno)) }
                if ready > 0 {
                    let n = read(tree.fd, &buffer, buffer.count)
                    if n < 0, errno != EAGAIN, errno != EINTR { return control.end(.failed(errno: errno)) }
                    for event in InotifyEvent.parse(buffer, count: n) where ending == nil { handle(event) }
                    touch(clock.now)
                }
                if let ending {
                    flush()
                    return control.end(ending)
                }
                if collector.isEmpty ? lostBatch : clock.now >= deadline { flush() }
            }
        }

        /// How long poll(2) may wait: until the batch is due, and never more
        /// than a quarter second, so `stop` is seen.
        private func timeout(_ now: ContinuousClock.Instant) -> Int32 {
            let most = Duration.milliseconds(250)
            let wait = collector.isEmpty ? most : min(most, deadline - now)
            guard wait > .zero else { return 0 }
            let (seconds, attoseconds) = wait.components
            return Int32(seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
        }

        private var deadline: ContinuousClock.Instant {
            guard let first, let last else { return .now }
            return min(last + debounce, first + maxDelay)
        }

        /// Events arrived; any that were kept start or extend the batch.
        private mutating func touch(_ now: ContinuousClock.Instant) {
            guard !collector.isEmpty else { return }
            if first == nil { first = now }
            last = now
        }

        private mutating func handle(_ event: InotifyEvent) {
            if event.has(IN_Q_OVERFLOW) {
                collector.overflowed = true
                // Subdirectories made while events were lost still need watches.
                if tree.recursive {
                    for dir in tree.addSubtree("").unwatched { collector.couldNotWatch(dir) }
                }
                return
            }
            if event.has(IN_IGNORED) {
                tree.forget(event.wd)
                if event.wd == tree.rootWatch, ending == nil { ending = .deleted }
                return
            }
            if event.wd == tree.rootWatch {
                if event.has(IN_DELETE_SELF) { ending = .deleted; return }
                if event.has(IN_MOVE_SELF) { ending = .moved; return }
                if event.has(IN_UNMOUNT) { ending = .unmounted; return }
            }
            // A subdirectory's events about itself: its parent's watch reports them.
            guard let dir = tree.path(of: event.wd), !event.name.isEmpty else { return }
            let path = dir.isEmpty ? event.name : dir + "/" + event.name
            let isDirectory = event.has(IN_ISDIR)
            if event.has(IN_CREATE) {
                collector.record(path, .created, isDirectory: isDirectory)
                if isDirectory, tree.recursive { watchNew(path) }
            } else if event.has(IN_MODIFY | IN_CLOSE_WRITE) {
                collector.record(path, .modified)
            } else if event.has(IN_DELETE) {
                collector.record(path, .deleted, isDirectory: isDirectory)
            } else if event.has(IN_MOVED_FROM) {
                collector.movedFrom(path, cookie: event.cookie, isDirectory: isDirectory)
                if isDirectory { tree.suspend(path) }
            } else if event.has(IN_MOVED_TO) {
                if let from = collector.movedTo(path, cookie: event.cookie, isDirectory: isDirectory) {
                    if isDirectory { tree.rename(from, to: path) }
                } else if isDirectory, tree.recursive {
                    watchNew(path)
                }
            }
        }

        /// A directory made, or moved in from outside: watch it and what is
        /// under it, and report what it already holds as created.
        private mutating func watchNew(_ path: String) {
            let (entries, unwatched) = tree.addSubtree(path)
            for entry in entries { collector.record(entry.path, .created, isDirectory: entry.isDirectory) }
            for dir in unwatched { collector.couldNotWatch(dir) }
        }

        private mutating func flush() {
            var (batch, movedOut) = collector.take()
            for dir in movedOut { tree.remove(dir) }
            first = nil
            last = nil
            if lostBatch { batch.overflowed = true }
            guard !batch.isEmpty else { return }
            switch control.feed.yield(batch) {
            case .enqueued: lostBatch = false
            case .dropped: lostBatch = true
            case .terminated: control.requestStop()
            @unknown default: break
            }
        }
    }
}
