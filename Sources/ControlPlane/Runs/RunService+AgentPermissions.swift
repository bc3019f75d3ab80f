import Foundation
import Synchronization
import Wire
import Workflow

/// `onPermission: ask`: an agent's permission request becomes an approval a
/// person decides over the API, while the agent waits in its worker.
extension RunService {
    /// `agent.permission` from a run's worker: only for a running agent step of
    /// this segment that says `ask`, and only for what its policy allows.
    nonisolated func askPermission(_ request: RPCIncoming, definition: WorkflowDefinition, runId: String, active a: Active,
                                   policies: [String: StepPolicy]) async -> RPCReply {
        let params: AgentPermission.Params
        do { params = try request.params(as: AgentPermission.Params.self) } catch { return .error(error) }
        guard params.jobId == a.jobId else { return .error(RPCError(code: RPCError.notAllowed, message: "not this worker's job")) }
        guard case let .success(located)? = a.withClaims({ $0?.locate(params.step) }),
              case let .agent(agent) = located.step.kind, agent.onPermission == .ask else {
            return .error(RPCError(code: RPCError.notAllowed, message: "step \(SegmentClaims.cut(params.step)) does not ask for permissions"))
        }
        guard await a.waitUntilRunning(params.step, limit: .seconds(30)) else {
            return .error(RPCError(code: RPCError.notAllowed, message: "step \(SegmentClaims.cut(params.step)) is not running in this worker"))
        }
        // The agent chose the title: a secret of the run it read stays out of approvals and the audit chain.
        let title = SegmentClaims.cut(a.redactor.text(params.title), to: 400)
        // The worker asks only what the policy allows; held to that here too.
        let parts = title.split(separator: "/", maxSplits: 1).map(String.init)
        if let policy = policies[located.step.id], parts.count == 2, agent.mcpServers.contains(parts[0]),
           !policy.allowsTool(server: parts[0], tool: parts[1]) {
            return .error(RPCError(code: RPCError.notAllowed, message: "allowedTools does not allow \(title)"))
        }
        let now = Date()
        // The worker's word, bounded by what the run may take at most.
        let limit = min(max(params.timeoutMs, 1), 86_400_000)
        let approval = ApprovalRecord(id: RandomID.hex("apr_"), runId: runId,
                                      workflow: definition.id, step: params.step,
                                      message: "agent \(agent.agent) asks to use \(title)", requester: a.workerActor,
                                      status: .pending, onTimeout: "deny", createdAt: now,
                                      expiresAt: now.addingTimeInterval(Double(limit) / 1000), kind: .permission)
        let decided = permissionWaiters.wait(for: approval.id)
        do {
            try await audit.append(actor: a.workerActor, action: "approval.requested", runId: runId, details: [
                "approval": approval.id, "step": params.step, "workflow": definition.id, "kind": "permission", "tool": title,
            ])
            hub.publish(try await store.askPermission(approval, method: "session/request_permission"))
        } catch {
            permissionWaiters.cancel(approval.id)
            return .error(RPCError(code: RPCError.internalError, message: "the request could not be recorded: \(error)"))
        }
        // Decided over the API, or denied when the step's time is up.
        let outcome = await withTaskGroup(of: ApprovalRecord?.self) { group in
            group.addTask { await decided.value }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(limit))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let outcome else {
            _ = try? await decide(approval: approval.id, approve: false, actor: "timeout", reason: "no decision before the step's time ran out")
            permissionWaiters.cancel(approval.id)
            return .result(AgentPermission.Result(approved: false, approval: approval.id, actor: nil))
        }
        return .result(AgentPermission.Result(approved: outcome.status == .approved, approval: approval.id, actor: outcome.decidedBy))
    }
}

/// Decisions handed to the agents waiting for them, by approval id.
final class PermissionWaiters: Sendable {
    private let waiting = Mutex<[String: AsyncStream<ApprovalRecord>.Continuation]>([:])

    /// Registered before the approval exists, so no decision can slip past.
    func wait(for id: String) -> Task<ApprovalRecord?, Never> {
        let (stream, continuation) = AsyncStream<ApprovalRecord>.makeStream()
        waiting.withLock { $0[id] = continuation }
        return Task {
            for await decided in stream { return decided }
            return nil
        }
    }

    func resolve(_ decided: ApprovalRecord) {
        let c = waiting.withLock { $0.removeValue(forKey: decided.id) }
        c?.yield(decided)
        c?.finish()
    }

    func cancel(_ id: String) {
        waiting.withLock { $0.removeValue(forKey: id) }?.finish()
    }
}
