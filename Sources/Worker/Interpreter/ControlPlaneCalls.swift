import Wire
import Workflow

/// What a run's steps ask of the control plane, as the interpreter calls it:
/// the worker's RPC peer in a real worker, each call bounded by the time the
/// step has left.
struct ControlPlaneCalls: Sendable {
    var resolveSecret: @Sendable (_ step: String, _ name: String) async throws -> String = { _, name in
        throw StepFailure(.secretNotFound, step: nil, message: "secret \(name) is not available")
    }
    var fetch: @Sendable (HTTPFetch.Params, Duration) async throws -> HTTPFetch.Result = { _, _ in
        throw RPCError(code: RPCError.notAllowed, message: "no control plane to make the request")
    }
    var complete: @Sendable (InferComplete.Params, Duration) async throws -> InferComplete.Result = { _, _ in
        throw RPCError(code: RPCError.notAllowed, message: "no control plane to ask the provider")
    }
    var relay: @Sendable (ProviderRelay.Params, Duration) async throws -> HTTPFetch.Result = { _, _ in
        throw RPCError(code: RPCError.notAllowed, message: "no control plane to reach the provider")
    }
    var agentTurn: @Sendable (AgentTurnRequest.Params) async throws -> AgentTurnResult = { _ in
        throw RPCError(code: RPCError.notAllowed, message: "no control plane to reach a resident agent")
    }
    var residentMCP: @Sendable (MCPResidentRequest.Params) async throws -> MCPCallResult = { _ in
        throw RPCError(code: RPCError.notAllowed, message: "no control plane to reach a resident MCP server")
    }
    var askPermission: @Sendable (AgentPermission.Params) async throws -> AgentPermission.Result = { _ in
        throw RPCError(code: RPCError.notAllowed, message: "no control plane to ask")
    }
}
