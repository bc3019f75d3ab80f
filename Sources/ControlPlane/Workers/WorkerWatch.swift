import NIOCore
import NIOPosix
import Synchronization

/// Every worker's handshake deadline, every running job's disk check, and
/// the grace a worker whose channel closed has to exit, on one repeating
/// timer of an event loop.
///
/// Each worker used to have timers of its own: a task asleep until its
/// handshake's deadline, one asleep for its grace after its job, and for each job a task waking every
/// `diskCheckInterval` to have the job's files measured. Each was a task, a
/// timer on libdispatch's timer thread and a wake-up when it was cancelled,
/// about seven context switches of the control plane per run. Here one timer
/// looks at them all, and it runs only while there is something to look at.
/// A deadline is kept within one tick of this timer (at most 50 ms).
final class WorkerWatch: Sendable {
    struct DiskLimits: Sendable {
        var maxBytes: UInt64
        var maxEntries: Int
        var interval: Duration
    }

    /// A job's files, measured from one interval after it starts.
    struct DiskCheck: Sendable {
        let worker: ManagedWorker
        let paths: [String]
        let limits: DiskLimits
        var due: NIODeadline
        /// A walk is under way (on `threads`): the next one waits for it.
        var measuring = false
    }

    private struct State {
        var handshakes: [ObjectIdentifier: (worker: ManagedWorker, deadline: NIODeadline, timeout: Duration)] = [:]
        var exits: [ObjectIdentifier: (worker: ManagedWorker, deadline: NIODeadline)] = [:]
        var disks: [UInt64: DiskCheck] = [:]
        var reminders: [UInt64: (deadline: NIODeadline, action: @Sendable () -> Void)] = [:]
        var nextToken: UInt64 = 0
        var timer: RepeatedTask?
        var stopped = false
    }

    private let loop: any EventLoop
    /// The disk walks: a step decides how many files it makes (up to
    /// `workers.limits.diskFiles`), so a walk may take a while, and never on
    /// the loop or the threads every task shares.
    private let threads: NIOThreadPool
    private let tick: TimeAmount
    private let state = Mutex(State())

    init(loop: any EventLoop, threads: NIOThreadPool, diskInterval: Duration) {
        self.loop = loop
        self.threads = threads
        // Fine enough for the disk interval (a fifth of it), coarse enough to cost nothing.
        let fifth = TimeAmount(diskInterval).nanoseconds / 5
        self.tick = .nanoseconds(Swift.max(10_000_000, Swift.min(50_000_000, fifth)))
    }

    /// Kills `worker` unless `helloSettled` comes within `timeout`.
    func expectHello(_ worker: ManagedWorker, within timeout: Duration) {
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        armed { $0.handshakes[ObjectIdentifier(worker)] = (worker, deadline, timeout) }
    }

    /// The handshake came, or failed otherwise: no deadline any more.
    func helloSettled(_ worker: ManagedWorker) {
        _ = state.withLock { $0.handshakes.removeValue(forKey: ObjectIdentifier(worker)) }
    }

    /// Kills `worker` if it has not exited within `grace`: its channel closed,
    /// and a process that lingers without one is doing nobody's work.
    func expectExit(_ worker: ManagedWorker, within grace: Duration) {
        let deadline = NIODeadline.now() + TimeAmount(grace)
        armed { $0.exits[ObjectIdentifier(worker)] = (worker, deadline) }
    }

    /// Measures `paths` every `limits.interval` while the job runs; past
    /// either limit the worker (and every process of the job) is killed with
    /// the reason named. Returns the token `forget` takes at the job's end.
    func watchDisk(of worker: ManagedWorker, paths: [String], limits: DiskLimits) -> UInt64 {
        let due = NIODeadline.now() + TimeAmount(limits.interval)
        var token: UInt64 = 0
        armed { s in
            s.nextToken += 1
            token = s.nextToken
            s.disks[token] = DiskCheck(worker: worker, paths: paths, limits: limits, due: due)
        }
        return token
    }

    /// Runs `action` (on the event loop: it must not block) once `delay` has
    /// passed, unless `forget` comes first with the token this returns.
    func remind(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        let deadline = NIODeadline.now() + TimeAmount(delay)
        var token: UInt64 = 0
        armed { s in
            s.nextToken += 1
            token = s.nextToken
            s.reminders[token] = (deadline, action)
        }
        return token
    }

    /// Ends a disk check or a reminder.
    func forget(_ token: UInt64) {
        state.withLock { s in
            s.disks[token] = nil
            s.reminders[token] = nil
        }
    }

    /// No more checks; a walk under way finishes and is ignored.
    func stop() {
        let timer = state.withLock { s -> RepeatedTask? in
            s.stopped = true
            s.handshakes.removeAll()
            s.exits.removeAll()
            s.disks.removeAll()
            s.reminders.removeAll()
            defer { s.timer = nil }
            return s.timer
        }
        timer?.cancel()
    }

    /// Adds something to watch, starting the timer if it was idle.
    private func armed(_ add: (inout State) -> Void) {
        state.withLock { s in
            guard !s.stopped else { return }
            add(&s)
            if s.timer == nil {
                s.timer = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [weak self] task in
                    guard let self else { return task.cancel() }
                    self.sweep()
                }
            }
        }
    }

    private func sweep() {
        let now = NIODeadline.now()
        let (late, lingering, due, actions) = state.withLock { s -> ([(worker: ManagedWorker, deadline: NIODeadline, timeout: Duration)], [ManagedWorker], [(UInt64, DiskCheck)], [@Sendable () -> Void]) in
            if s.handshakes.isEmpty, s.exits.isEmpty, s.disks.isEmpty, s.reminders.isEmpty {
                // Idle: the next thing to watch starts it again.
                s.timer?.cancel()
                s.timer = nil
                return ([], [], [], [])
            }
            let ripe = s.reminders.filter { $0.value.deadline <= now }
            for token in ripe.keys { s.reminders[token] = nil }
            let late = s.handshakes.values.filter { $0.deadline <= now }
            for h in late { s.handshakes[ObjectIdentifier(h.worker)] = nil }
            let graceOver = s.exits.values.filter { $0.deadline <= now }.map(\.worker)
            for w in graceOver { s.exits[ObjectIdentifier(w)] = nil }
            var due: [(UInt64, DiskCheck)] = []
            for (token, check) in s.disks where !check.measuring && check.due <= now {
                s.disks[token]?.measuring = true
                due.append((token, check))
            }
            return (late, graceOver, due, ripe.values.map(\.action))
        }
        actions.forEach { $0() }
        for h in late {
            h.worker.helloFailed(WorkerFailure.refused("no handshake within \(h.timeout)"))
            h.worker.kill(reason: "no handshake within \(h.timeout)", exit: .handshakeFailed)
        }
        for worker in lingering where !worker.hasExited {
            worker.kill(reason: "channel closed but process did not exit", exit: .lingered)
        }
        for (token, check) in due {
            threads.submit { [weak self] work in
                // A pool shutting down hands its queued work over as cancelled.
                guard case .active = work, let self else { return }
                let r = DiskUsage.measure(check.paths, maxBytes: check.limits.maxBytes, maxEntries: check.limits.maxEntries)
                self.measured(token, check, r)
            }
        }
    }

    private func measured(_ token: UInt64, _ check: DiskCheck, _ r: DiskUsage.Reading) {
        let limits = check.limits
        let verdict: String? = r.bytes > limits.maxBytes
            ? "disk limit: the job's files passed \(limits.maxBytes >> 20) MiB (workers.limits.diskMB)"
            : r.entries > limits.maxEntries ? "disk limit: the job made more than \(limits.maxEntries) files (workers.limits.diskFiles)" : nil
        let live = state.withLock { s -> Bool in
            guard s.disks[token] != nil else { return false }
            if verdict != nil {
                s.disks[token] = nil
            } else {
                s.disks[token]?.measuring = false
                s.disks[token]?.due = NIODeadline.now() + TimeAmount(limits.interval)
            }
            return true
        }
        // A job that ended meanwhile is not killed for what it left.
        if live, let verdict { check.worker.kill(reason: verdict, cause: .resourceLimit) }
    }
}
