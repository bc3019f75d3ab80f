import Crypto
import Foundation
import Logging
import Synchronization
import Wire
import Workflow

/// Takes runs in, keeps at most `maxConcurrentRuns` of them in workers, persists
/// what their workers report, and ends each exactly once.
public actor RunService {
    public enum SubmitError: Error, Sendable {
        case unknownWorkflow(String)
        case invalidInput([JSONSchema.Violation])
        case idempotencyConflict(runId: String)
        case invalidPermissions(String)
        case stopping
        /// An operator paused the gateway: no new runs until it is resumed.
        case paused(Admission.Pause)
        /// A step names a provider, agent, MCP server or skill config does not define.
        case unregistered(step: String, what: Registered, name: String)
    }

    /// The first name a step uses that config does not register.
    nonisolated static func unregistered(in definition: WorkflowDefinition, providers: [String: GatewayConfig.Provider],
                                         peers: PeerRegistry) -> (String, Registered, String)? {
        for step in definition.allSteps {
            switch step.kind {
            case let .infer(infer) where providers[infer.provider] == nil:
                return (step.id, .providers, infer.provider)
            case let .agent(a):
                if peers.agents[a.agent] == nil { return (step.id, .agents, a.agent) }
                if let s = a.mcpServers.first(where: { peers.mcpServers[$0] == nil }) { return (step.id, .mcpServers, s) }
                if let s = a.skills.first(where: { peers.skills.skills[$0] == nil }) { return (step.id, .skills, s) }
            case let .mcp(m) where peers.mcpServers[m.server] == nil:
                return (step.id, .mcpServers, m.server)
            default:
                continue
            }
        }
        return nil
    }

    /// What config registers by name, as its key writes it.
    public enum Registered: String, Sendable {
        case providers, agents, mcpServers, skills

        var noun: String {
            switch self {
            case .providers: "provider"
            case .agents: "agent"
            case .mcpServers: "MCP server"
            case .skills: "skill"
            }
        }
    }


    let store: RunStore
    let registry: WorkflowRegistry
    let pool: WorkerPool
    let hub: RunEventHub
    let audit: AuditLog
    let egress: EgressDirectory
    let admission: Admission
    /// Makes the requests of `http` and `infer` steps.
    let requester: StepRequester
    let logger: Logger
    /// Read where each run starts; replaced whole by a reload (`apply`).
    private let settings: Mutex<RunSettings>
    /// Agents waiting, in their workers, for a person to decide their permission request.
    let permissionWaiters = PermissionWaiters()
    /// Resident agents, which agent steps reach through `agent.turn`.
    public let residents: ResidentPeers

    nonisolated var policies: PolicyResolver { settings.withLock { $0.policies } }
    nonisolated var secrets: SecretStore { settings.withLock { $0.secrets } }
    nonisolated var maxConcurrent: Int { settings.withLock { $0.maxConcurrent } }
    nonisolated var maxRunStorageBytes: Int { settings.withLock { $0.maxRunStorageBytes } }
    nonisolated var runTimeout: Duration { settings.withLock { $0.runTimeout } }
    nonisolated var stepTimeoutMs: Int { settings.withLock { $0.stepTimeoutMs } }
    public nonisolated var current: RunSettings { settings.withLock { $0 } }

    /// A run waiting for a slot. A fresh run carries its input, so starting it
    /// reads nothing back; a resumed one reads its input and checkpoints from the store.
    struct Queued: Sendable {
        var id: String
        var definition: WorkflowDefinition
        var resumed: Bool
        var input: JSONValue?
        /// Why the last segment ended without an answer (a restart, a worker's
        /// death): its steps still running then were interrupted by it.
        var interruptedBy: String?
        /// The run as the store said it was when this was queued, when that was
        /// read rather than known: it starts only if it still is.
        var expected: RunStore.Expected? = nil
    }

    /// Runs a trigger fired, as they end: its scheduler starts what waited for them.
    public nonisolated let endings = Endings()

    public final class Endings: Sendable {
        public typealias Ending = (trigger: String, run: String, status: RunStatus, error: String?)
        public let stream: AsyncStream<Ending>
        let feed: AsyncStream<Ending>.Continuation
        init() { (stream, feed) = AsyncStream.makeStream(bufferingPolicy: .unbounded) }
    }

    var queue: [Queued] = []
    var active: [String: Active] = [:]
    /// Segments of a run that ended because one of their events could not be
    /// stored: a store that keeps refusing them ends the run rather than loop.
    var unstoredSegments: [String: Int] = [:]
    /// Sync callers waiting for a run's end. A run that ends hands them its
    /// record, read in the transaction that ended it (nil when it parked, or
    /// its end could not be recorded: they read it themselves).
    var waiters: [String: [RunEnding]] = [:]
    var stopping = false
    /// Runs the last sweep found stranded, as it found each (`resumeStranded`).
    var strandedSeen: [String: RunStore.Expected] = [:]
    /// Stranded resumes of each run in a row, forgotten when it ends.
    var strandedResumes: [String: Int] = [:]
    /// `resumeUnfinished` has queued what the last gateway left: only then is a
    /// run with nothing running it here stranded rather than not yet resumed.
    var resumedAtStart = false

    public init(store: RunStore, registry: WorkflowRegistry, pool: WorkerPool, hub: RunEventHub, audit: AuditLog,
                egress: EgressDirectory, settings: RunSettings, admission: Admission, requester: StepRequester,
                logger: Logger = Logger(label: "skelm.runs")) {
        self.residents = ResidentPeers(pool: pool, audit: audit, logger: logger)
        self.store = store
        self.registry = registry
        self.pool = pool
        self.hub = hub
        self.audit = audit
        self.egress = egress
        self.settings = Mutex(settings)
        self.admission = admission
        self.requester = requester
        self.logger = logger
    }

    /// A reload's new settings: runs that start from now on use them. More
    /// slots start queued runs at once; fewer let running ones finish.
    public func apply(_ new: RunSettings) {
        settings.withLock { $0 = new }
        pump()
    }

    public var counts: (queued: Int, running: Int) { (queue.count, active.count) }

    // MARK: Submitting

    /// Creates the run row (or finds the one this idempotency key made) and queues it.
    ///
    /// The checks that cost in proportion to what the caller sent (policies,
    /// the input schema with its patterns) run here, off the actor: a slow
    /// input delays its own request, never the runs and routes that wait on
    /// the run service.
    ///
    /// `definition` runs one that is not in the registry (a poll trigger's probe).
    /// `ending`, when the run is created, is resumed at its end (or when it
    /// parks); a run found by its idempotency key leaves it untouched, to wait
    /// on with `waitUntilFinished`.
    public nonisolated func submit(workflow id: String, definition given: WorkflowDefinition? = nil, input: JSONValue, idempotencyKey: String?,
                                   actor: String = "api", origin: RunOrigin? = nil, ending: RunEnding? = nil) async throws -> (RunRecord, created: Bool) {
        if let pause = admission.paused { throw SubmitError.paused(pause) }
        var found = given
        if found == nil { found = await registry.workflow(id) }
        guard let definition = found else { throw SubmitError.unknownWorkflow(id) }
        do { _ = try policies.policies(for: definition) } catch { throw SubmitError.invalidPermissions("\(error)") }
        if let (step, what, name) = Self.unregistered(in: definition, providers: current.requests.providers, peers: policies.peers) {
            throw SubmitError.unregistered(step: step, what: what, name: name)
        }
        if let schema = definition.input {
            let violations = JSONSchema(schema).validate(input)
            if !violations.isEmpty { throw SubmitError.invalidInput(violations) }
        }
        return try await create(definition, input: input, idempotencyKey: idempotencyKey, actor: actor, origin: origin, ending: ending)
    }

    private func create(_ definition: WorkflowDefinition, input: JSONValue, idempotencyKey: String?, actor: String,
                        origin: RunOrigin?, ending: RunEnding?) async throws -> (RunRecord, created: Bool) {
        if stopping { throw SubmitError.stopping }
        // Again here, after the checks above awaited: a pause confirmed meanwhile holds.
        if let pause = admission.paused { throw SubmitError.paused(pause) }
        let id = definition.id
        let hash = AuditEntry.sha256Hex(id + "\n" + input.jsonText)
        let runId = RandomID.hex("run_")
        // A free slot and nobody waiting: the run is created already started, and
        // its slot is taken now, before the await, so no other submit takes it.
        let slot: Active? = !stopping && queue.isEmpty && active.count < maxConcurrent ? Active(watch: pool.watch) : nil
        if let slot { active[runId] = slot }
        func release() {
            guard slot != nil else { return }
            active[runId] = nil
            pump()
        }
        let created: RunStore.Created
        do {
            created = try await store.create(id: runId, workflow: id, input: input, idempotencyKey: idempotencyKey,
                                             requestHash: hash, start: slot != nil, origin: origin, fleetCap: current.fleetMaxConcurrent)
        } catch {
            release()
            throw error
        }
        switch created {
        case let .conflict(other):
            release()
            throw SubmitError.idempotencyConflict(runId: other)
        case let .existing(run):
            release()
            return (run, false)
        case let .created(run, queued, started):
            var details = ["workflow": id]
            if let idempotencyKey { details["idempotencyKey"] = idempotencyKey }
            if let origin { details["trigger"] = origin.triggerId }
            if let slot, let started {
                do {
                    try await audit.appendAll([(actor: actor, action: "run.created", runId: runId, details: details),
                                               (actor: "gateway", action: "run.started", runId: runId,
                                                details: ["workflow": id, "job": slot.jobId])])
                } catch {
                    // The row says running; the next start resumes it.
                    release()
                    throw error
                }
                hub.publish(queued)
                hub.publish(started)
                if let ending { waiters[runId, default: []].append(ending) }
                Task { await self.execute(Queued(id: runId, definition: definition, resumed: false, input: input), slot, started: true) }
                return (run, true)
            }
            // Queued: no free slot here, or none left in the fleet (the slot taken above is given back).
            if slot != nil {
                active[runId] = nil
                fleetFull()
            }
            try await audit.append(actor: actor, action: "run.created", runId: runId, details: details)
            hub.publish(queued)
            if let ending { waiters[runId, default: []].append(ending) }
            queue.append(Queued(id: runId, definition: definition, resumed: false, input: input, expected: .fresh))
            pump()
            return (run, true)
        }
    }

    /// Returns once the run has ended, or parked waiting for a decision or an
    /// output (at once if it already has). Child runs it waits on are waited for.
    /// Returns the ended run's record when its end came while waiting.
    @discardableResult
    public func waitUntilFinished(_ runId: String) async -> RunRecord? {
        guard let run = try? await store.run(runId, withSteps: false), !run.status.isTerminal else { return nil }
        if run.status == .waiting {
            let waits = (try? await store.pendingWaits(runId: runId)) ?? []
            let approvals = ((try? await store.approvals(status: .pending, runId: runId, limit: 100)) ?? []).filter { $0.kind == .step }
            guard !waits.isEmpty, approvals.isEmpty, waits.allSatisfy({ $0.kind == .invoke }) else { return nil }
        } else {
            guard active[runId] != nil || queue.contains(where: { $0.id == runId }) else { return nil }
        }
        let ending = RunEnding()
        waiters[runId, default: []].append(ending)
        return await ending.record
    }

    // MARK: Cancelling

    /// Ends a queued or running run as cancelled and kills its worker. A run that
    /// already ended is returned as it is: cancelling twice is harmless.
    public func cancel(_ runId: String, actor: String = "api") async throws -> RunRecord? {
        guard let run = try await store.run(runId, withSteps: false) else { return nil }
        if run.status.isTerminal { return try await store.run(runId) }
        let failure = StepFailure(.cancelled, step: nil, message: "cancelled")
        try await audit.append(actor: actor, action: "run.cancel", runId: runId, details: ["workflow": run.workflow])
        if let a = active[runId] {
            // The worker stops first: from the flag on, nothing it reports is
            // stored, so it must not go on. If the store then cannot record the
            // cancel, the run is as after a worker's death (still running, its
            // segment gone) and the stranded-run sweep resumes it.
            a.cancelled.withLock { $0 = true }
            await pool.cancel(jobId: a.jobId)
            let finished = try await store.finish(runId: runId, status: .cancelled, output: nil, error: failure, anywhere: true)
            audit.record(actor: "gateway", action: "run.finished", runId: runId, details: ["status": "cancelled", "workflow": run.workflow])
            await settle(finished)
        } else {
            // Queued, waiting (its approvals, waits and child runs end with it), or
            // queued for a new segment: ended here.
            let queued = queue.filter { $0.id == runId }
            queue.removeAll { $0.id == runId }
            if let error = await end(runId, .cancelled, output: nil, error: failure, anywhere: true) {
                // Not cancelled: it stays queued, as it was, and the caller hears why.
                queue.insert(contentsOf: queued, at: 0)
                pump()
                throw error
            }
            // Running on another gateway: it kills the worker when it hears,
            // and the store already refuses what that worker still reports.
            if run.status == .running, run.gateway != store.member, store.shared != nil {
                try? await store.signal(.cancel(runId: runId))
            }
        }
        return try await store.run(runId)
    }

    // MARK: Restart and drain

    /// Queues again every run the last gateway left queued or running; each
    /// continues from its last checkpoint in a fresh worker.
    public func resumeUnfinished() async throws {
        for child in try await store.orphanedChildren() {
            await end(child, .cancelled, output: nil, error: StepFailure(.cancelled, step: nil, message: "its parent run has ended"))
        }
        for stalled in try await store.stalledWaiting() {
            if let failure = stalled.failed {
                await end(stalled.runId, .failed, output: nil, error: failure)
            } else {
                logger.info("resuming a run whose waits were all resolved", metadata: ["run": "\(stalled.runId)"])
                await requeueStalled(stalled.runId)
            }
        }
        await adopt(try await store.unfinished(), cause: "the gateway stopped")
        resumedAtStart = true
    }

    /// Queues runs this gateway now holds, left queued or running by a gateway
    /// that stopped (itself, before a restart, or another of the fleet whose
    /// lease lapsed); each goes on from its checkpoints in a fresh worker.
    func adopt(_ runs: [RunRecord], cause: String) async {
        for run in runs where active[run.id] == nil && !queue.contains(where: { $0.id == run.id }) {
            if let parent = run.parentRunId, let p = try? await store.run(parent, withSteps: false), p.status.isTerminal {
                // Its parent ended while the gateway was down, before it could cancel it.
                await end(run.id, .cancelled, output: nil, error: StepFailure(.cancelled, step: nil, message: "its parent run \(parent) has ended"))
                continue
            }
            guard let definition = await registry.workflow(run.workflow) else {
                await endWorkflowGone(run.id, run.workflow)
                continue
            }
            logger.info("resuming run", metadata: ["run": "\(run.id)", "workflow": "\(run.workflow)"])
            queue.append(Queued(id: run.id, definition: definition, resumed: run.status == .running, input: nil,
                                interruptedBy: run.status == .running ? cause : nil,
                                expected: RunStore.Expected(status: run.status, segments: run.segments)))
        }
        pump()
    }

    /// Runs of another gateway this one may take over now: enough to keep its
    /// slots busy, no more (the rest stay for the fleet's other gateways).
    var roomToAdopt: Int { stopping ? 0 : max(0, maxConcurrent * 2 - active.count - queue.count) }

    /// A run of this gateway was cancelled from another gateway (which ended
    /// it in the store): its worker is killed here.
    func stopCancelled(_ runId: String) async {
        queue.removeAll { $0.id == runId }
        guard let a = active[runId], !a.cancelled.withLock({ was in defer { was = true }; return was }) else { return }
        await pool.cancel(jobId: a.jobId)
        release(runId)
    }

    /// Stops taking runs and waits (up to `timeout`) for running ones to end.
    /// What is still queued or running stays so in the store and resumes on the next start.
    public func drain(timeout: Duration) async {
        stopping = true
        queue.removeAll()
        let deadline = ContinuousClock.now + timeout
        while !active.isEmpty, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        // What did not finish in time stops where it is: its completed steps are
        // checkpointed, and the next start resumes it from them.
        for runId in active.keys.sorted() {
            audit.record(actor: "gateway", action: "run.interrupted", runId: runId, details: [
                "reason": "the drain ended before the run did; it resumes at the next start",
            ])
        }
    }

    // MARK: Running

    /// The fleet was full at the last start: nothing starts here before this.
    /// (Runs ending on other gateways make room this one does not hear of, so
    /// it looks again after a short while rather than waiting to be told.)
    var fleetWait: ContinuousClock.Instant?

    func fleetFull() {
        guard fleetWait == nil else { return }
        fleetWait = .now + .milliseconds(200)
        Task {
            try? await Task.sleep(for: .milliseconds(200))
            self.fleetWait = nil
            self.pump()
        }
    }

    /// Starts queued runs while there are slots. A run that already has a
    /// segment here waits for it to end (a run resumed before its parked
    /// segment returned, or queued twice): a run has one slot at a time.
    func pump() {
        while !stopping, fleetWait == nil, active.count < maxConcurrent,
              let index = queue.firstIndex(where: { active[$0.id] == nil }) {
            let next = queue.remove(at: index)
            let a = Active(watch: pool.watch)
            active[next.id] = a
            Task { await self.execute(next, a) }
        }
    }

    /// Ends a run; returns why its end could not be recorded, if it could not.
    @discardableResult
    func end(_ runId: String, _ status: RunStatus, output: JSONValue?, error: StepFailure?, auditFirst: [AuditItem] = [],
             anywhere: Bool = false) async -> (any Error)? {
        var failed: (any Error)?
        var record: RunRecord?
        do {
            var details = ["status": status.rawValue]
            if let error {
                details["code"] = error.code
                if let step = error.step { details["step"] = step }
            }
            try await audit.appendAll(auditFirst + [(actor: "gateway", action: "run.finished", runId: runId, details: details)])
            let finished = try await store.finish(runId: runId, status: status, output: output, error: error, anywhere: anywhere,
                                                  readBack: waiters[runId] != nil)
            if finished.event == nil {
                // The entry above went first (an action is audited before it is done),
                // and the store then refused it: the chain says so rather than keep a
                // run.finished the run never had.
                audit.record(actor: "gateway", action: "run.finish_refused", runId: runId,
                             details: ["status": status.rawValue, "reason": "the run had already ended, or is held by another gateway"])
            }
            await settle(finished)
            if finished.event != nil { strandedResumes[runId] = nil }
            record = finished.record
        } catch {
            logger.error("cannot record the end of a run", metadata: ["run": "\(runId)", "error": "\(error)"])
            failed = error
        }
        release(runId, record)
        return failed
    }

    /// A run queued again whose workflow the registry no longer has: it fails.
    func endWorkflowGone(_ runId: String, _ workflow: String) async {
        await end(runId, .failed, output: nil, error: StepFailure(.workflowMissing, step: nil, message: "workflow \(workflow) is no longer defined"))
    }

    /// Whoever waits for the run's end (a sync `POST /runs`) stops waiting.
    func release(_ runId: String, _ record: RunRecord? = nil) {
        for w in waiters.removeValue(forKey: runId) ?? [] { w.resume(record) }
    }

    /// Publishes a run's end and carries it to its parent, if it has one: the
    /// parent goes on (queued again) or fails with it. Its own child runs, still
    /// going after it failed or was cancelled, are cancelled with it.
    func settle(_ finished: RunStore.Finished) async {
        if let event = finished.event { hub.publish(event) }
        if let triggerId = finished.triggerId, let outcome = finished.triggerOutcome, let event = finished.event {
            endings.feed.yield((triggerId, event.runId, outcome.status, outcome.error))
        }
        finished.parentEvents.forEach(hub.publish)
        for child in finished.children {
            _ = try? await cancel(child, actor: "gateway")
        }
        switch finished.parent {
        case nil, .waiting?:
            break
        case let .ready(parentId)?:
            await requeue(parentId)
        case let .failed(parentId, failure)?:
            await end(parentId, .failed, output: nil, error: failure)
        }
    }

    /// A waiting run with nothing pending (a crash came between its last
    /// resolution and its queueing) is queued now.
    private func requeueStalled(_ runId: String) async {
        guard (try? await store.requeue(runId: runId)) == true else { return }
        await requeue(runId)
    }

    /// A parked run whose waits are all resolved goes back to the queue.
    func requeue(_ runId: String) async {
        guard let run = try? await store.run(runId, withSteps: false) else { return }
        guard let definition = await registry.workflow(run.workflow) else {
            await endWorkflowGone(runId, run.workflow)
            return
        }
        // Only the run as its resolution queued it: one started meanwhile is not started again.
        guard run.status == .queued else { return }
        queue.append(Queued(id: runId, definition: definition, resumed: true, input: nil,
                            expected: RunStore.Expected(status: .queued, segments: run.segments)))
        pump()
    }
}

extension RunService.SubmitError: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .unregistered(step, what, name):
            "step \(step) uses \(what.noun) '\(name)', which config does not define (\(what.rawValue):)"
        default:
            "\(String(reflecting: self))"
        }
    }
}
