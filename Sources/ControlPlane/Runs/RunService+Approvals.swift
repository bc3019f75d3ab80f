import Foundation
import Logging
import Synchronization
import Wire
import Workflow

/// Approval steps: a parked run is a durable row, decided once, resumed in a fresh worker.
extension RunService {
    // MARK: Approvals

    public enum DecisionError: Error, Sendable {
        case notFound
        case alreadyDecided(ApprovalRecord)
    }

    /// The run waits for a human: a durable approval row, no worker. How long it
    /// waits and what expiry does come from the definition, not from the worker:
    /// a worker that could set them could approve its own request by timing out.
    func park(_ runId: String, definition: WorkflowDefinition, parked: Parked, approval step: ApprovalStep,
                      reportedBy worker: String, redactor r: Redactor) async {
        let now = Date()
        let approval = ApprovalRecord(
            id: "apr_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""),
            runId: runId, workflow: definition.id, step: parked.step, message: r.text(parked.message),
            requester: "workflow:\(definition.id)", status: .pending, onTimeout: step.onTimeout, createdAt: now,
            expiresAt: step.timeoutMs.map { now.addingTimeInterval(Double($0) / 1000) })
        do {
            var details = ["approval": approval.id, "step": approval.step, "workflow": definition.id, "reportedBy": worker]
            if let e = approval.expiresAt { details["expiresAt"] = e.formatted(.iso8601) }
            try await audit.append(actor: "gateway", action: "approval.requested", runId: runId, details: details)
            if let event = try await store.park(runId: runId, approval: approval) { hub.publish(event) }
        } catch {
            await end(runId, .failed, output: nil, error: StepFailure(.internalError, step: parked.step, message: "cannot park the run: \(error)"))
        }
    }

    /// Approves or denies a pending approval, once. Approval resumes the run from
    /// its checkpoint in a fresh worker; denial fails it.
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
        case let .decided(decided, events):
            events.forEach(hub.publish)
            if status == .approved {
                if let definition = await registry.workflow(decided.workflow) {
                    queue.append((decided.runId, definition, true, nil))
                    pump()
                } else {
                    await end(decided.runId, .failed, output: nil,
                              error: StepFailure(.workflowMissing, step: nil, message: "workflow \(decided.workflow) is no longer defined"))
                }
            } else {
                let code: FailureCode = status == .expired ? .approvalExpired : .approvalDenied
                await end(decided.runId, .failed, output: nil,
                          error: StepFailure(code, step: decided.step, message: "\(status.rawValue) by \(actor)\(reason.map { ": \($0)" } ?? "")"))
            }
            return decided
        }
    }

    /// Applies each expired approval's `onTimeout`: approve, deny, or fail (expired).
    public func expireApprovals() async {
        guard let due = try? await store.expiredApprovals() else { return }
        for a in due {
            let status: ApprovalRecord.Status = a.onTimeout == "approve" ? .approved : a.onTimeout == "deny" ? .denied : .expired
            _ = try? await apply(a.id, status: status, actor: "timeout", reason: "no decision before \(a.expiresAt?.formatted(.iso8601) ?? "")",
                                 action: "approval.expired")
        }
    }
}
