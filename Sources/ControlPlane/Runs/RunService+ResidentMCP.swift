import Foundation
import Wire
import Workflow

/// `mcp.resident`: a run's step asks for an operation on a resident MCP
/// server, an `mcp` step for its one tool, an agent step's gate for any tool
/// its policy allows. The worker has checked the policy already; the control
/// plane checks it again (the worker is the less trusted side), audits what it
/// refuses, and routes the rest to the server's own worker.
extension RunService {
    nonisolated func residentMCP(_ request: RPCIncoming, workflow: String, runId: String, active a: Active,
                                 policies: [String: StepPolicy]) async -> RPCReply {
        let params: MCPResidentRequest.Params
        do { params = try request.params(as: MCPResidentRequest.Params.self) } catch { return .error(error) }
        func refuse(_ why: String) -> RPCReply { .error(RPCError(code: RPCError.notAllowed, message: why)) }
        guard params.jobId == a.jobId else { return refuse("not this worker's job") }
        let step = SegmentClaims.cut(params.step)
        guard case let .success(located)? = a.withClaims({ $0?.locate(params.step) }) else {
            return refuse("step \(step) is not a step of this run")
        }
        // Which servers and tools the step's kind reaches at all.
        switch (located.step.kind, params.operation) {
        case let (.mcp(m), .call(tool, _)) where m.server == params.server && m.tool == tool:
            break
        case let (.agent(agent), _) where agent.mcpServers.contains(params.server):
            break
        default:
            return refuse("step \(step) does not call \(SegmentClaims.cut(params.server)) that way")
        }
        guard await a.waitUntilRunning(params.step, limit: .seconds(30)) else { return refuse("step \(step) is not running in this worker") }
        let policy = policies[located.step.id] ?? StepPolicy()
        if let denied = policy.denied { return refuse(denied.message) }
        func denied(_ dimension: String, _ value: String) -> RPCReply {
            audit.record(actor: a.workerActor, action: "permission.denied", runId: runId, details: [
                "workflow": workflow, "step": params.step, "dimension": dimension, "value": SegmentClaims.cut(value),
                "method": "mcp.resident", "decidedBy": "gateway",
            ])
            GatewayMetrics.permissionDenied(dimension: dimension)
            return refuse("PermissionDenied: \(dimension) does not allow \(SegmentClaims.cut(value))")
        }
        guard policy.mcpServers.contains(params.server) else { return denied("allowedMcpServers", params.server) }
        if case let .call(tool, _) = params.operation, !policy.allowsTool(server: params.server, tool: tool) {
            return denied("allowedTools", "\(params.server)/\(tool)")
        }
        guard self.policies.peers.mcpServers[params.server]?.launch.resident == true else {
            return refuse("MCP server \(SegmentClaims.cut(params.server)) is not a resident server in config")
        }
        // The worker's word on time, held to what the step may take at most.
        let limit = located.step.timeoutMs ?? self.stepTimeoutMs
        let call = MCPCall(id: "call_" + UUID().uuidString.lowercased().prefix(12), operation: params.operation,
                           timeoutMs: min(max(params.timeoutMs, 1), limit))
        do {
            let step = params.step
            return .result(try await residents.call(server: params.server, call, asker: a.jobId, wanted: { a.running(step) == true }))
        } catch {
            return .result(MCPCallResult.failed("\(error)"))
        }
    }
}
