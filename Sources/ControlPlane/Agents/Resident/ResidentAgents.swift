import Foundation
import Logging
import Synchronization
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Resident agents: each one a long-lived job (`agent.host`) in a sandboxed
/// worker of its own, started with the gateway and supervised: when its worker
/// or its agent ends, it is started again after a backoff that doubles (1 s up
/// to 30 s) and resets once it has run for a minute; after five quick failures
/// in a row it is marked `crashed` and left alone until a reload or restart.
/// Turns are handed to it one at a time; a turn whose agent dies fails.
public actor ResidentAgents {
    public struct Status: Codable, Sendable {
        public enum State: String, Codable, Sendable, CaseIterable { case starting, running, backoff, crashed, stopped }
        public var id: String
        public var state: State
        public var pid: Int32?
        public var restarts: Int
        public var lastExit: String?
        public var since: Date
        public var turns: Int
        public var queued: Int
    }

    struct Pending {
        let turn: AgentTurn
        let continuation: CheckedContinuation<AgentTurnResult, any Error>
        let sink: @Sendable (JobEvent) async -> Void
        var events = 0
        var recorded = 0
        /// The turn's end, held until `expected` events were recorded.
        var done: AgentTurnResult?
        var expected = 0
    }

    struct Host {
        var launch: PeerLaunch
        var ceiling: StepPolicy
        var generation: Int
        var status: Status
        var jobId: String?
        var queue: [Pending] = []
        var inFlight: [String: Pending] = [:]
        var waiter: CheckedContinuation<AgentNext.Result, Never>?
        var stopping = false
    }

    /// Failures in a row (each within `stableAfter` of its start) before `crashed`.
    static let maxQuickFailures = 5
    static let stableAfter = Duration.seconds(60)
    static let maxBackoff = Duration.seconds(30)
    /// Events one turn may record; more are dropped (and said so once).
    static let maxEventsPerTurn = 10_000

    private var hosts: [String: Host] = [:]
    private var generations = 0
    private let pool: WorkerPool
    private let audit: AuditLog
    private let logger: Logger

    public init(pool: WorkerPool, audit: AuditLog, logger: Logger) {
        self.pool = pool
        self.audit = audit
        self.logger = logger
    }

    /// Where a resident agent keeps its home: under the workspace root (so
    /// workers' base layer reaches it), in a dot-directory the sweep of stale
    /// workspaces leaves alone.
    nonisolated func home(of id: String) -> String { pool.configuration.workspaceRoot + "/.agents/" + id }

    // MARK: Reconciling with config

    /// Starts agents config adds, restarts those whose launch or ceiling
    /// changed, stops those it removes; the rest keep running.
    public func apply(_ peers: PeerRegistry, ceiling: (PeerRegistry.Agent) -> StepPolicy) {
        let wanted = peers.agents.values.filter(\.launch.resident)
        for a in wanted {
            let c = ceiling(a)
            if let h = hosts[a.launch.id], h.launch == a.launch, h.ceiling == c, h.status.state != .crashed, h.status.state != .stopped {
                continue
            }
            if hosts[a.launch.id] != nil { stop(a.launch.id, reason: "config changed") }
            start(a.launch, ceiling: c)
        }
        for id in hosts.keys where !wanted.contains(where: { $0.launch.id == id }) && hosts[id]?.status.state != .stopped {
            stop(id, reason: "removed from config")
        }
    }

    private func start(_ launch: PeerLaunch, ceiling: StepPolicy) {
        generations += 1
        let generation = generations
        let previous = hosts[launch.id]?.status
        hosts[launch.id] = Host(launch: launch, ceiling: ceiling, generation: generation,
                                status: Status(id: launch.id, state: .starting, pid: nil, restarts: previous?.restarts ?? 0,
                                               lastExit: previous?.lastExit, since: Date(), turns: previous?.turns ?? 0, queued: 0))
        Task { await supervise(launch.id, generation: generation) }
    }

    private func stop(_ id: String, reason: String) {
        guard var h = hosts[id] else { return }
        h.stopping = true
        h.status.state = .stopped
        h.status.since = Date()
        h.waiter?.resume(returning: AgentNext.Result(turn: nil, stop: true))
        h.waiter = nil
        for p in h.queue { p.continuation.resume(throwing: TurnFailure(description: "agent \(id) stopped: \(reason)")) }
        h.queue = []
        // Turns it was serving end now, and so does its worker (a wedged one included).
        for p in h.inFlight.values { p.continuation.resume(returning: AgentTurnResult(error: "agent \(id) stopped: \(reason)")) }
        h.inFlight = [:]
        if let job = h.jobId { Task { [pool] in await pool.cancel(jobId: job) } }
        hosts[id] = h
        audit.record(actor: "gateway", action: "agent.stopped", details: ["agent": id, "reason": reason])
    }

    /// Every resident agent asked to stop (the gateway is stopping).
    public func stopAll() {
        for id in hosts.keys where hosts[id]?.status.state != .stopped { stop(id, reason: "gateway stopping") }
    }

    // MARK: Supervising

    private func supervise(_ id: String, generation: Int) async {
        var failures = 0
        while let h = hosts[id], h.generation == generation, !h.stopping {
            let started = ContinuousClock.now
            let jobId = "agent-\(id)-\(UUID().uuidString.prefix(8).lowercased())"
            hosts[id]?.jobId = jobId
            hosts[id]?.status.state = .starting
            hosts[id]?.status.since = Date()
            let home = home(of: id)
            let ended = await host(id, launch: h.launch, ceiling: h.ceiling, jobId: jobId, home: home)
            failInFlight(id, generation: generation, why: "the agent's worker ended: \(ended)")
            guard var now = hosts[id], now.generation == generation else { return }
            now.jobId = nil
            now.status.pid = nil
            if now.stopping {
                hosts[id] = now
                return
            }
            now.status.restarts += 1
            now.status.lastExit = ended
            failures = ContinuousClock.now - started >= Self.stableAfter ? 1 : failures + 1
            audit.record(actor: "gateway", action: "agent.exited", details: ["agent": id, "cause": ended, "restarts": "\(now.status.restarts)"])
            logger.warning("resident agent ended", metadata: ["agent": "\(id)", "cause": "\(ended)"])
            if failures > Self.maxQuickFailures {
                now.status.state = .crashed
                now.status.since = Date()
                for p in now.queue { p.continuation.resume(throwing: TurnFailure(description: "agent \(id) crashed: \(ended)")) }
                now.queue = []
                hosts[id] = now
                audit.record(actor: "gateway", action: "agent.crashed", details: ["agent": id, "cause": ended])
                return
            }
            now.status.state = .backoff
            now.status.since = Date()
            hosts[id] = now
            let delay = min(Duration.seconds(1) * (1 << min(failures - 1, 10)), Self.maxBackoff)
            try? await Task.sleep(for: delay)
        }
    }

    /// One life of the agent: a worker, its home, until the job ends.
    private func host(_ id: String, launch: PeerLaunch, ceiling: StepPolicy, jobId: String, home: String) async -> String {
        do { try Self.prepareHome(home) } catch { return "cannot prepare its home \(home): \(error)" }
        var options = WorkerPool.JobOptions(jobId: jobId)
        options.eventBudget = Int.max
        let pool = self.pool
        let limits = pool.tunables.stepLimits
        let (answer, outcome) = await pool.perform(
            AgentHost.self, options: options, timeout: .seconds(10 * 365 * 86_400),
            events: { [weak self] event in await self?.route(id, jobId: jobId, event) },
            requests: { [weak self] request in
                guard let self else { return .error(RPCError(code: RPCError.internalError, message: "the gateway is stopping")) }
                return await self.serve(id, jobId: jobId, request)
            },
            params: { workspace in
                // The home is the agent's across restarts; each life runs as a new uid.
                if let uid = pool.assignments.withLock({ $0[jobId]?.uid }) { Self.chownTree(home, uid: uid) }
                return AgentHost.Params(jobId: jobId, workspace: workspace, home: home, agent: launch, ceiling: ceiling, limits: limits)
            })
        return answer?.ended ?? outcome.failure ?? "ended without an answer"
    }

    static func prepareHome(_ home: String) throws {
        let parent = (home as NSString).deletingLastPathComponent
        if mkdir(parent, 0o711) != 0, errno != EEXIST { throw TurnFailure(description: String(cString: strerror(errno))) }
        // Traversable, not listable, whatever the umask: each home is its own agent's.
        _ = chmod(parent, 0o711)
        if mkdir(home, 0o700) != 0, errno != EEXIST { throw TurnFailure(description: String(cString: strerror(errno))) }
    }

    /// Hands the home (and what the last life left in it) to this life's uid,
    /// without following links the last life may have left.
    static func chownTree(_ path: String, uid: UInt32) {
        guard geteuid() == 0 else { return }
        _ = lchown(path, uid, uid)
        guard let walker = FileManager.default.enumerator(atPath: path) else { return }
        while let name = walker.nextObject() as? String { _ = lchown(path + "/" + name, uid, uid) }
    }

    // MARK: Turns

    struct TurnFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// A turn for `agent`; its events go to `sink` while it runs.
    public func turn(agent id: String, _ turn: AgentTurn, sink: @escaping @Sendable (JobEvent) async -> Void) async throws -> AgentTurnResult {
        guard let h = hosts[id], !h.stopping else { throw TurnFailure(description: "agent \(id) is not running (resident agents start with the gateway)") }
        if h.status.state == .crashed { throw TurnFailure(description: "agent \(id) crashed: \(h.status.lastExit ?? "")") }
        let result: AgentTurnResult = try await withCheckedThrowingContinuation { cont in
            let pending = Pending(turn: turn, continuation: cont, sink: sink)
            if let waiter = hosts[id]?.waiter {
                hosts[id]?.waiter = nil
                hosts[id]?.inFlight[turn.id] = pending
                waiter.resume(returning: AgentNext.Result(turn: turn))
            } else {
                hosts[id]?.queue.append(pending)
                hosts[id]?.status.queued = hosts[id]?.queue.count ?? 0
            }
            // A turn nobody takes (the agent keeps failing to start) gives up with its
            // step; one its host never hands back ends, and so does the host's job.
            let limit = Duration.milliseconds(turn.timeoutMs) + .seconds(10)
            Task { [weak self] in
                try? await Task.sleep(for: limit)
                await self?.abandon(id, turnId: turn.id)
            }
        }
        hosts[id]?.status.turns += 1
        return result
    }

    private func abandon(_ id: String, turnId: String) {
        if let i = hosts[id]?.queue.firstIndex(where: { $0.turn.id == turnId }), let p = hosts[id]?.queue.remove(at: i) {
            hosts[id]?.status.queued = hosts[id]?.queue.count ?? 0
            p.continuation.resume(throwing: TurnFailure(description: "agent \(id) did not take the turn in time (\(hosts[id]?.status.state.rawValue ?? "gone"))"))
            return
        }
        guard let p = hosts[id]?.inFlight.removeValue(forKey: turnId) else { return }
        p.continuation.resume(returning: p.done ?? AgentTurnResult(error: "agent \(id) did not end the turn in time; its worker is stopped", timedOut: true))
        if p.done == nil, let job = hosts[id]?.jobId { Task { [pool] in await pool.cancel(jobId: job) } }
    }

    private func failInFlight(_ id: String, generation: Int, why: String) {
        guard let h = hosts[id], h.generation == generation else { return }
        for p in h.inFlight.values { p.continuation.resume(returning: AgentTurnResult(error: why)) }
        hosts[id]?.inFlight = [:]
        hosts[id]?.waiter?.resume(returning: AgentNext.Result(turn: nil, stop: true))
        hosts[id]?.waiter = nil
    }

    /// What the host worker asks: the next turn (held until one comes, or
    /// `waitMs`), and a turn's end. Only from the job that hosts the agent now.
    private func serve(_ id: String, jobId: String, _ request: RPCIncoming) async -> RPCReply {
        guard hosts[id]?.jobId == jobId else { return .error(RPCError(code: RPCError.notAllowed, message: "not this agent's host")) }
        switch request.method {
        case AgentNext.name:
            guard let params = try? request.params(as: AgentNext.Params.self), params.jobId == jobId else {
                return .error(RPCError(code: RPCError.invalidParams, message: "agent.next needs this job's id"))
            }
            hosts[id]?.status.state = .running
            if hosts[id]?.status.pid == nil { hosts[id]?.status.pid = pool.assignments.withLock { $0[jobId]?.pid } }
            if hosts[id]?.stopping == true { return .result(AgentNext.Result(turn: nil, stop: true)) }
            if let first = hosts[id]?.queue.first {
                hosts[id]?.queue.removeFirst()
                hosts[id]?.status.queued = hosts[id]?.queue.count ?? 0
                hosts[id]?.inFlight[first.turn.id] = first
                return .result(AgentNext.Result(turn: first.turn))
            }
            let wait = Duration.milliseconds(min(max(params.waitMs, 100), 25_000))
            let next: AgentNext.Result = await withCheckedContinuation { cont in
                hosts[id]?.waiter?.resume(returning: AgentNext.Result(turn: nil))
                hosts[id]?.waiter = cont
                Task { [weak self] in
                    try? await Task.sleep(for: wait)
                    await self?.expireWaiter(id)
                }
            }
            return .result(next)
        case AgentDone.name:
            guard let params = try? request.params(as: AgentDone.Params.self), params.jobId == jobId,
                  var p = hosts[id]?.inFlight[params.turnId], p.done == nil else {
                return .error(RPCError(code: RPCError.invalidParams, message: "agent.done for no turn of this agent"))
            }
            // The answer can overtake the turn's last events: it ends once they are recorded (or 5 s on).
            p.done = params.result
            p.expected = min(params.events, Self.maxEventsPerTurn)
            hosts[id]?.inFlight[params.turnId] = p
            if p.recorded >= p.expected { finish(id, turnId: params.turnId) } else {
                let turnId = params.turnId
                Task { [weak self] in
                    try? await Task.sleep(for: .seconds(5))
                    await self?.finish(id, turnId: turnId)
                }
            }
            return .result(Empty())
        default:
            return .error(RPCError(code: RPCError.notAllowed, message: "\(request.method) is not for an agent's host"))
        }
    }

    private func finish(_ id: String, turnId: String) {
        guard let p = hosts[id]?.inFlight[turnId], let result = p.done else { return }
        hosts[id]?.inFlight[turnId] = nil
        p.continuation.resume(returning: result)
    }

    private func expireWaiter(_ id: String) {
        hosts[id]?.waiter?.resume(returning: AgentNext.Result(turn: nil))
        hosts[id]?.waiter = nil
    }

    /// An event of a turn, to the run whose step asked for it.
    private func route(_ id: String, jobId: String, _ event: JobEvent) async {
        guard hosts[id]?.jobId == jobId, let turnId = event.step, var p = hosts[id]?.inFlight[turnId] else { return }
        p.events += 1
        hosts[id]?.inFlight[turnId] = p
        if p.events <= Self.maxEventsPerTurn { await p.sink(event) }
        guard var now = hosts[id]?.inFlight[turnId] else { return }
        now.recorded += 1
        hosts[id]?.inFlight[turnId] = now
        if now.done != nil, now.recorded >= now.expected { finish(id, turnId: turnId) }
    }

    // MARK: Reading

    public func statuses() -> [Status] { hosts.values.map(\.status).sorted { $0.id < $1.id } }
    public func status(_ id: String) -> Status? { hosts[id]?.status }
}
