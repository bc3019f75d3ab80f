import Foundation
import Logging
import NIOCore
import NIOPosix
import Sandbox
import Synchronization
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Keeps `minSpare` sandboxed workers warm, hands each to exactly one job, and
/// replaces every worker that finishes, dies or misbehaves.
public actor WorkerPool {
    public let configuration: WorkerPoolConfiguration
    /// `configuration`'s sizes and job limits as a reload left them (see PoolTunables).
    nonisolated let tunableState: Mutex<PoolTunables>
    let spawner: WorkerSpawner
    let group: any EventLoopGroup
    let logger: Logger
    let onEvent: @Sendable (JobEvent) -> Void
    let onViolation: @Sendable (Int32, String) -> Void
    /// Spawns and exits, for the audit chain: what the control plane observed.
    let onLifecycle: @Sendable (String, [String: String]) -> Void
    /// Spawns happen on one long-lived thread: PR_SET_PDEATHSIG follows the
    /// spawning thread, and a pool thread that retires would take workers with it.
    let spawnThread = NIOThreadPool(numberOfThreads: 1)
    /// Blocking waitpid calls, one per exiting worker, never for anyone else's child.
    let reaperThreads = NIOThreadPool(numberOfThreads: 2)
    /// The disk watchdog's walks of the jobs' files (see WorkerWatch).
    let diskThreads = NIOThreadPool(numberOfThreads: 2)
    /// Handshake deadlines and the jobs' disk checks, on one timer.
    let watch: WorkerWatch
    /// Removing finished jobs' workspaces, after the job: apart from the
    /// watchdog's threads, so a workspace full of files being removed never
    /// delays the walk that bounds a running job's files.
    let removalThread = NIOThreadPool(numberOfThreads: 1)

    // Internal, not private: the operators' side (WorkerPool+Operators.swift) reads them.
    var live: [Int32: ManagedWorker] = [:]
    var idle: [ManagedWorker] = []
    /// Every worker gets the same sandbox spec: encoded once, on the first spawn.
    var sandboxSpecJSON: String?
    var reaping: Set<Int32> = []
    /// Exits a template reported before the pool had registered the worker.
    var earlyExits: [Int32: Int32] = [:]
    private var spawning = 0
    private var waiters: [CheckedContinuation<ManagedWorker, any Error>] = []
    private(set) var stopping = false
    private var spawnFailures = 0
    /// Consecutive spawn failures after which a waiting job is failed with the cause.
    static let spawnFailuresBeforeGivingUp = 3
    private var lastSpawnError: String?
    private var busyJobs = 0
    /// Spawn to handshake (sandbox included), in ms, per worker.
    public nonisolated let spawnLatencies = LatencySamples()
    /// Job sent to first event from the worker, in ms, per job.
    public nonisolated let dispatchLatencies = LatencySamples()
    /// A busy worker, as the egress proxy checks a caller against it.
    public struct Assignment: Sendable {
        public let pid: Int32
        public let uid: UInt32
    }
    /// Which worker runs each job, by job id.
    public nonisolated let assignments = Mutex<[String: Assignment]>([:])
    /// Which job held each worker uid, and when, kept past the job's end: the
    /// kernel's record of a seccomp kill may come after it (`SeccompKillWatcher`).
    public nonisolated let tenancy: UIDTenancy
    /// The most jobs that ever ran at once (operators size `maxConcurrentRuns` by it).
    public private(set) var peakBusy = 0
    /// How this pool starts workers (template or exec), and the template's state.
    public nonisolated var spawnInfo: WorkerSpawner.SpawnInfo { spawner.spawnInfo }

    public init(configuration: WorkerPoolConfiguration, spawner: WorkerSpawner, group: any EventLoopGroup,
                logger: Logger = Logger(label: "skelm.workers"),
                onEvent: @escaping @Sendable (JobEvent) -> Void = { _ in },
                onViolation: @escaping @Sendable (Int32, String) -> Void = { _, _ in },
                onLifecycle: @escaping @Sendable (String, [String: String]) -> Void = { _, _ in },
                tenancy: UIDTenancy = UIDTenancy()) {
        self.configuration = configuration
        self.tenancy = tenancy
        self.tunableState = Mutex(PoolTunables(configuration))
        self.spawner = spawner
        self.group = group
        self.logger = logger
        self.onEvent = onEvent
        self.onViolation = onViolation
        self.onLifecycle = onLifecycle
        self.watch = WorkerWatch(loop: group.next(), threads: diskThreads, diskInterval: configuration.diskCheckInterval)
        spawnThread.start()
        reaperThreads.start()
        diskThreads.start()
        removalThread.start()
        spawner.onTemplateEvents(exited: { [weak self] pid, status in
            guard let self else { return }
            Task { await self.templateWorkerExited(pid: pid, status: status) }
        }, gone: { [weak self] generation in
            guard let self else { return }
            Task { await self.templateGone(generation) }
        })
    }

    /// Spawns one worker and checks its sandbox before anything else: a host that
    /// cannot build a required layer stops the gateway here, not at the first run.
    public func start() async throws {
        let first = try await spawnWorker()
        workerReady(first)
        replenish()
    }

    // MARK: Jobs

    public struct JobOptions: Sendable {
        public var jobId: String
        public var keepWorkspace = false
        public var fsRead: [String] = []
        public var fsWrite: [String] = []
        public var limits: StepLimits?
        /// Events the job may emit; nil: `WorkerMonitor.maxEventsPerJob`.
        public var eventBudget: Int?
        /// Directories besides its workspace whose files count against the job's
        /// disk limit (a resident peer's home).
        public var diskPaths: [String] = []
        public init(jobId: String = UUID().uuidString.lowercased()) { self.jobId = jobId }
    }

    /// Runs one program in a fresh worker and reports how it ended. Never throws:
    /// every failure is an outcome with its cause.
    public func run(_ exec: ExecSpec, options: JobOptions = JobOptions()) async -> JobOutcome {
        let limits = options.limits ?? tunables.stepLimits
        let (answer, outcome) = await perform(JobStart.self, options: options, timeout: .milliseconds(exec.timeoutMs + 10_000)) { workspace in
            JobSpec(jobId: options.jobId, workspace: workspace, fsRead: options.fsRead, fsWrite: options.fsWrite,
                    limits: limits, exec: exec)
        }
        var out = outcome
        if let result = answer {
            out.result = result
            out.failure = Self.failure(of: result, timeoutMs: exec.timeoutMs)
            if result.signal == SIGSYS {
                out.violation = true
                onViolation(out.workerPid, "step \(result.resolvedPath) \(ExitStatus.describe(signal: SIGSYS))")
            }
        }
        return out
    }

    /// Runs one workflow segment in a fresh worker. `events` receives each of the
    /// job's events in order, before the next is read from the worker.
    public func runSegment(options: JobOptions, timeout: Duration,
                           events: @escaping @Sendable (JobEvent) async -> Void,
                           requests: @escaping @Sendable (RPCIncoming) async -> RPCReply,
                           spec: @escaping @Sendable (_ workspace: String) -> RunJobSpec) async -> (RunJobResult?, JobOutcome) {
        await perform(RunJob.self, options: options, timeout: timeout, events: events, requests: requests, params: spec)
    }

    /// The part every kind of job shares: a warm worker, a workspace owned by the
    /// worker's uid, one call, and a named cause for whatever goes wrong.
    func perform<M: RPCMethod>(_ method: M.Type, options: JobOptions, timeout: Duration,
                                       events: (@Sendable (JobEvent) async -> Void)? = nil,
                                       requests: (@Sendable (RPCIncoming) async -> RPCReply)? = nil,
                                       params: (String) -> M.Params) async -> (M.Result?, JobOutcome) {
        let workspace = configuration.workspaceRoot + "/" + options.jobId
        var outcome = JobOutcome(jobId: options.jobId, workerPid: 0, workspace: workspace, result: nil,
                                 failure: nil, violation: false, sandbox: nil)
        let worker: ManagedWorker
        do {
            worker = try await acquire()
        } catch {
            outcome.failure = "no worker available: \(error)"
            return (nil, outcome)
        }
        outcome.workerPid = worker.pid
        outcome.sandbox = worker.report
        busyJobs += 1
        peakBusy = Swift.max(peakBusy, busyJobs)
        assignments.withLock { $0[options.jobId] = Assignment(pid: worker.pid, uid: worker.uid) }
        // Only a root gateway's workers have uids of their own to tell them apart
        // by. A worker that died while this job waited for it has had its end
        // reported already (on this actor): no stay is opened that would not end.
        if spawner.runningAsRoot, !worker.hasExited { tenancy.began(uid: worker.uid, jobId: options.jobId) }
        defer {
            busyJobs -= 1
            _ = assignments.withLock { $0.removeValue(forKey: options.jobId) }
        }
        // Dispatch latency: from sending the job to the worker's first event (its ack that it runs).
        let sent = ContinuousClock.now
        let acked = Mutex(false)
        let dispatch = self.dispatchLatencies
        worker.eventSink = events.map { sink in
            { @Sendable event in
                if acked.withLock({ a in defer { a = true }; return !a }) {
                    let ms = (ContinuousClock.now - sent).inMilliseconds
                    dispatch.append(ms)
                    GatewayMetrics.dispatched(ms: ms)
                }
                await sink(event)
            }
        }
        worker.requestHandler = requests
        if let budget = options.eventBudget { worker.setEventBudget(budget) }
        worker.setPhase(.busy, jobId: options.jobId)
        if worker.templateGeneration != nil, spawner.runningAsRoot {
            // Spares wait at low priority (template.c); the job runs at normal priority.
            setpriority(__priority_which_t(PRIO_USER.rawValue), worker.uid, 0)
        }
        // Its replacement is spawned once it has exited (workerExited), or once
        // the job has run for 20 ms: a spawn started with the job competed with
        // it, and with the end of its run, for the CPU (docs/benchmarks.md), and
        // a long job must not leave the pool a spare short.
        let reminder = watch.remind(after: .milliseconds(20)) { [weak self] in
            Task { await self?.replenish() }
        }
        defer { watch.forget(reminder) }
        defer {
            if !options.keepWorkspace { removeWorkspaceLater(workspace) }
        }
        do {
            try makeWorkspace(workspace, uid: worker.uid)
        } catch {
            worker.kill(reason: "job aborted")
            outcome.failure = "workspace: \(error)"
            return (nil, outcome)
        }
        guard let peer = worker.peer else {
            outcome.failure = "worker has no channel"
            return (nil, outcome)
        }
        // The job's files are bounded in all, not only one by one (RLIMIT_FSIZE):
        // measured while it runs, and the worker is killed once past the limit.
        let limits = tunables
        let watched = watch.watchDisk(of: worker, paths: [workspace, workspace + ".homes"] + options.diskPaths,
                                      limits: .init(maxBytes: limits.diskLimitBytes, maxEntries: limits.diskLimitEntries,
                                                    interval: configuration.diskCheckInterval))
        defer { watch.forget(watched) }
        do {
            // Finishing from the moment the answer is read: a request read after it
            // is refused as the finishing worker's, however soon it is taken up.
            let result = try await peer.call(method, params(workspace), timeout: timeout, answered: { worker.setPhase(.finishing) })
            worker.setPhase(.finishing)
            peer.close()
            return (result, outcome)
        } catch let error as RPCError {
            worker.setPhase(.finishing)
            peer.close()
            outcome.failure = error.message
        } catch {
            // The channel broke or the worker stopped answering: the process's end names the cause.
            if error is RPCTimeout { worker.kill(reason: "job did not finish within its timeout", exit: .timeout) }
            let status = await exitStatus(of: worker, grace: .seconds(2))
            let reason = worker.killReason
            outcome.killedFor = error is RPCTimeout ? .timeout : worker.killCause
            if worker.killCause == .protocolViolation { outcome.violation = true }
            if status.isSeccompViolation {
                outcome.violation = true
                onViolation(worker.pid, "worker \(status)")
            }
            outcome.failure = reason.map { "\($0) (worker \(status))" } ?? "worker \(status)"
        }
        return (nil, outcome)
    }


    /// Stops a running job: its worker, and with it every process of the job, is killed.
    @discardableResult
    public func cancel(jobId: String) -> Bool {
        guard let worker = live.values.first(where: { $0.jobId == jobId && $0.phase == .busy }) else { return false }
        worker.kill(reason: "cancelled", exit: .cancelled)
        return true
    }

    static func failure(of result: JobResult, timeoutMs: Int) -> String? {
        if result.timedOut { return "timed out after \(timeoutMs) ms" }
        if let signal = result.signal { return ExitStatus.describe(signal: signal) }
        if let code = result.exitCode, code != 0 { return "exited with status \(code)" }
        return nil
    }

    /// Stops handing out workers, kills the idle ones, waits for busy ones up to
    /// `drain`, then kills whatever is left.
    public func shutdown(drain: Duration = .seconds(30)) async {
        stopping = true
        for waiter in waiters { waiter.resume(throwing: WorkerFailure.poolStopped) }
        waiters.removeAll()
        for worker in idle { worker.kill(reason: "gateway stopping", exit: .shutdown) }
        idle.removeAll()
        let deadline = ContinuousClock.now + drain
        while !live.isEmpty, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
            if live.values.allSatisfy({ $0.phase != .busy }) { live.values.forEach { $0.kill(reason: "gateway stopping", exit: .shutdown) } }
        }
        for worker in live.values { worker.kill(reason: "drain timeout", exit: .shutdown) }
        while !live.isEmpty { try? await Task.sleep(for: .milliseconds(10)) }
        spawner.retireTemplate()
        try? await spawnThread.shutdownGracefully()
        try? await reaperThreads.shutdownGracefully()
        watch.stop()
        try? await diskThreads.shutdownGracefully()
        try? await removalThread.shutdownGracefully()
    }

    // MARK: Acquiring and replenishing

    private func acquire() async throws -> ManagedWorker {
        if stopping { throw WorkerFailure.poolStopped }
        while !idle.isEmpty {
            let worker = idle.removeFirst()
            // A spare that died while idle (killed, crashed) is not handed a job:
            // its channel's end may not have been read yet. Its reaping goes on as usual.
            if worker.processExited {
                worker.kill(reason: "exited while idle", exit: .crashed)
                continue
            }
            return worker
        }
        return try await withCheckedThrowingContinuation { cont in
            waiters.append(cont)
            replenish()
        }
    }

    private func workerReady(_ worker: ManagedWorker) {
        if worker.hasExited { return }
        if stopping {
            worker.kill(reason: "gateway stopping", exit: .shutdown)
        } else if worker.draining {
            // Drained while it handshook: retired before it is ever handed a job.
            worker.kill(reason: "drained by an operator", exit: .drained)
        } else if !waiters.isEmpty {
            waiters.removeFirst().resume(returning: worker)
        } else {
            idle.append(worker)
        }
    }

    /// Spawns until waiting jobs and the spare target are covered, within `max`.
    func replenish() {
        guard !stopping else { return }
        let sizes = tunables
        let wanted = waiters.count + sizes.minSpare - idle.count - spawning
        let room = sizes.max - live.count - spawning
        let n = Swift.min(wanted, room)
        guard n > 0 else { return }
        for _ in 0..<n {
            spawning += 1
            Task {
                await self.backoff()
                do {
                    let worker = try await self.spawnWorker()
                    self.spawnSucceeded()
                    self.workerReady(worker)
                } catch {
                    self.spawnFailed(error)
                }
            }
        }
    }

    private func backoff() async {
        if spawnFailures > 0 {
            try? await Task.sleep(for: .milliseconds(Swift.min(50 << Swift.min(spawnFailures, 6), 2_000)))
        }
    }

    private func spawnSucceeded() {
        spawning -= 1
        spawnFailures = 0
    }

    private func spawnFailed(_ error: any Error) {
        spawning -= 1
        spawnFailures += 1
        lastSpawnError = "\(error)"
        GatewayMetrics.workerSpawnFailed()
        logger.error("worker spawn failed", metadata: ["error": "\(error)"])
        // Spawning looks broken, not slow for a moment (a handshake past its timeout on
        // a loaded host): tell a waiting job, rather than leave it hanging. One failure
        // alone is retried, so a transient one never fails a job.
        if spawnFailures >= Self.spawnFailuresBeforeGivingUp, !waiters.isEmpty, live.isEmpty {
            waiters.removeFirst().resume(throwing: error)
        }
        replenish()
    }
}
