import Foundation
import Logging
import Synchronization
import Wire
import Workflow

/// Parked runs: approvals, waits and child runs are durable rows; the run
/// holds no worker, and goes on in a fresh one once every step it parked at is
/// resolved (or fails as soon as one of them fails).
extension RunService {
    public enum DecisionError: Error, Sendable {
        case notFound
        case alreadyDecided(ApprovalRecord)
    }

    public enum ResumeError: Error, Sendable {
        case notFound
        /// The run is not waiting on that step (or on any wait step).
        case notWaiting(String)
        /// Several wait steps are pending: the request must name one.
        case ambiguous([String])
        case invalidOutput([JSONSchema.Violation])
    }

    /// The run waits: a durable row for each step it parked at. How long each
    /// waits and what expiry does come from the definition, not from the
    /// worker: a worker that could set them could end its own wait.
    func park(_ runId: String, definition: WorkflowDefinition, parked: [Parked], reportedBy worker: String, redactor r: Redactor) async {
        let now = Date()
        var approvals: [ApprovalRecord] = [], waits: [WaitRecord] = [], children: [ChildPlan] = []
        var entries: [AuditItem] = []
        let depth = (try? await store.run(runId, withSteps: false))?.depth ?? 0
        for p in parked {
            guard let step = definition.step(id: StepPath.id(of: p.step)) else {
                await end(runId, .failed, output: nil, error: StepFailure(.workerViolation, step: nil, message: "parked at \(SegmentClaims.cut(p.step)), no step of \(definition.id)"))
                return
            }
            switch (step.kind, p.request) {
            case let (.approval(a), .approval(message)):
                let approval = ApprovalRecord(
                    id: RandomID.hex("apr_"),
                    runId: runId, workflow: definition.id, step: p.step, message: r.text(message),
                    requester: "workflow:\(definition.id)", status: .pending, onTimeout: a.onTimeout.rawValue, createdAt: now,
                    expiresAt: a.timeoutMs.map { now.addingTimeInterval(Double($0) / 1000) })
                var details = ["approval": approval.id, "step": approval.step, "workflow": definition.id, "reportedBy": worker]
                if let e = approval.expiresAt { details["expiresAt"] = e.formatted(.iso8601) }
                entries.append(("gateway", "approval.requested", runId, details))
                approvals.append(approval)
            case let (.wait(w), .wait(message)):
                let expires = w.timeoutMs.map { now.addingTimeInterval(Double($0) / 1000).timeIntervalSince1970 }
                waits.append(WaitRecord(runId: runId, step: p.step, kind: .wait, childRunId: nil, message: message.map(r.text), status: .pending,
                                        onTimeout: w.onTimeout, expiresAt: expires, createdAt: now.timeIntervalSince1970, resolvedAt: nil))
                entries.append(("gateway", "wait.requested", runId, ["step": p.step, "workflow": definition.id, "reportedBy": worker]))
            case let (.invoke(i), .invoke(input)):
                if let refusal = await childRefusal(i, input: input, depth: depth) {
                    await end(runId, .failed, output: nil, error: StepFailure(.childFailed, step: p.step, message: refusal))
                    return
                }
                let child = ChildPlan(id: RandomID.hex("run_"),
                                      workflow: i.workflow, input: r.json(input), step: p.step)
                entries.append(("gateway", "run.created", child.id, ["workflow": i.workflow, "parent": runId, "parentStep": p.step]))
                children.append(child)
            default:
                await end(runId, .failed, output: nil, error: StepFailure(.workerViolation, step: p.step, message: "parked at a \(step.kindName.rawValue) step with another kind's request"))
                return
            }
        }
        do {
            try await audit.appendAll(entries)
            guard let events = try await store.park(runId: runId, approvals: approvals, waits: waits, children: children) else { return }
            events.forEach(hub.publish)
            // A decision or an output may take days: a sync caller gets the waiting run.
            if !approvals.isEmpty || !waits.isEmpty { release(runId) }
            for child in children {
                guard let definition = await registry.workflow(child.workflow) else { continue }
                queue.append(Queued(id: child.id, definition: definition, resumed: false, input: child.input, expected: .fresh))
            }
            pump()
        } catch {
            await end(runId, .failed, output: nil, error: StepFailure(.internalError, step: nil, message: "cannot park the run: \(error)"))
        }
    }

    /// Why an invoke step cannot start its child, or nil.
    private func childRefusal(_ step: InvokeStep, input: JSONValue, depth: Int) async -> String? {
        let limit = current.maxInvokeDepth
        guard depth < limit else { return "invoking \(step.workflow) would nest runs \(depth + 1) deep; server.maxInvokeDepth is \(limit)" }
        guard let child = await registry.workflow(step.workflow) else { return "workflow \(step.workflow) is not defined" }
        do { _ = try policies.policies(for: child) } catch { return "workflow \(step.workflow): \(error)" }
        if let schema = child.input {
            let violations = JSONSchema(schema).validate(input)
            if !violations.isEmpty { return "the input for \(step.workflow) is invalid: " + violations.prefix(5).map(\.description).joined(separator: "; ") }
        }
        return nil
    }

    // MARK: Approvals

    /// Approves or denies a pending approval, once. Approval resumes the run from
    /// its checkpoints in a fresh worker (once nothing else it waits on is
    /// pending); denial fails it.
    public func decide(approval id: String, approve: Bool, actor: String, reason: String?) async throws -> ApprovalRecord {
        try await apply(id, status: approve ? .approved : .denied, actor: actor, reason: reason, action: approve ? "approval.approved" : "approval.denied")
    }

    private func apply(_ id: String, status: ApprovalRecord.Status, actor: String, reason: String?, action: String) async throws -> ApprovalRecord {
        guard let pending = try await store.approval(id) else { throw DecisionError.notFound }
        guard pending.status == .pending else { throw DecisionError.alreadyDecided(pending) }
        var details = ["approval": id, "step": pending.step, "workflow": pending.workflow, "by": actor]
        if let reason { details["reason"] = reason }
        // Audited before it takes effect.
        try await audit.append(actor: actor == "timeout" ? "gateway" : actor, action: action, runId: pending.runId, details: details)
        switch try await store.decide(id: id, status: status, actor: actor, reason: reason) {
        case .notFound: throw DecisionError.notFound
        case let .alreadyDecided(a): throw DecisionError.alreadyDecided(a)
        case let .decided(decided, events, queued):
            events.forEach(hub.publish)
            if decided.kind == .permission {
                permissionWaiters.resolve(decided)
                return decided
            }
            if status == .approved {
                if queued { await requeue(decided.runId) }
            } else {
                let code: FailureCode = status == .expired ? .approvalExpired : .approvalDenied
                await end(decided.runId, .failed, output: nil,
                          error: StepFailure(code, step: decided.step, message: "\(status.rawValue) by \(actor)\(reason.map { ": \($0)" } ?? "")"))
            }
            return decided
        }
    }

    /// Applies each expired approval's `onTimeout`, and each expired wait's.
    public func expireApprovals() async {
        if let due = try? await store.expiredApprovals() {
            for a in due {
                let status: ApprovalRecord.Status = a.onTimeout == "approve" ? .approved : a.onTimeout == "deny" ? .denied : .expired
                _ = try? await apply(a.id, status: status, actor: "timeout", reason: "no decision before \(a.expiresAt?.formatted(.iso8601) ?? "")",
                                     action: "approval.expired")
            }
        }
        for wait in (try? await store.expiredWaits()) ?? [] { await expire(wait) }
    }

    // MARK: Waits

    /// `POST /runs/:id/resume`: the output a wait step waits for, checked
    /// against the step's `output` schema, checkpointed once.
    public func resume(runId: String, step: String?, output: JSONValue, actor: String) async throws(ResumeError) -> RunRecord {
        guard let run = try? await store.run(runId, withSteps: false) else { throw .notFound }
        let pending = ((try? await store.pendingWaits(runId: runId)) ?? []).filter { $0.kind == .wait }
        let target: WaitRecord
        if let step {
            guard let w = pending.first(where: { $0.step == step }) else {
                throw .notWaiting(run.status == .waiting ? "run \(runId) is not waiting on a wait step \(step) (pending: \(pending.map(\.step).joined(separator: ", ")))"
                                                         : "run \(runId) is \(run.status.rawValue), not waiting")
            }
            target = w
        } else {
            guard let only = pending.first else { throw .notWaiting("run \(runId) is \(run.status.rawValue) and waits on no wait step") }
            guard pending.count == 1 else { throw .ambiguous(pending.map(\.step).sorted()) }
            target = only
        }
        if let definition = await registry.workflow(run.workflow), case let .wait(w)? = definition.step(id: StepPath.id(of: target.step))?.kind,
           let schema = w.output {
            let violations = JSONSchema(schema).validate(output, root: "output")
            if !violations.isEmpty { throw .invalidOutput(violations) }
        }
        do {
            try await audit.append(actor: actor, action: "wait.resumed", runId: runId, details: ["step": target.step, "workflow": run.workflow])
            switch try await store.resolveWait(runId: runId, step: target.step, output: output, actor: actor) {
            case .notWaiting:
                throw ResumeError.notWaiting("the wait at \(target.step) was resolved meanwhile")
            case let .resolved(events, queued):
                events.forEach(hub.publish)
                if queued { await requeue(runId) }
            }
        } catch let e as ResumeError {
            throw e
        } catch {
            throw .notWaiting("cannot record the output: \(error)")
        }
        guard let after = try? await store.run(runId) else { throw .notFound }
        return after
    }

    private func expire(_ wait: WaitRecord) async {
        guard let run = try? await store.run(wait.runId, withSteps: false) else { return }
        var output: JSONValue?
        if wait.onTimeout == .resume, let definition = await registry.workflow(run.workflow),
           case let .wait(w)? = definition.step(id: StepPath.id(of: wait.step))?.kind {
            output = w.timeoutOutput ?? .null
        }
        audit.record(actor: "gateway", action: "wait.expired", runId: wait.runId,
                     details: ["step": wait.step, "onTimeout": (wait.onTimeout ?? .fail).rawValue])
        guard case let .resolved(events, queued)? = try? await store.expireWait(runId: wait.runId, step: wait.step, output: output) else { return }
        events.forEach(hub.publish)
        if output == nil {
            await end(wait.runId, .failed, output: nil, error: StepFailure(.waitExpired, step: wait.step, message: "no output was posted to \(wait.step) before its timeout"))
        } else if queued {
            await requeue(wait.runId)
        }
    }
}
