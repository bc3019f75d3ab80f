import Logging
import Wire

/// Answers one worker's requests, strictly by `WorkerMonitor.table`.
struct WorkerConnection: RPCHandler {
    let worker: ManagedWorker
    let required: Set<SandboxLayer>
    let onEvent: @Sendable (JobEvent) -> Void
    let logger: Logger

    /// A request is judged against the worker's phase as its frame is read: one
    /// a worker sent while its job ran is its job's, even when the gateway takes
    /// it up only after the job's answer (read later, but handled sooner).
    func admit(request: RPCIncoming, from peer: RPCPeer) -> RPCReply? {
        let phase = worker.phase
        guard WorkerMonitor.allows(request.method, in: phase) else {
            return violation("\(request.method) is not allowed while \(phase.rawValue)")
        }
        return nil
    }

    func handle(request: RPCIncoming, from peer: RPCPeer) async -> RPCReply {
        switch request.method {
        case WorkerHello.name:
            let hello: WorkerHello.Params
            do { hello = try request.params(as: WorkerHello.Params.self) } catch { return violation("bad worker.hello: \(error.message)") }
            guard hello.protocolVersion == WireProtocol.version else {
                return refuse("speaks protocol \(hello.protocolVersion), the gateway speaks \(WireProtocol.version)")
            }
            let lacking = required.subtracting(hello.sandbox.active).sorted()
            guard lacking.isEmpty else {
                let why = lacking.map { "\($0.rawValue) (\(hello.sandbox.missing[$0.rawValue] ?? "not applied"))" }
                return refuse("sandbox weaker than config requires: missing " + why.joined(separator: ", "))
            }
            // Once: a second hello read before the first was handled was admitted too.
            guard worker.helloAccepted(hello.sandbox) else { return violation("a second worker.hello") }
            return .result(Empty())
        case SecretResolve.name, HTTPFetch.name, InferComplete.name, AgentPermission.name, ProviderRelay.name, AgentTurnRequest.name, MCPResidentRequest.name,
             ResidentNext.name, ResidentDone.name:
            guard let handler = worker.requestHandler else { return violation("\(request.method) outside a run") }
            return await handler(request)
        default:
            return violation("\(request.method) has no handler")
        }
    }

    func handle(notification: RPCIncoming, from peer: RPCPeer) async {
        let phase = worker.phase
        guard WorkerMonitor.allows(notification.method, in: phase) else {
            _ = violation("\(notification.method) is not allowed while \(phase.rawValue)")
            return
        }
        guard worker.countEvent() else {
            _ = violation("more than \(WorkerMonitor.maxEventsPerJob) events in one job")
            return
        }
        guard let event = try? notification.params(as: JobEvent.self), event.jobId == worker.jobId else {
            _ = violation("event.emit for a job it is not running")
            return
        }
        if let sink = worker.eventSink { await sink(event) } else { onEvent(event) }
    }

    func protocolError(_ error: any Error, from peer: RPCPeer) {
        if case WireError.connectionClosed = error { return }
        _ = violation("protocol violation: \(error)")
    }

    private func violation(_ why: String) -> RPCReply {
        // A worker that floods has thousands more messages queued behind the first
        // violation: that one is logged and acted on; the rest of a condemned
        // worker's are only answered, so the flood cannot become a log storm that
        // starves the event loops other workers share.
        if worker.killReason == nil {
            logger.warning("killing worker", metadata: ["pid": "\(worker.pid)", "reason": "\(why)"])
            worker.helloFailed(WorkerFailure.refused(why))
            worker.kill(reason: "protocol violation: \(why)", cause: .protocolViolation)
        }
        return .error(RPCError(code: RPCError.notAllowed, message: why))
    }

    private func refuse(_ why: String) -> RPCReply {
        logger.error("refusing worker", metadata: ["pid": "\(worker.pid)", "reason": "\(why)"])
        worker.helloFailed(WorkerFailure.refused(why))
        worker.kill(reason: "refused: \(why)", exit: .handshakeFailed)
        return .error(RPCError(code: RPCError.notAllowed, message: why))
    }
}
