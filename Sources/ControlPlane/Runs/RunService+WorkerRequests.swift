import Foundation
import Logging
import Synchronization
import Wire
import Workflow

/// What a run's worker asks for (secrets) and reports about permissions, checked
/// and attributed here.
extension RunService {
    /// `secret.resolve` from a run's worker: only for the job it runs, only for
    /// a step of this segment that is running right now and whose env
    /// references that secret; every answer audited by name, with whose
    /// request it was. A refusal is not a violation: the step fails with
    /// `PermissionDenied`, as it would for a policy.
    nonisolated static func resolveSecret(_ request: RPCIncoming, definition: WorkflowDefinition, runId: String,
                                          active a: Active, store: SecretStore, audit: AuditLog) async -> RPCReply {
        let params: SecretResolve.Params
        do { params = try request.params(as: SecretResolve.Params.self) } catch { return .error(error) }
        let step = SegmentClaims.cut(params.step), name = SegmentClaims.cut(params.name)
        var details = ["name": name, "step": step, "workflow": definition.id, "requestedBy": a.workerActor]
        func deny(_ reason: String) async -> RPCReply {
            details["reason"] = reason
            a.deniedSecrets.withLock { _ = $0.insert(params.step + "\u{0}" + params.name) }
            _ = try? await audit.append(actor: "gateway", action: "secret.denied", runId: runId, details: details)
            return .error(RPCError(code: RPCError.notAllowed, message: reason))
        }
        guard params.jobId == a.jobId else { return await deny("not this worker's job") }
        guard let located = a.withClaims({ $0?.locate(params.step) }) else { return await deny("the segment has not started") }
        let target: Step
        switch located {
        case let .success(l): target = l.step
        case let .failure(v): return await deny(v.reason)
        }
        guard case let .exec(exec) = target.kind, exec.secretNames.contains(params.name) else {
            return await deny("step \(step) does not reference secrets.\(name) in its env")
        }
        // Events are handled in order, each persisted (fsynced) before the next: on a
        // busy disk the step's start can trail its secret request by seconds.
        guard await a.waitUntilRunning(params.step, limit: .seconds(30)) else {
            return await deny("step \(step) is not running in this worker")
        }
        let value: String?
        do { value = try store.value(of: params.name) } catch {
            details["error"] = "\(error)"
            _ = try? await audit.append(actor: "gateway", action: "secret.not_found", runId: runId, details: details)
            return .error(RPCError(code: RPCError.notFound, message: "secret \(name) cannot be read: \(error)"))
        }
        guard let value else {
            _ = try? await audit.append(actor: "gateway", action: "secret.not_found", runId: runId, details: details)
            return .error(RPCError(code: RPCError.notFound, message: "secret \(name) is not defined"))
        }
        do {
            // Audited (durably) before the value leaves the control plane.
            try await audit.append(actor: "gateway", action: "secret.accessed", runId: runId, details: details)
        } catch {
            return .error(RPCError(code: RPCError.internalError, message: "the access could not be audited"))
        }
        a.secrets.withLock { _ = $0.insert(value) }
        return .result(SecretResolve.Result(value: value))
    }

    /// Denials and bypasses go into the audit chain as they happen. A denial
    /// is the worker's report (actor `worker:<pid>`); it is `decidedBy:
    /// gateway` only when the gateway's own records say it decided it (the
    /// step's policy, or a secret it refused that step), else `worker` (a
    /// program only known once templates were evaluated, or a claim). A
    /// bypass follows from policy alone, so it is the gateway's.
    nonisolated static func auditPermissions(_ event: JobEvent, policies: [String: StepPolicy], runId: String, workflow: String,
                                             active a: Active, audit: AuditLog) {
        guard let path = event.step else { return }
        let policy = policies[StepPath.id(of: path)]
        if event.kind == .stepFailed, event.data?["code"] == .string(FailureCode.permissionDenied.rawValue) {
            var dimension = SegmentClaims.cut(event.data?["dimension"]?.stringValue ?? "")
            var value = SegmentClaims.cut(event.data?["value"]?.stringValue ?? "")
            let decidedBy: String
            if let denied = policy?.denied {
                (dimension, value, decidedBy) = (denied.dimension, denied.value, "gateway")
            } else if dimension == "secrets", a.deniedSecrets.withLock({ $0.contains(path + "\u{0}" + (event.data?["value"]?.stringValue ?? "")) }) {
                decidedBy = "gateway"
            } else {
                decidedBy = "worker"
            }
            audit.record(actor: a.workerActor, action: "permission.denied", runId: runId, details: [
                "workflow": workflow, "step": path, "dimension": dimension, "value": value, "decidedBy": decidedBy,
            ])
            GatewayMetrics.permissionDenied(dimension: dimension)
        } else if event.kind == .permissionDenied {
            // An agent's request, or an mcp step's, refused while the step goes on.
            let dimension = SegmentClaims.cut(event.data?["dimension"]?.stringValue ?? "")
            audit.record(actor: a.workerActor, action: "permission.denied", runId: runId, details: [
                "workflow": workflow, "step": path, "dimension": dimension,
                "value": SegmentClaims.cut(a.redactor.text(event.data?["value"]?.stringValue ?? "")),
                "method": SegmentClaims.cut(event.data?["method"]?.stringValue ?? ""), "decidedBy": "worker",
            ])
            GatewayMetrics.permissionDenied(dimension: dimension)
        } else if event.kind == .agentRequest {
            audit.record(actor: a.workerActor, action: "agent.request", runId: runId, details: [
                "workflow": workflow, "step": path, "method": SegmentClaims.cut(event.data?["method"]?.stringValue ?? ""),
                "target": SegmentClaims.cut(a.redactor.text(event.data?["target"]?.stringValue ?? ""), to: 1000),
                "outcome": SegmentClaims.cut(event.data?["outcome"]?.stringValue ?? ""),
            ])
        } else if event.kind == .mcpCall {
            // The server, the tool and how it went; never the arguments.
            audit.record(actor: a.workerActor, action: "mcp.call", runId: runId, details: [
                "workflow": workflow, "step": path, "server": SegmentClaims.cut(event.data?["server"]?.stringValue ?? ""),
                "tool": SegmentClaims.cut(event.data?["tool"]?.stringValue ?? ""),
                "outcome": SegmentClaims.cut(event.data?["outcome"]?.stringValue ?? ""),
            ])
        } else if event.kind == .stepStarted, policy?.unrestricted == true {
            audit.record(actor: "gateway", action: "permission.bypassed", runId: runId, details: ["workflow": workflow, "step": path])
        }
    }

    typealias AuditItem = (actor: String, action: String, runId: String?, details: [String: String])

    /// `auditFirst`: entries that explain the end (a violation), written with
    /// `run.finished` in one batch, before the end is visible anywhere else.
}
