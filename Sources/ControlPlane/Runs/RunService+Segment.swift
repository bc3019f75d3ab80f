import Foundation
import Logging
import Synchronization
import Wire
import Workflow

/// One segment of a run: a worker runs it from its checkpoints; what the
/// worker claims is judged as it arrives, and the segment's end decides the run's.
extension RunService {
    enum Interruption { case rerun([String: Int]), ended }

    /// Steps the last segment left running were interrupted (by a restart, a
    /// worker's death). Each runs again only while it has attempts left
    /// (`idempotent` steps a few more); otherwise the run fails as Interrupted.
    func interrupted(_ runId: String, _ definition: WorkflowDefinition, cause: String?) async throws -> Interruption {
        let inFlight = try await store.inFlight(runId: runId)
        var attempts: [String: Int] = [:]
        for (path, attempt) in inFlight.sorted(by: { $0.key < $1.key }) {
            // Containers run again around their checkpointed steps; parking steps wait durably.
            guard let step = definition.step(id: StepPath.id(of: path)), !step.kind.isContainer, !step.kind.parks else { continue }
            let why = cause ?? "its segment ended"
            guard attempt < step.maxAttempts else {
                await end(runId, .failed, output: nil,
                          error: StepFailure(.interrupted, step: path, message: "\(path) was running when \(why); it is not idempotent and has no retries left, so it does not run again"),
                          auditFirst: [("gateway", "step.interrupted", runId, ["step": path, "cause": why, "attempt": "\(attempt)", "rerun": "false"])])
                return .ended
            }
            attempts[path] = attempt
            audit.record(actor: "gateway", action: "step.interrupted", runId: runId,
                         details: ["step": path, "cause": why, "attempt": "\(attempt)", "rerun": "true"])
        }
        return .rerun(attempts)
    }

    /// `started`: the run was created already running (submit's free-slot path).
    func execute(_ next: Queued, _ a: Active, started alreadyStarted: Bool = false) async {
        let runId = next.id, definition = next.definition, resumed = next.resumed, known = next.input
        defer {
            // Only this segment's own entry: a run that parked can be resumed (and
            // its next segment take the slot) before this one has returned.
            if active[runId] === a { active[runId] = nil }
            // A run parked on child runs only goes on by itself: who waits for
            // its end keeps waiting. One that waits for a person, or ended, or a
            // gateway going down, releases them (end() and park() do the rest).
            if stopping { release(runId) }
            pump()
        }
        if !alreadyStarted { do {
            guard let started = try await store.markStarted(runId: runId, resumed: resumed, fleetCap: current.fleetMaxConcurrent, expected: next.expected) else {
                // Not this gateway's to start (any more): ended, taken over, or
                // started by another entry. Whoever waits for it here stops
                // waiting, unless another entry for it is still queued.
                if !queue.contains(where: { $0.id == runId }) { release(runId) }
                return
            }
            try await audit.append(actor: "gateway", action: resumed ? "run.resumed" : "run.started", runId: runId,
                                   details: ["workflow": definition.id, "job": a.jobId])
            hub.publish(started)
        } catch is RunStore.FleetFull {
            // First in line again, once the fleet has room.
            queue.insert(next, at: 0)
            fleetFull()
            return
        } catch {
            logger.error("cannot start run", metadata: ["run": "\(runId)", "error": "\(error)"])
            return
        } }
        // A run that never started has no checkpoints; one that did reads them.
        // Never run without them: that would run completed steps again.
        let completed: [String: JSONValue]
        var attempts: [String: Int] = [:]
        do {
            completed = known != nil ? [:] : try await store.checkpoints(runId: runId)
            if known == nil {
                switch try await interrupted(runId, definition, cause: next.interruptedBy) {
                case let .rerun(a): attempts = a
                case .ended: return
                }
            }
        } catch {
            // Only when the gateway is stopping (a lost database is waited for): it resumes at the next start.
            logger.error("cannot read a run's checkpoints; leaving it for the next start", metadata: ["run": "\(runId)", "error": "\(error)"])
            return
        }
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
        let pool = self.pool, maxStorage = maxRunStorageBytes, peers = policies.peers
        // Read once: a reload during the run does not change the limits its steps get.
        let stepLimits = pool.tunables.stepLimits
        let interruptedAttempts = attempts
        var options = WorkerPool.JobOptions(jobId: a.jobId)
        options.keepWorkspace = false
        // An agent's conversation reports each request it is served and each tool
        // call: a segment with agents gets room for long ones (bounded still).
        if definition.allSteps.contains(where: { if case .agent = $0.kind { true } else { false } }) {
            options.eventBudget = WorkerMonitor.maxEventsPerAgentJob
        }
        a.withClaims { $0 = SegmentClaims(definition: definition, checkpointed: completed.keys, attempts: interruptedAttempts) }
        egress.register(jobId: a.jobId, .init(runId: runId, workflow: definition.id, policies: stepPolicies,
                                              steps: a))
        defer { egress.remove(jobId: a.jobId) }
        let (result, outcome) = await pool.runSegment(options: options, timeout: timeout + .seconds(10), events: { event in
            a.eventArrived()
            defer { a.eventHandled() }
            if a.cancelled.withLock({ $0 }) { return }
            // After an event the store missed, nothing later of this segment is stored
            // either: the next segment does it again, in order, from the checkpoints.
            if a.unstored.withLock({ $0 }) != nil { return }
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
            if a.charge(size, limit: maxStorage) {
                await pool.cancel(jobId: a.jobId)
                return
            }
            Self.auditPermissions(event, policies: stepPolicies, runId: runId, workflow: definition.id, active: a, audit: audit)
            // Redacted here too: the worker redacts, but is not trusted to.
            let r = a.redactor
            do {
                hub.publish(try await store.appendSegment(runId: runId, type: RunEventType(event.kind!), step: event.step,
                                                          message: r.text(event.message), data: event.data.map(r.json)))
            } catch let error as RunStore.NotHeld {
                await Self.lost(a, error, pool: pool, logger: logger)
            } catch {
                // Never a step done that the store does not say is: the worker stops,
                // and the run goes on from its checkpoints (below).
                logger.error("cannot persist event; the run goes on from its checkpoints", metadata: ["run": "\(runId)", "error": "\(error)"])
                a.unstored.withLock { $0 = $0 ?? "\(error)" }
                await pool.cancel(jobId: a.jobId)
            }
        }, requests: { [secrets, requester, requestSettings = current.requests] request in
            switch request.method {
            case HTTPFetch.name:
                return await Self.fetch(request, definition: definition, runId: runId, active: a, policies: stepPolicies,
                                        settings: requestSettings, secrets: secrets, requester: requester, audit: audit)
            case InferComplete.name:
                return await Self.complete(request, definition: definition, runId: runId, active: a, policies: stepPolicies,
                                           settings: requestSettings, secrets: secrets, requester: requester, audit: audit,
                                           delta: { step, text in
                                               // Stored like the worker's events, so counted against the same budget.
                                               if a.charge(text.utf8.count, limit: maxStorage) {
                                                   await pool.cancel(jobId: a.jobId)
                                                   return
                                               }
                                               do {
                                                   hub.publish(try await store.appendSegment(runId: runId, type: .inferDelta, step: step, data: ["text": .string(text)]))
                                               } catch let error as RunStore.NotHeld {
                                                   await Self.lost(a, error, pool: pool, logger: logger)
                                               } catch {}
                                           })
            case ProviderRelay.name:
                return await self.relay(request, definition: definition, runId: runId, active: a, policies: stepPolicies,
                                        settings: requestSettings, secrets: secrets, requester: requester)
            case AgentTurnRequest.name:
                return await self.residentTurn(request, definition: definition, runId: runId, active: a, policies: stepPolicies,
                                               maxStorage: maxStorage)
            case MCPResidentRequest.name:
                return await self.residentMCP(request, workflow: definition.id, runId: runId, active: a, policies: stepPolicies)
            case AgentPermission.name:
                return await self.askPermission(request, definition: definition, runId: runId, active: a, policies: stepPolicies)
            default:
                return await Self.resolveSecret(request, definition: definition, runId: runId, active: a, store: secrets, audit: audit)
            }
        }, spec: { workspace in
            // Called once the pool has assigned the worker, before the job is sent:
            // every event and request of the job comes after this.
            if let pid = pool.assignments.withLock({ $0[a.jobId]?.pid }) { a.workerPid.withLock { $0 = pid } }
            var spec = RunJobSpec(jobId: a.jobId, runId: runId, workspace: workspace, limits: stepLimits, workflow: definition, input: input,
                                  completed: completed, defaultStepTimeoutMs: stepTimeoutMs, policies: stepPolicies)
            spec.attempts = interruptedAttempts
            peers.equip(&spec, for: definition)
            return spec
        })
        if a.workerPid.withLock({ $0 }) == 0 { a.workerPid.withLock { $0 = outcome.workerPid } }
        if let result {
            // The answer can overtake the last notifications; wait until all are persisted.
            let complete = await a.waitForAllEvents(result.events, quiet: .seconds(10), watch: pool.watch)
            let handled = a.handledEvents
            a.withClaims { c in
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
        let refused = a.withClaims { c -> SegmentClaims.Violation? in
            c?.close()
            return c?.refused
        }
        if a.cancelled.withLock({ $0 }) { return }
        if let why = a.unstored.withLock({ $0 }) {
            // Before the worker is judged: what it did after the event the store
            // missed was not stored, so it is neither relied on nor held against
            // it. A new segment goes on from the checkpoints, and a step whose end
            // was not stored runs again only if it may.
            guard !stopping else { return }
            unstoredSegments[runId, default: 0] += 1
            if unstoredSegments[runId, default: 0] >= 3 {
                unstoredSegments[runId] = nil
                await end(runId, .failed, output: nil,
                          error: StepFailure(.interrupted, step: nil, message: "three segments in a row could not store their events: \(why)"))
            } else {
                queue.append(Queued(id: runId, definition: definition, resumed: true, input: nil, interruptedBy: "an event could not be stored (\(why))"))
            }
            return
        }
        unstoredSegments[runId] = nil
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
            } else if outcome.killedFor == .timeout {
                await end(runId, .failed, output: nil, error: StepFailure(.timeout, step: nil, message: why))
            } else if let inFlight = try? await store.inFlight(runId: runId),
                      inFlight.keys.contains(where: { definition.step(id: StepPath.id(of: $0)).map { !$0.kind.isContainer && !$0.kind.parks } ?? false }) {
                // The worker died under a running step: a new segment goes on from
                // the checkpoints, and that step runs again only if it may. Each
                // death uses one of its attempts, so this ends. (A death between
                // steps would use none: that fails the run, below.)
                logger.warning("worker died under a run; resuming it", metadata: ["run": "\(runId)", "cause": "\(why)"])
                queue.append(Queued(id: runId, definition: definition, resumed: true, input: nil, interruptedBy: "its worker died (\(why))"))
            } else {
                await end(runId, .failed, output: nil, error: StepFailure(.workerFailed, step: nil, message: why))
            }
            return
        }
        let r = a.redactor
        let output = result.output.map(r.json)
        var failure = result.error
        if let message = failure?.message { failure?.message = r.text(message) }
        // A run's error carries a code of the catalogue, whatever a worker sent.
        if let f = failure, f.failureCode == nil {
            failure = StepFailure(.workerFailed, step: f.step, message: "(code \(SegmentClaims.cut(f.code, to: 40))) \(f.message)", details: f.details)
        }
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
            // Checked above: exactly the steps that parked in this segment.
            await park(runId, definition: definition, parked: result.parked, reportedBy: a.workerActor, redactor: r)
        }
    }

    /// The run is no longer this gateway's to run: cancelled from another
    /// gateway, or taken over by one while this one's lease had lapsed. Its
    /// worker is killed and nothing more of the segment is written: the run's
    /// end is whoever holds it now's to write.
    static func lost(_ a: Active, _ why: RunStore.NotHeld, pool: WorkerPool, logger: Logger) async {
        guard !a.cancelled.withLock({ was in defer { was = true }; return was }) else { return }
        logger.warning("run no longer held here; stopping its worker", metadata: ["run": "\(why.runId)"])
        await pool.cancel(jobId: a.jobId)
    }
}
