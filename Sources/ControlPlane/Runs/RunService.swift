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
    }


    let store: RunStore
    let registry: WorkflowRegistry
    let pool: WorkerPool
    let hub: RunEventHub
    let audit: AuditLog
    let egress: EgressDirectory
    let admission: Admission
    let logger: Logger
    /// Read where each run starts; replaced whole by a reload (`apply`).
    private let settings: Mutex<RunSettings>

    nonisolated var policies: PolicyResolver { settings.withLock { $0.policies } }
    nonisolated var secrets: SecretStore { settings.withLock { $0.secrets } }
    nonisolated var maxConcurrent: Int { settings.withLock { $0.maxConcurrent } }
    nonisolated var maxRunStorageBytes: Int { settings.withLock { $0.maxRunStorageBytes } }
    nonisolated var runTimeout: Duration { settings.withLock { $0.runTimeout } }
    nonisolated var stepTimeoutMs: Int { settings.withLock { $0.stepTimeoutMs } }
    public nonisolated var current: RunSettings { settings.withLock { $0 } }

    /// Runs waiting for a slot. A fresh run carries its input, so starting it reads
    /// nothing back; a resumed one reads its input and checkpoints from the store.
    var queue: [(id: String, definition: WorkflowDefinition, resumed: Bool, input: JSONValue?)] = []
    var active: [String: Active] = [:]
    var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    var stopping = false

    public init(store: RunStore, registry: WorkflowRegistry, pool: WorkerPool, hub: RunEventHub, audit: AuditLog,
                egress: EgressDirectory, settings: RunSettings, admission: Admission,
                logger: Logger = Logger(label: "skelm.runs")) {
        self.store = store
        self.registry = registry
        self.pool = pool
        self.hub = hub
        self.audit = audit
        self.egress = egress
        self.settings = Mutex(settings)
        self.admission = admission
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
    public nonisolated func submit(workflow id: String, input: JSONValue, idempotencyKey: String?, actor: String = "api") async throws -> (RunRecord, created: Bool) {
        if let pause = admission.paused { throw SubmitError.paused(pause) }
        guard let definition = await registry.workflow(id) else { throw SubmitError.unknownWorkflow(id) }
        do { _ = try policies.policies(for: definition) } catch { throw SubmitError.invalidPermissions("\(error)") }
        if let schema = definition.input {
            let violations = JSONSchema(schema).validate(input)
            if !violations.isEmpty { throw SubmitError.invalidInput(violations) }
        }
        return try await create(definition, input: input, idempotencyKey: idempotencyKey, actor: actor)
    }

    private func create(_ definition: WorkflowDefinition, input: JSONValue, idempotencyKey: String?, actor: String) async throws -> (RunRecord, created: Bool) {
        if stopping { throw SubmitError.stopping }
        // Again here, after the checks above awaited: a pause confirmed meanwhile holds.
        if let pause = admission.paused { throw SubmitError.paused(pause) }
        let id = definition.id
        let hash = AuditEntry.sha256Hex(id + "\n" + input.jsonText)
        let runId = "run_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        // A free slot and nobody waiting: the run is created already started, and
        // its slot is taken now, before the await, so no other submit takes it.
        let slot: Active? = !stopping && queue.isEmpty && active.count < maxConcurrent ? Active() : nil
        if let slot { active[runId] = slot }
        func release() {
            guard slot != nil else { return }
            active[runId] = nil
            pump()
        }
        let created: RunStore.Created
        do {
            created = try await store.create(id: runId, workflow: id, input: input, idempotencyKey: idempotencyKey,
                                             requestHash: hash, start: slot != nil)
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
                Task { await self.execute(runId, definition, resumed: false, input: input, slot, started: true) }
                return (run, true)
            }
            try await audit.append(actor: actor, action: "run.created", runId: runId, details: details)
            hub.publish(queued)
            queue.append((runId, definition, false, input))
            pump()
            return (run, true)
        }
    }

    /// Returns once the run has ended (or at once if it already has).
    public func waitUntilFinished(_ runId: String) async {
        if let run = try? await store.run(runId, withSteps: false), run.status.isTerminal { return }
        guard active[runId] != nil || queue.contains(where: { $0.id == runId }) else { return }
        await withCheckedContinuation { waiters[runId, default: []].append($0) }
    }

    // MARK: Cancelling

    /// Ends a queued or running run as cancelled and kills its worker. A run that
    /// already ended is returned as it is: cancelling twice is harmless.
    public func cancel(_ runId: String, actor: String = "api") async throws -> RunRecord? {
        guard let run = try await store.run(runId, withSteps: false) else { return nil }
        if run.status.isTerminal { return try await store.run(runId) }
        let failure = StepFailure(.cancelled, step: nil, message: "cancelled")
        try await audit.append(actor: actor, action: "run.cancel", runId: runId, details: ["workflow": run.workflow])
        if run.status == .waiting {
            try await store.cancelApprovals(runId: runId)
            await end(runId, .cancelled, output: nil, error: failure)
        } else if let i = queue.firstIndex(where: { $0.id == runId }) {
            queue.remove(at: i)
            await end(runId, .cancelled, output: nil, error: failure)
        } else if let a = active[runId] {
            a.cancelled.withLock { $0 = true }
            if let event = try await store.finish(runId: runId, status: .cancelled, output: nil, error: failure) { hub.publish(event) }
            await pool.cancel(jobId: a.jobId)
            audit.record(actor: "gateway", action: "run.finished", runId: runId, details: ["status": "cancelled", "workflow": run.workflow])
        }
        return try await store.run(runId)
    }

    // MARK: Restart and drain

    /// Queues again every run the last gateway left queued or running; each
    /// continues from its last checkpoint in a fresh worker.
    public func resumeUnfinished() async throws {
        for run in try await store.unfinished() {
            guard let definition = await registry.workflow(run.workflow) else {
                await end(run.id, .failed, output: nil,
                          error: StepFailure(.workflowMissing, step: nil, message: "workflow \(run.workflow) is no longer defined"))
                continue
            }
            logger.info("resuming run", metadata: ["run": "\(run.id)", "workflow": "\(run.workflow)"])
            queue.append((run.id, definition, run.status == .running, nil))
        }
        pump()
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

    func pump() {
        while !stopping, active.count < maxConcurrent, !queue.isEmpty {
            let next = queue.removeFirst()
            let a = Active()
            active[next.id] = a
            Task { await self.execute(next.id, next.definition, resumed: next.resumed, input: next.input, a) }
        }
    }

    /// `started`: the run was created already running (submit's free-slot path).
    private func execute(_ runId: String, _ definition: WorkflowDefinition, resumed: Bool, input known: JSONValue?, _ a: Active,
                         started alreadyStarted: Bool = false) async {
        defer {
            active[runId] = nil
            for w in waiters.removeValue(forKey: runId) ?? [] { w.resume() }
            pump()
        }
        if !alreadyStarted { do {
            guard let started = try await store.markStarted(runId: runId, resumed: resumed) else { return }
            try await audit.append(actor: "gateway", action: resumed ? "run.resumed" : "run.started", runId: runId,
                                   details: ["workflow": definition.id, "job": a.jobId])
            hub.publish(started)
        } catch {
            logger.error("cannot start run", metadata: ["run": "\(runId)", "error": "\(error)"])
            return
        } }
        // A run that never started has no checkpoints; one that did reads them.
        let completed = known != nil ? [:] : (try? await store.checkpoints(runId: runId)) ?? [:]
        let stepPolicies: [String: StepPolicy]
        do { stepPolicies = try policies.policies(for: definition) } catch {
            await end(runId, .failed, output: nil, error: StepFailure(.permissionDenied, step: nil, message: "\(error)"))
            return
        }
        let audit = self.audit
        let input: JSONValue
        if let known { input = known } else { input = (try? await store.run(runId, withSteps: false))?.input ?? .null }
        let timeout = definition.timeoutMs.map { Duration.milliseconds($0) } ?? runTimeout
        let store = self.store, hub = self.hub, logger = self.logger, stepTimeoutMs = self.stepTimeoutMs, egress = self.egress
        let pool = self.pool, maxStorage = maxRunStorageBytes
        // Read once: a reload during the run does not change the limits its steps get.
        let stepLimits = pool.tunables.stepLimits
        var options = WorkerPool.JobOptions(jobId: a.jobId)
        options.keepWorkspace = false
        a.claims.withLock { $0 = SegmentClaims(definition: definition, checkpointed: completed.keys) }
        egress.register(jobId: a.jobId, .init(runId: runId, workflow: definition.id, policies: stepPolicies,
                                              running: { [a] step in a.running(step) }))
        defer { egress.remove(jobId: a.jobId) }
        let (result, outcome) = await pool.runSegment(options: options, timeout: timeout + .seconds(10), events: { event in
            defer { a.eventHandled() }
            if a.cancelled.withLock({ $0 }) { return }
            switch a.judge(event) {
            case .drop:
                return
            case let .refuse(violation):
                // Nothing of it is persisted, and nothing more from this worker is:
                // the run fails once the segment is over (execute, below).
                logger.warning("worker claim refused", metadata: ["run": "\(runId)", "claim": "\(violation.claim)", "reason": "\(violation.reason)"])
                await pool.cancel(jobId: a.jobId)
                return
            case .persist:
                break
            }
            // Outputs are bounded one by one (outputKB, the frame limit); this bounds
            // what a run stores in all. Past it the run stops, rather than the store growing.
            let size = event.message.utf8.count + (event.data?.jsonText.utf8.count ?? 0)
            let over = a.storage.withLock { s -> Bool in
                guard s.exceeded == nil else { return true }
                s.bytes += size
                guard s.bytes > maxStorage else { return false }
                s.exceeded = "the run's events passed \(maxStorage >> 20) MiB (server.maxRunStorageMB)"
                return true
            }
            if over {
                await pool.cancel(jobId: a.jobId)
                return
            }
            Self.auditPermissions(event, policies: stepPolicies, runId: runId, workflow: definition.id, active: a, audit: audit)
            // Redacted here too: the worker redacts, but is not trusted to.
            let r = a.redactor
            do {
                hub.publish(try await store.append(runId: runId, type: event.type, step: event.step,
                                                   message: r.text(event.message), data: event.data.map(r.json)))
            } catch {
                logger.error("cannot persist event", metadata: ["run": "\(runId)", "error": "\(error)"])
            }
        }, requests: { [secrets] request in
            await Self.resolveSecret(request, definition: definition, runId: runId, active: a, store: secrets, audit: audit)
        }, spec: { workspace in
            // Called once the pool has assigned the worker, before the job is sent:
            // every event and request of the job comes after this.
            if let pid = pool.assignments.withLock({ $0[a.jobId]?.pid }) { a.workerPid.withLock { $0 = pid } }
            return RunJobSpec(jobId: a.jobId, runId: runId, workspace: workspace, limits: stepLimits, workflow: definition, input: input,
                              completed: completed, defaultStepTimeoutMs: stepTimeoutMs, policies: stepPolicies)
        })
        if a.workerPid.withLock({ $0 }) == 0 { a.workerPid.withLock { $0 = outcome.workerPid } }
        if let result {
            // The answer can overtake the last notifications; wait until all are persisted.
            let complete = await a.waitForAllEvents(result.events, quiet: .seconds(10))
            let handled = a.handledEvents
            a.claims.withLock { c in
                guard let claims = c, !claims.isOver else { return }
                let counted = "job.run answered after \(result.events) events"
                if !complete {
                    c?.refuse(.init(claim: counted, reason: "only \(handled) arrived"))
                } else if claims.received > result.events {
                    c?.refuse(.init(claim: counted, reason: "\(claims.received) arrived"))
                } else {
                    do throws(SegmentClaims.Violation) { try claims.check(result) } catch { c?.refuse(error) }
                }
            }
        }
        // From here on the segment is judged: whatever the worker still sends is dropped.
        let refused = a.claims.withLock { c -> SegmentClaims.Violation? in
            c?.close()
            return c?.refused
        }
        if a.cancelled.withLock({ $0 }) { return }
        if let refused {
            await end(runId, .failed, output: nil,
                      error: StepFailure(.workerViolation, step: nil, message: "worker \(a.workerActor) claimed \(refused.claim): \(refused.reason)"),
                      auditFirst: [(a.workerActor, "worker.violation", runId, [
                          "workflow": definition.id, "job": a.jobId, "claim": refused.claim, "reason": refused.reason,
                      ])])
            return
        }
        if let exceeded = a.storage.withLock({ $0.exceeded }) {
            await end(runId, .failed, output: nil, error: StepFailure(.resourceLimit, step: nil, message: exceeded))
            return
        }
        if result == nil, stopping {
            // The gateway is going down: leave the run as it is; it resumes at the next start.
            return
        }
        guard let result else {
            let why = outcome.failure ?? "the worker ended without an answer"
            if outcome.killedFor == .protocolViolation {
                // The monitor caught the worker breaking the wire's rules.
                await end(runId, .failed, output: nil, error: StepFailure(.workerViolation, step: nil, message: why),
                          auditFirst: [(a.workerActor, "worker.violation", runId, [
                              "workflow": definition.id, "job": a.jobId, "claim": SegmentClaims.cut(why), "reason": "protocol violation",
                          ])])
            } else if outcome.violation {
                // Seccomp killed the worker itself: the gateway saw it die of SIGSYS.
                await end(runId, .failed, output: nil, error: StepFailure(.sandboxViolation, step: nil, message: why),
                          auditFirst: [("gateway", "sandbox.violation", runId, [
                              "pid": "\(outcome.workerPid)", "reportedBy": "gateway", "message": why,
                          ])])
            } else if outcome.killedFor == .resourceLimit {
                await end(runId, .failed, output: nil, error: StepFailure(.resourceLimit, step: nil, message: why))
            } else {
                await end(runId, .failed, output: nil, error: StepFailure(.workerFailed, step: nil, message: why))
            }
            return
        }
        let r = a.redactor
        let output = result.output.map(r.json)
        var failure = result.error
        if let message = failure?.message { failure?.message = r.text(message) }
        switch result.status {
        case .succeeded:
            if let schema = definition.output {
                let violations = JSONSchema(schema).validate(output ?? .null, root: "output")
                if !violations.isEmpty {
                    await end(runId, .failed, output: output, error: StepFailure(
                        .outputInvalid, step: nil, message: violations.map(\.description).joined(separator: "; ")))
                    return
                }
            }
            await end(runId, .succeeded, output: output ?? .null, error: nil)
        case .failed:
            var first: [AuditItem] = []
            if let failure, failure.failureCode == .sandboxViolation {
                // The step process is the worker's child: only the worker saw the SIGSYS, and says so.
                first.append((a.workerActor, "sandbox.violation", runId, [
                    "step": failure.step ?? "", "reportedBy": "worker", "message": failure.message,
                ]))
            }
            await end(runId, .failed, output: nil, error: failure, auditFirst: first)
        case .parked:
            // Checked above: a top-level approval step that started and parked in this segment.
            guard let parked = result.parked, let approval = definition.steps.first(where: { $0.id == parked.step })?.approval else {
                await end(runId, .failed, output: nil, error: StepFailure(.workerFailed, step: nil, message: "parked without an approval step"))
                return
            }
            await park(runId, definition: definition, parked: parked, approval: approval, reportedBy: a.workerActor, redactor: r)
        }
    }

    func end(_ runId: String, _ status: RunStatus, output: JSONValue?, error: StepFailure?, auditFirst: [AuditItem] = []) async {
        do {
            var details = ["status": status.rawValue]
            if let error {
                details["code"] = error.code
                if let step = error.step { details["step"] = step }
            }
            try await audit.appendAll(auditFirst + [(actor: "gateway", action: "run.finished", runId: runId, details: details)])
            if let event = try await store.finish(runId: runId, status: status, output: output, error: error) { hub.publish(event) }
        } catch {
            logger.error("cannot record the end of a run", metadata: ["run": "\(runId)", "error": "\(error)"])
        }
        for w in waiters.removeValue(forKey: runId) ?? [] { w.resume() }
    }
}
