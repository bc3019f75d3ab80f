import Foundation
import Logging
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Resident agents and MCP servers: each one a long-lived job (`agent.host`,
/// `mcp.host`) in a sandboxed worker of its own, started with the gateway and
/// supervised: when its worker or its peer ends, it is started again after a
/// backoff that doubles (1 s up to 30 s) and resets once it has run for a
/// minute; after five quick failures in a row it is marked `crashed` and left
/// alone until a reload or restart. Work (an agent's turns, a server's calls)
/// waits in a queue until the peer's worker takes it; work in flight when the
/// peer dies fails.
public actor ResidentPeers {
    public enum Kind: String, Codable, Sendable {
        case agent
        case mcpServer

        var noun: String { self == .agent ? "agent" : "MCP server" }
        /// The audit actions' prefix and the detail naming the peer.
        var auditPrefix: String { self == .agent ? "agent" : "mcp" }
        var auditKey: String { self == .agent ? "agent" : "server" }
        /// Under the workspace root (so workers' base layer reaches it), in a
        /// dot-directory the sweep of stale workspaces leaves alone.
        var homes: String { self == .agent ? ".agents" : ".mcp-servers" }
    }

    public struct Key: Hashable, Sendable, CustomStringConvertible {
        public var kind: Kind
        public var id: String
        public init(_ kind: Kind, _ id: String) {
            self.kind = kind
            self.id = id
        }
        public var description: String { "\(kind.noun) \(id)" }
    }

    public struct Status: Encodable, Sendable {
        public enum State: String, Codable, Sendable, CaseIterable { case starting, running, backoff, crashed, stopped }
        public var kind: Kind
        public var id: String
        public var state: State
        public var pid: Int32?
        public var restarts: Int
        public var lastExit: String?
        public var since: Date
        /// Turns (an agent) or calls (an MCP server) it has taken.
        public var served: Int
        public var queued: Int

        enum CodingKeys: String, CodingKey { case id, state, pid, restarts, lastExit, since, turns, calls, queued }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(state, forKey: .state)
            try c.encodeIfPresent(pid, forKey: .pid)
            try c.encode(restarts, forKey: .restarts)
            try c.encodeIfPresent(lastExit, forKey: .lastExit)
            try c.encode(since, forKey: .since)
            try c.encode(served, forKey: kind == .agent ? .turns : .calls)
            try c.encode(queued, forKey: .queued)
        }
    }

    /// What a peer is: its launch and what its process may ever do.
    public struct Wanted: Sendable, Equatable {
        public var launch: PeerLaunch
        public var ceiling: StepPolicy
        public init(launch: PeerLaunch, ceiling: StepPolicy) {
            self.launch = launch
            self.ceiling = ceiling
        }
    }

    struct Pending {
        let work: ResidentWork
        let continuation: CheckedContinuation<ResidentOutcome, any Error>
        let sink: @Sendable (JobEvent) async -> Void
        /// The job that asked (a run's worker), and whether its step still wants the work.
        let asker: String
        let wanted: @Sendable () -> Bool
        let timeoutMs: Int
        /// Gives up on the work: while queued, with its step; once handed over,
        /// its time plus 10 s after that. Cancelled when the work ends.
        var timer: Task<Void, Never>?
        var events = 0
        var recorded = 0
        /// The work's end, held until `expected` events were recorded.
        var done: ResidentOutcome?
        var expected = 0
    }

    struct Host {
        var wanted: Wanted
        var generation: Int
        var status: Status
        var jobId: String?
        var queue: [Pending] = []
        var inFlight: [String: Pending] = [:]
        var waiter: CheckedContinuation<ResidentNext.Result, Never>?
        var waiterExpiry: Task<Void, Never>?
        var stopping = false
    }

    /// Failures in a row (each within `stableAfter` of its start) before `crashed`.
    static let maxQuickFailures = 5
    static let stableAfter = Duration.seconds(60)
    static let maxBackoff = Duration.seconds(30)
    /// Events one turn may record; more are dropped.
    static let maxEventsPerTurn = 10_000
    /// Work one asking job may have queued or in flight for one peer at a time.
    static let maxPerAsker = 16

    private var hosts: [Key: Host] = [:]
    private var generations = 0
    let pool: WorkerPool
    let audit: AuditLog
    let logger: Logger

    public init(pool: WorkerPool, audit: AuditLog, logger: Logger) {
        self.pool = pool
        self.audit = audit
        self.logger = logger
    }

    /// Where a resident peer keeps its home, kept across its lives.
    nonisolated func home(of key: Key) -> String { pool.configuration.workspaceRoot + "/" + key.kind.homes + "/" + key.id }

    // MARK: Reconciling with config

    /// Starts the peers config adds, restarts those whose launch or ceiling
    /// changed, stops those it removes; the rest keep running.
    public func apply(_ wanted: [Key: Wanted]) {
        for (key, w) in wanted.sorted(by: { $0.key.id < $1.key.id }) {
            if let h = hosts[key], h.wanted == w, !h.stopping, h.status.state != .crashed { continue }
            if hosts[key] != nil { stop(key, reason: "config changed") }
            start(key, w)
        }
        for key in hosts.keys where wanted[key] == nil && hosts[key]?.stopping == false {
            stop(key, reason: "removed from config")
        }
    }

    private func start(_ key: Key, _ wanted: Wanted) {
        generations += 1
        let generation = generations
        let previous = hosts[key]?.status
        let previousJob = hosts[key]?.jobId
        hosts[key] = Host(wanted: wanted, generation: generation,
                          status: Status(kind: key.kind, id: key.id, state: .starting, pid: nil, restarts: previous?.restarts ?? 0,
                                         lastExit: previous?.lastExit, since: Date(), served: previous?.served ?? 0, queued: 0))
        Task { await supervise(key, generation: generation, after: previousJob) }
    }

    private func stop(_ key: Key, reason: String) {
        guard var h = hosts[key] else { return }
        h.stopping = true
        h.status.state = .stopped
        h.status.since = Date()
        h.waiter?.resume(returning: ResidentNext.Result(work: nil, stop: true))
        h.waiter = nil
        h.waiterExpiry?.cancel()
        for p in h.queue {
            p.timer?.cancel()
            p.continuation.resume(throwing: WorkFailure(description: "\(key) stopped: \(reason)"))
        }
        h.queue = []
        h.status.queued = 0
        // Work it was doing ends now, and so does its worker (a wedged one included).
        for p in h.inFlight.values {
            p.timer?.cancel()
            p.continuation.resume(returning: Self.failed(p.work, "\(key) stopped: \(reason)"))
        }
        h.inFlight = [:]
        if let job = h.jobId { Task { [pool] in await pool.cancel(jobId: job) } }
        hosts[key] = h
        audit.record(actor: "gateway", action: key.kind.auditPrefix + ".stopped", details: [key.kind.auditKey: key.id, "reason": reason])
    }

    /// Every resident peer asked to stop (the gateway is stopping).
    public func stopAll() {
        for key in hosts.keys where hosts[key]?.stopping == false { stop(key, reason: "gateway stopping") }
    }

    // MARK: Supervising

    private func supervise(_ key: Key, generation: Int, after previousJob: String?) async {
        // The last life (stopped by a change of config) must be gone before its
        // home is handed to the next: it could otherwise still plant links in it.
        if let previousJob {
            for _ in 0..<500 where pool.assignments.withLock({ $0[previousJob] != nil }) {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        var failures = 0
        while let h = hosts[key], h.generation == generation, !h.stopping {
            let started = ContinuousClock.now
            let jobId = "\(key.kind == .agent ? "agent" : "mcp")-\(key.id)-\(UUID().uuidString.prefix(8).lowercased())"
            hosts[key]?.jobId = jobId
            hosts[key]?.status.state = .starting
            hosts[key]?.status.since = Date()
            let ended = await host(key, h.wanted, jobId: jobId)
            failInFlight(key, generation: generation, why: "the \(key.kind.noun)'s worker ended: \(ended)")
            guard var now = hosts[key], now.generation == generation else { return }
            now.jobId = nil
            now.status.pid = nil
            if now.stopping {
                hosts[key] = now
                return
            }
            now.status.restarts += 1
            now.status.lastExit = ended
            failures = ContinuousClock.now - started >= Self.stableAfter ? 1 : failures + 1
            audit.record(actor: "gateway", action: key.kind.auditPrefix + ".exited",
                         details: [key.kind.auditKey: key.id, "cause": ended, "restarts": "\(now.status.restarts)"])
            logger.warning("resident peer ended", metadata: ["peer": "\(key)", "cause": "\(ended)"])
            if failures > Self.maxQuickFailures {
                now.status.state = .crashed
                now.status.since = Date()
                for p in now.queue {
                    p.timer?.cancel()
                    p.continuation.resume(throwing: WorkFailure(description: "\(key) crashed: \(ended)"))
                }
                now.queue = []
                now.status.queued = 0
                hosts[key] = now
                audit.record(actor: "gateway", action: key.kind.auditPrefix + ".crashed", details: [key.kind.auditKey: key.id, "cause": ended])
                return
            }
            now.status.state = .backoff
            now.status.since = Date()
            hosts[key] = now
            let delay = min(Duration.seconds(1) * (1 << min(failures - 1, 10)), Self.maxBackoff)
            try? await Task.sleep(for: delay)
        }
    }

    /// One life of the peer: a worker, its home, until the job ends.
    private func host(_ key: Key, _ wanted: Wanted, jobId: String) async -> String {
        let home = home(of: key)
        do { try Self.prepareHome(home) } catch { return "cannot prepare its home \(home): \(error)" }
        // No lifetime CPU limit for a process that lives for weeks: its work is
        // bounded per call and turn instead.
        let limits = { var l = pool.tunables.stepLimits; l.cpuSeconds = 0; return l }()
        switch key.kind {
        case .agent:
            return await perform(AgentHost.self, key, jobId: jobId, home: home) { workspace in
                HostParams(jobId: jobId, workspace: workspace, home: home, peer: wanted.launch, ceiling: wanted.ceiling, limits: limits)
            }
        case .mcpServer:
            return await perform(MCPHost.self, key, jobId: jobId, home: home) { workspace in
                HostParams(jobId: jobId, workspace: workspace, home: home, peer: wanted.launch, ceiling: wanted.ceiling, limits: limits)
            }
        }
    }

    private func perform<M: RPCMethod>(_ method: M.Type, _ key: Key, jobId: String, home: String,
                                       params: @escaping @Sendable (String) -> M.Params) async -> String where M.Result == HostEnded {
        var options = WorkerPool.JobOptions(jobId: jobId)
        // An agent's turns stream events (bounded per turn); a server's calls emit none.
        options.eventBudget = key.kind == .agent ? Int.max : 0
        options.diskPaths = [home]
        let pool = self.pool
        let (answer, outcome) = await pool.perform(
            M.self, options: options, timeout: .seconds(10 * 365 * 86_400),
            events: { [weak self] event in await self?.route(key, jobId: jobId, event) },
            requests: { [weak self] request in
                guard let self else { return .error(RPCError(code: RPCError.internalError, message: "the gateway is stopping")) }
                return await self.serve(key, jobId: jobId, request)
            },
            params: { workspace in
                // The home is the peer's across restarts; each life runs as a new uid.
                if let uid = pool.assignments.withLock({ $0[jobId]?.uid }) { Self.chownTree(home, uid: uid) }
                return params(workspace)
            })
        // Back to root between lives: the uid this life had may go to another worker.
        Self.chownTree(home, uid: 0)
        return answer?.ended ?? outcome.failure ?? "ended without an answer"
    }

    // MARK: Work

    struct WorkFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// A turn for resident agent `id`; its events go to `sink` while it runs.
    public func turn(agent id: String, _ turn: AgentTurn, asker: String, wanted: @escaping @Sendable () -> Bool,
                     sink: @escaping @Sendable (JobEvent) async -> Void) async throws -> AgentTurnResult {
        guard case let .turn(result) = try await submit(Key(.agent, id), .turn(turn), timeoutMs: turn.timeoutMs, asker: asker, wanted: wanted,
                                                        sink: sink) else {
            throw WorkFailure(description: "agent \(id) answered a turn with something else")
        }
        return result
    }

    /// An operation on resident MCP server `id`.
    public func call(server id: String, _ call: MCPCall, asker: String, wanted: @escaping @Sendable () -> Bool) async throws -> MCPCallResult {
        guard case let .call(result) = try await submit(Key(.mcpServer, id), .call(call), timeoutMs: call.timeoutMs, asker: asker, wanted: wanted,
                                                        sink: { _ in }) else {
            throw WorkFailure(description: "MCP server \(id) answered a call with something else")
        }
        return result
    }

    private func submit(_ key: Key, _ work: ResidentWork, timeoutMs: Int, asker: String, wanted: @escaping @Sendable () -> Bool,
                        sink: @escaping @Sendable (JobEvent) async -> Void) async throws -> ResidentOutcome {
        guard let h = hosts[key], !h.stopping else { throw WorkFailure(description: "\(key) is not running (resident peers start with the gateway)") }
        if h.status.state == .crashed { throw WorkFailure(description: "\(key) crashed: \(h.status.lastExit ?? "")") }
        // One run's worker cannot fill the queue everyone shares.
        let outstanding = h.queue.count { $0.asker == asker } + h.inFlight.values.count { $0.asker == asker }
        guard outstanding < Self.maxPerAsker else {
            throw WorkFailure(description: "\(Self.maxPerAsker) calls to \(key) are already waiting or running for this run")
        }
        let outcome: ResidentOutcome = try await withCheckedThrowingContinuation { cont in
            var pending = Pending(work: work, continuation: cont, sink: sink, asker: asker, wanted: wanted, timeoutMs: timeoutMs)
            if let waiter = hosts[key]?.waiter {
                hosts[key]?.waiter = nil
                hosts[key]?.waiterExpiry?.cancel()
                pending.timer = arm(key, work.id, after: .milliseconds(timeoutMs) + .seconds(10))
                hosts[key]?.inFlight[work.id] = pending
                waiter.resume(returning: ResidentNext.Result(work: work))
            } else {
                // Work nobody takes (the peer keeps failing to start) gives up with its step.
                pending.timer = arm(key, work.id, after: .milliseconds(timeoutMs))
                hosts[key]?.queue.append(pending)
                hosts[key]?.status.queued = hosts[key]?.queue.count ?? 0
            }
        }
        hosts[key]?.status.served += 1
        return outcome
    }

    private func arm(_ key: Key, _ workId: String, after limit: Duration) -> Task<Void, Never> {
        Task { [weak self] in
            try? await Task.sleep(for: limit)
            guard !Task.isCancelled else { return }
            await self?.abandon(key, workId: workId)
        }
    }

    /// The next queued work whose step still wants it, now in flight; work whose
    /// step ended while it waited ends here, without reaching the peer.
    private func handOver(_ key: Key) -> ResidentWork? {
        while var p = hosts[key]?.queue.first {
            hosts[key]?.queue.removeFirst()
            hosts[key]?.status.queued = hosts[key]?.queue.count ?? 0
            p.timer?.cancel()
            guard p.wanted() else {
                p.continuation.resume(throwing: WorkFailure(description: "the asking step ended while its call to \(key) waited"))
                continue
            }
            // Its time runs from now: a peer's worker bounds each piece of work by it.
            p.timer = arm(key, p.work.id, after: .milliseconds(p.timeoutMs) + .seconds(10))
            hosts[key]?.inFlight[p.work.id] = p
            return p.work
        }
        return nil
    }

    /// How work that did not end in its peer ends.
    static func failed(_ work: ResidentWork, _ why: String, timedOut: Bool = false) -> ResidentOutcome {
        switch work {
        case .turn: .turn(AgentTurnResult(error: why, timedOut: timedOut))
        case .call: timedOut ? .call(.timedOut) : .call(.failed(why))
        }
    }

    private func abandon(_ key: Key, workId: String) {
        if let i = hosts[key]?.queue.firstIndex(where: { $0.work.id == workId }), let p = hosts[key]?.queue.remove(at: i) {
            p.timer?.cancel()
            hosts[key]?.status.queued = hosts[key]?.queue.count ?? 0
            p.continuation.resume(throwing: WorkFailure(description: "\(key) did not take the work in time (\(hosts[key]?.status.state.rawValue ?? "gone"))"))
            return
        }
        guard let p = hosts[key]?.inFlight.removeValue(forKey: workId) else { return }
        p.timer?.cancel()
        p.continuation.resume(returning: p.done ?? Self.failed(p.work, "\(key) did not end the work in time; its worker is stopped", timedOut: true))
        if p.done == nil, let job = hosts[key]?.jobId { Task { [pool] in await pool.cancel(jobId: job) } }
    }

    private func failInFlight(_ key: Key, generation: Int, why: String) {
        guard let h = hosts[key], h.generation == generation else { return }
        for p in h.inFlight.values {
            p.timer?.cancel()
            p.continuation.resume(returning: Self.failed(p.work, why))
        }
        hosts[key]?.inFlight = [:]
        hosts[key]?.waiter?.resume(returning: ResidentNext.Result(work: nil, stop: true))
        hosts[key]?.waiter = nil
        hosts[key]?.waiterExpiry?.cancel()
    }

    /// What the host worker asks: the next work (held until some comes, or
    /// `waitMs`), and a work's end. Only from the job that hosts the peer now.
    private func serve(_ key: Key, jobId: String, _ request: RPCIncoming) async -> RPCReply {
        guard hosts[key]?.jobId == jobId else { return .error(RPCError(code: RPCError.notAllowed, message: "not this peer's host")) }
        switch request.method {
        case ResidentNext.name:
            guard let params = try? request.params(as: ResidentNext.Params.self), params.jobId == jobId else {
                return .error(RPCError(code: RPCError.invalidParams, message: "resident.next needs this job's id"))
            }
            // A stopped peer's late question is answered, and changes nothing.
            if hosts[key]?.stopping == true { return .result(ResidentNext.Result(work: nil, stop: true)) }
            hosts[key]?.status.state = .running
            if hosts[key]?.status.pid == nil { hosts[key]?.status.pid = pool.assignments.withLock { $0[jobId]?.pid } }
            if let work = handOver(key) { return .result(ResidentNext.Result(work: work)) }
            let wait = Duration.milliseconds(min(max(params.waitMs, 100), 25_000))
            let next: ResidentNext.Result = await withCheckedContinuation { cont in
                // One question at a time: an earlier one still held is answered empty.
                hosts[key]?.waiter?.resume(returning: ResidentNext.Result(work: nil))
                hosts[key]?.waiterExpiry?.cancel()
                hosts[key]?.waiter = cont
                hosts[key]?.waiterExpiry = Task { [weak self] in
                    try? await Task.sleep(for: wait)
                    guard !Task.isCancelled else { return }
                    await self?.expireWaiter(key)
                }
            }
            return .result(next)
        case ResidentDone.name:
            guard let params = try? request.params(as: ResidentDone.Params.self), params.jobId == jobId,
                  var p = hosts[key]?.inFlight[params.workId], p.done == nil, Self.fits(params.outcome, p.work) else {
                return .error(RPCError(code: RPCError.invalidParams, message: "resident.done for no work of this peer"))
            }
            // The answer can overtake the work's last events: it ends once they are recorded (or 5 s on).
            p.done = params.outcome
            p.expected = min(params.events, Self.maxEventsPerTurn)
            hosts[key]?.inFlight[params.workId] = p
            if p.recorded >= p.expected { finish(key, workId: params.workId) } else {
                let workId = params.workId
                Task { [weak self] in
                    try? await Task.sleep(for: .seconds(5))
                    await self?.finish(key, workId: workId)
                }
            }
            return .result(Empty())
        default:
            return .error(RPCError(code: RPCError.notAllowed, message: "\(request.method) is not for a resident peer's host"))
        }
    }

    /// A turn's end answers a turn, a call's a call.
    static func fits(_ outcome: ResidentOutcome, _ work: ResidentWork) -> Bool {
        switch (outcome, work) {
        case (.turn, .turn), (.call, .call): true
        default: false
        }
    }

    private func finish(_ key: Key, workId: String) {
        guard let p = hosts[key]?.inFlight[workId], let outcome = p.done else { return }
        hosts[key]?.inFlight[workId] = nil
        p.timer?.cancel()
        p.continuation.resume(returning: outcome)
    }

    private func expireWaiter(_ key: Key) {
        hosts[key]?.waiter?.resume(returning: ResidentNext.Result(work: nil))
        hosts[key]?.waiter = nil
        hosts[key]?.waiterExpiry = nil
    }

    /// An event of a turn, to the run whose step asked for it.
    private func route(_ key: Key, jobId: String, _ event: JobEvent) async {
        guard hosts[key]?.jobId == jobId, let workId = event.step, var p = hosts[key]?.inFlight[workId] else { return }
        p.events += 1
        hosts[key]?.inFlight[workId] = p
        if p.events <= Self.maxEventsPerTurn { await p.sink(event) }
        guard var now = hosts[key]?.inFlight[workId] else { return }
        now.recorded += 1
        hosts[key]?.inFlight[workId] = now
        if now.done != nil, now.recorded >= now.expected { finish(key, workId: workId) }
    }

    // MARK: Reading

    public func statuses(_ kind: Kind) -> [Status] { hosts.filter { $0.key.kind == kind }.values.map(\.status).sorted { $0.id < $1.id } }
    public func status(_ kind: Kind, _ id: String) -> Status? { hosts[Key(kind, id)]?.status }
}
