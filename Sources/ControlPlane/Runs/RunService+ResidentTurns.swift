import Foundation
import Wire
import Workflow

/// `agent.turn`: an agent step of a run asks for a turn of a resident agent.
/// The control plane finds the step's session (by its key), routes the turn
/// to the agent's worker, and records the turn's events in the run itself.
extension RunService {
    nonisolated func residentTurn(_ request: RPCIncoming, definition: WorkflowDefinition, runId: String, active a: Active,
                                  policies: [String: StepPolicy], maxStorage: Int) async -> RPCReply {
        let params: AgentTurnRequest.Params
        do { params = try request.params(as: AgentTurnRequest.Params.self) } catch { return .error(error) }
        func refuse(_ why: String) -> RPCReply { .error(RPCError(code: RPCError.notAllowed, message: why)) }
        guard params.jobId == a.jobId else { return refuse("not this worker's job") }
        guard case let .success(located)? = a.withClaims({ $0?.locate(params.step) }), case let .agent(agent) = located.step.kind else {
            return refuse("step \(SegmentClaims.cut(params.step)) is not an agent step of this run")
        }
        guard await a.waitUntilRunning(params.step, limit: .seconds(30)) else { return refuse("step \(SegmentClaims.cut(params.step)) is not running in this worker") }
        let policy = policies[located.step.id] ?? StepPolicy()
        if let denied = policy.denied { return refuse(denied.message) }
        let peers = self.policies.peers
        guard let registered = peers.agents[agent.agent], registered.launch.resident else {
            return refuse("agent \(agent.agent) is not a resident agent in config")
        }
        if let server = agent.mcpServers.first(where: { peers.mcpServers[$0]?.launch.resident == true }) {
            return refuse("a resident agent starts the MCP servers it is offered itself; \(server) is a resident MCP server, for mcp steps and ephemeral agents")
        }
        // A key only for a step that declares one; sessions belong to their workflow,
        // so no other workflow's steps can join (or read back) its conversations.
        if params.sessionKey != nil, agent.sessionKey == nil { return refuse("step \(SegmentClaims.cut(params.step)) declares no sessionKey") }
        let key = params.sessionKey.map { definition.id + "/" + SegmentClaims.cut($0, to: 200) }
        var session: AgentSessionRecord?
        if let key {
            do { session = try await store.openSession(agent: agent.agent, key: key) } catch {
                return .error(RPCError(code: RPCError.internalError, message: "sessions cannot be read: \(error)"))
            }
        }
        // The worker's word on time, held to what the step may take at most.
        let limit = located.step.timeoutMs ?? self.stepTimeoutMs
        let turn = AgentTurn(id: "turn_" + UUID().uuidString.lowercased().prefix(12), prompt: params.prompt, sessionId: session?.acpSessionId,
                             policy: policy, onPermission: agent.onPermission,
                             mcpServers: agent.mcpServers.compactMap { peers.mcpServers[$0]?.launch },
                             timeoutMs: min(max(params.timeoutMs, 1), limit))
        // One turn at a time per step: a worker cannot queue the agent full.
        guard a.residentTurns.withLock({ $0.insert(params.step).inserted }) else {
            return refuse("step \(SegmentClaims.cut(params.step)) already has a turn in flight")
        }
        defer { _ = a.residentTurns.withLock { $0.remove(params.step) } }
        // Events of the turn count only while the turn is this step's.
        let open = Shared(true)
        defer { open.set(false) }
        let store = self.store, hub = self.hub, audit = self.audit, pool = self.pool, path = params.step, workflow = definition.id
        let result: AgentTurnResult
        do {
            result = try await residents.turn(agent: agent.agent, turn, asker: a.jobId, wanted: { a.running(path) == true }) { event in
                // Recorded as the step's, under the same storage budget as the worker's own events.
                guard open.get, let type = event.kind.map(RunEventType.init), event.kind?.isActivity == true else { return }
                if a.charge(event.data?.jsonText.utf8.count ?? 0, limit: maxStorage) {
                    await pool.cancel(jobId: a.jobId)
                    return
                }
                // Redacted as the worker's own events are: the agent may echo a secret of the run.
                let data = event.data.map(a.redactor.json)
                guard let stored = try? await store.appendSegment(runId: runId, type: type, step: path, data: data) else { return }
                hub.publish(stored)
                var attributed = event
                attributed.step = path
                attributed.data = data
                Self.auditPermissions(attributed, policies: policies, runId: runId, workflow: workflow, active: a, audit: audit)
            }
        } catch {
            return .error(RPCError(code: RPCError.execFailed, message: "\(error)"))
        }
        if let key, let acp = result.sessionId, result.error == nil {
            if case let (record, created)?? = try? await store.recordTurn(agent: agent.agent, key: key, acpSessionId: acp, runId: runId,
                                                                          continued: session?.id) {
                if created || result.loaded {
                    audit.record(actor: "gateway", action: created ? "acp.session.created" : "acp.session.loaded", runId: runId, details: [
                        "session": record.id, "agent": agent.agent, "key": key, "acpSession": acp, "step": path,
                    ])
                }
            }
        }
        return .result(result)
    }
}
