import Foundation
import Logging
import Wire
import Workflow

/// `http.fetch` and `infer.complete` from a run's worker: only for the job it
/// runs, only for a running step of that kind, held to the step's
/// `allowHosts`; credentials are added here and never handed to the worker.
extension RunService {
    /// The step a request names, if it is a running step of this segment.
    /// `once`: an http or infer step makes one request per attempt; an agent's
    /// relay makes as many as its conversation needs.
    nonisolated static func requestingStep(_ jobId: String, _ path: String, active a: Active, once: Bool = true) async -> Result<Step, RPCError> {
        guard jobId == a.jobId else { return .failure(RPCError(code: RPCError.notAllowed, message: "not this worker's job")) }
        guard let located = a.withClaims({ $0?.locate(path) }) else {
            return .failure(RPCError(code: RPCError.notAllowed, message: "the segment has not started"))
        }
        switch located {
        case let .failure(v): return .failure(RPCError(code: RPCError.notAllowed, message: v.reason))
        case let .success(l):
            guard await a.waitUntilRunning(path, limit: .seconds(30)) else {
                return .failure(RPCError(code: RPCError.notAllowed, message: "step \(SegmentClaims.cut(path)) is not running in this worker"))
            }
            guard !once || a.withClaims({ $0?.admitRequest(path) ?? false }) else {
                return .failure(RPCError(code: RPCError.notAllowed, message: "step \(SegmentClaims.cut(path)) already made its request in this attempt"))
            }
            return .success(l.step)
        }
    }

    /// Credentials to add, and every form of their secrets' values to redact
    /// from what goes back to the worker.
    struct Credentials: Sendable {
        var injections: [OutboundInjection] = []
        var redact: [String] = []
    }

    /// Credentials bound to this host (config's, then the workflow's), their
    /// secrets resolved now, each use audited before the value leaves the store.
    /// A binding without a port matches ports 80 and 443, as `allowHosts` does.
    nonisolated static func credentials(for url: String, step: String, definition: WorkflowDefinition, runId: String,
                                        settings: RequestSettings, secrets: SecretStore, audit: AuditLog) async throws(RPCError) -> Credentials {
        guard let c = URLComponents(string: url), let host = c.host?.lowercased() else { return Credentials() }
        let port = c.port ?? (c.scheme?.lowercased() == "https" ? 443 : 80)
        var out = Credentials()
        // In the clear, a credential could be read on the way: only over https,
        // or to a service on this very host (a loopback address, named as such).
        let loopback = host == "::1" || host == "[::1]" || (host.hasPrefix("127.") && HostName.parse(host)?.isLiteral == true)
        let secure = c.scheme?.lowercased() == "https" || loopback
        for binding in settings.inject + definition.inject {
            guard HostPattern.matches(binding.host.lowercased(), host: host, port: port) else { continue }
            guard secure else {
                throw RPCError(code: RPCError.requestFailed,
                               message: "the credential bound to \(binding.host) is sent over https only (or to a loopback address); \(url) is plain http")
            }
            let value: String?
            do { value = try secrets.value(of: binding.secret) } catch { throw RPCError(code: RPCError.requestFailed, message: "secret \(binding.secret) cannot be read: \(error)") }
            guard let value else { throw RPCError(code: RPCError.requestFailed, message: "secret \(binding.secret), bound to \(binding.host), is not defined") }
            do {
                try await audit.append(actor: "gateway", action: "secret.injected", runId: runId,
                                       details: ["name": binding.secret, "host": binding.host, "header": binding.header, "step": step, "workflow": definition.id])
            } catch {
                throw RPCError(code: RPCError.internalError, message: "the credential's use could not be audited")
            }
            let formatted = binding.format.replacingOccurrences(of: "{}", with: value)
            out.injections.append(OutboundInjection(host: host, port: port, header: binding.header, value: formatted))
            // An origin that echoes it may do so whole, bare, or as Basic auth carries it.
            out.redact += [formatted, value, Data(value.utf8).base64EncodedString()]
        }
        return out
    }

    /// Headers a step's request may carry: the ones its definition names (and
    /// Content-Type, which a body sets). An echo is read in the clear: no
    /// compression, no ranges that could cut a credential in pieces.
    nonisolated static func allowedHeaders(_ sent: [Header], declared: [String: String]) -> Result<[(name: String, value: String)], RPCError> {
        let names = Set(declared.keys.map { $0.lowercased() }).union(["content-type"])
        var out: [(name: String, value: String)] = []
        for h in sent {
            let name = h.name.lowercased()
            guard names.contains(name) else {
                return .failure(RPCError(code: RPCError.notAllowed, message: "header \(SegmentClaims.cut(h.name, to: 60)) is not one the step declares"))
            }
            if ["accept-encoding", "range", "if-range"].contains(name) { continue }
            out.append((h.name, h.value))
        }
        out.append(("Accept-Encoding", "identity"))
        return .success(out)
    }

    /// The URL must keep what the step's template writes out before its first
    /// expression (scheme, host, path): the worker fills in the blanks, nothing more.
    nonisolated static func urlFits(_ url: String, template: String) -> Bool {
        let literal = template.range(of: "${{").map { String(template[..<$0.lowerBound]) } ?? template
        return url.hasPrefix(literal)
    }

    /// The egress decision for one hop of a step's request, audited like the proxy's.
    nonisolated static func hopDecision(requester: StepRequester, policy: StepPolicy, step: String, runId: String, workflow: String,
                                        jobId: String, audit: AuditLog) -> OutboundDecision {
        { host, port in
            let decision = await requester.decide(host, port, policy, jobId)
            switch decision {
            case let .success(address):
                audit.record(actor: "gateway", action: "egress.allowed", runId: runId, details: [
                    "step": step, "workflow": workflow, "host": host.text, "port": "\(port)", "ip": address.ip, "via": "control-plane",
                ])
            case let .failure(denial):
                audit.record(actor: "gateway", action: "egress.denied", runId: runId, details: [
                    "step": step, "workflow": workflow, "host": host.text, "port": "\(port)", "reason": denial.reason, "via": "control-plane",
                ])
            }
            GatewayMetrics.egress(allowed: (try? decision.get()) != nil)
            return decision
        }
    }

    nonisolated static func fetch(_ request: RPCIncoming, definition: WorkflowDefinition, runId: String, active a: Active,
                                  policies: [String: StepPolicy], settings: RequestSettings, secrets: SecretStore,
                                  requester: StepRequester, audit: AuditLog) async -> RPCReply {
        let params: HTTPFetch.Params
        do { params = try request.params(as: HTTPFetch.Params.self) } catch { return .error(error) }
        let step: Step
        switch await requestingStep(params.jobId, params.step, active: a) {
        case let .failure(e): return .error(e)
        case let .success(s): step = s
        }
        guard case let .http(http) = step.kind else {
            return .error(RPCError(code: RPCError.notAllowed, message: "\(SegmentClaims.cut(params.step)) is not an http step"))
        }
        let policy = policies[step.id] ?? StepPolicy()
        if let denied = policy.denied { return .error(RPCError(code: RPCError.notAllowed, message: denied.message)) }
        if let problem = HTTPURLRule.problem(params.url) { return .error(RPCError(code: RPCError.requestFailed, message: problem)) }
        guard urlFits(params.url, template: http.url) else {
            return .error(RPCError(code: RPCError.notAllowed, message: "the URL does not fit the step's url \(SegmentClaims.cut(http.url))"))
        }
        let headers: [(name: String, value: String)]
        switch allowedHeaders(params.headers, declared: http.headers) {
        case let .failure(e): return .error(e)
        case let .success(h): headers = h
        }
        // The step's hosts before any credential is resolved (or its use audited).
        if let c = URLComponents(string: params.url), let host = c.host?.lowercased(), !policy.unrestricted {
            let port = c.port ?? (c.scheme?.lowercased() == "https" ? 443 : 80)
            guard policy.allowHosts.contains(where: { HostPattern.matches($0, host: host, port: port) }) else {
                return .error(RPCError(code: RPCError.notAllowed, message: "\(host):\(port) is not in networkEgress.allowHosts"))
            }
        }
        let credentials: Credentials
        do { credentials = try await Self.credentials(for: params.url, step: params.step, definition: definition, runId: runId,
                                                      settings: settings, secrets: secrets, audit: audit) } catch { return .error(error) }
        let injections = credentials.injections
        var body: [UInt8]?
        if let b = params.body {
            guard let data = Data(base64Encoded: b) else { return .error(RPCError(code: RPCError.invalidParams, message: "body is not base64")) }
            body = Array(data)
        }
        let timeout = Duration.milliseconds(step.timeoutMs ?? 60_000)
        let outbound = OutboundRequest(method: http.method.rawValue, url: params.url, headers: headers, body: body, timeout: timeout)
        let values = credentials.redact
        @Sendable func clean(_ text: String) -> String { String(decoding: EchoRedaction.redact(Array(text.utf8), values: values), as: UTF8.self) }
        do {
            let response = try await requester.outbound.perform(
                outbound, limits: OutboundLimits(maxResponseBytes: settings.maxResponseBytes, maxRedirects: settings.maxRedirects),
                injections: injections,
                decide: hopDecision(requester: requester, policy: policy, step: params.step, runId: runId, workflow: definition.id,
                                   jobId: a.jobId, audit: audit),
                // As each happens: a refused hop ends the request with an error, not a response.
                onHop: { hop in auditHop(hop, step: params.step, runId: runId, audit: audit) })
            return .result(HTTPFetch.Result(
                status: response.status,
                headers: response.headers.map { Header($0.name, clean($0.value)) },
                body: Data(EchoRedaction.redact(response.body, values: values)).base64EncodedString(), url: clean(response.url)))
        } catch {
            let e = rpcError(error)
            return .error(RPCError(code: e.code, message: clean(e.message)))
        }
    }

    nonisolated static func auditHop(_ hop: OutboundHop, step: String, runId: String, audit: AuditLog) {
        switch hop {
        case let .followed(from, to, status):
            audit.record(actor: "gateway", action: "http.redirect", runId: runId, details: ["step": step, "from": from, "to": to, "status": "\(status)"])
        case let .refused(to, reason):
            audit.record(actor: "gateway", action: "http.redirect.refused", runId: runId, details: ["step": step, "to": to, "reason": reason])
        }
    }

    nonisolated static func rpcError(_ error: OutboundError) -> RPCError {
        switch error {
        case .refused, .redirectRefused: RPCError(code: RPCError.notAllowed, message: "\(error)")
        default: RPCError(code: RPCError.requestFailed, message: "\(error)")
        }
    }

    nonisolated static func complete(_ request: RPCIncoming, definition: WorkflowDefinition, runId: String, active a: Active,
                                     policies: [String: StepPolicy], settings: RequestSettings, secrets: SecretStore,
                                     requester: StepRequester, audit: AuditLog,
                                     delta: @escaping @Sendable (String, String) async -> Void) async -> RPCReply {
        let params: InferComplete.Params
        do { params = try request.params(as: InferComplete.Params.self) } catch { return .error(error) }
        let step: Step
        switch await requestingStep(params.jobId, params.step, active: a) {
        case let .failure(e): return .error(e)
        case let .success(s): step = s
        }
        guard case let .infer(infer) = step.kind else {
            return .error(RPCError(code: RPCError.notAllowed, message: "\(SegmentClaims.cut(params.step)) is not an infer step"))
        }
        guard let provider = settings.providers[infer.provider] else {
            return .error(RPCError(code: RPCError.requestFailed, message: "provider \(infer.provider) is not configured (providers: in config)"))
        }
        let policy = policies[step.id] ?? StepPolicy()
        if let denied = policy.denied { return .error(RPCError(code: RPCError.notAllowed, message: denied.message)) }
        let model = infer.model ?? provider.model
        var body: [String: JSONValue] = [
            "model": .string(model),
            "messages": .array(params.messages.map { ["role": .string($0.role.rawValue), "content": .string($0.content)] }),
            "stream": true, "stream_options": ["include_usage": true],
        ]
        if let t = infer.temperature { body["temperature"] = .number(t) }
        if let m = infer.maxTokens { body["max_tokens"] = .number(Double(m)) }
        if let schema = infer.responseFormat {
            body["response_format"] = ["type": "json_schema", "json_schema": ["name": "output", "schema": schema]]
        }
        let url = provider.baseURL.hasSuffix("/") ? provider.baseURL + "chat/completions" : provider.baseURL + "/chat/completions"
        var credentials = Credentials()
        if let name = provider.apiKeySecret, let c = URLComponents(string: url), let host = c.host {
            let port = c.port ?? (c.scheme?.lowercased() == "https" ? 443 : 80)
            var only = settings
            only.inject = [CredentialInjection(host: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)", secret: name)]
            do { credentials = try await Self.credentials(for: url, step: params.step, definition: WorkflowDefinition(id: definition.id, steps: []),
                                                          runId: runId, settings: only, secrets: secrets, audit: audit) } catch { return .error(error) }
        }
        let injections = credentials.injections, values = credentials.redact
        // A provider that echoes its key (in an error, in a reply) does not hand it to the worker.
        @Sendable func clean(_ text: String) -> String { String(decoding: EchoRedaction.redact(Array(text.utf8), values: values), as: UTF8.self) }
        // Deltas are coalesced: each is an event in the store, fsynced, so a
        // token at a time would cost a write per token.
        let stream = StreamState()
        let outbound = OutboundRequest(method: "POST", url: url, headers: [("Content-Type", "application/json"), ("Accept", "text/event-stream")],
                                       body: Array(JSONValue.object(body).jsonText.utf8), timeout: .milliseconds(step.timeoutMs ?? 300_000))
        do {
            let response = try await requester.outbound.perform(
                outbound, limits: OutboundLimits(maxResponseBytes: settings.maxResponseBytes, maxRedirects: 0),
                injections: injections,
                decide: hopDecision(requester: requester, policy: policy, step: params.step, runId: runId, workflow: definition.id,
                                    jobId: a.jobId, audit: audit),
                onBodyChunk: { chunk in
                    if let text = await stream.feed(chunk) { await delta(params.step, clean(text)) }
                })
            if let text = await stream.flush() { await delta(params.step, clean(text)) }
            guard (200..<300).contains(response.status) else {
                let message = ChatStream.errorMessage(response.body) ?? String(decoding: response.body.prefix(300), as: UTF8.self)
                return .error(RPCError(code: RPCError.requestFailed, message: clean("provider \(infer.provider) answered \(response.status): \(message)")))
            }
            var parsed = await stream.parser
            if !parsed.done, !response.body.isEmpty, !(response.headers.first { $0.name.lowercased() == "content-type" }?.value.contains("event-stream") ?? false) {
                parsed.whole(response.body)
            }
            GatewayMetrics.inferTokens(prompt: parsed.usage.promptTokens, completion: parsed.usage.completionTokens)
            return .result(InferComplete.Result(content: clean(parsed.content), model: clean(parsed.model ?? model),
                                                finishReason: parsed.finishReason.map(clean), usage: parsed.usage))
        } catch {
            let e = rpcError(error)
            return .error(RPCError(code: e.code, message: clean(e.message)))
        }
    }

    /// The reply as it streams, and the text not yet sent on as a delta.
    actor StreamState {
        var parser = ChatStream()
        private var unsent = ""
        private var lastSent = ContinuousClock.now

        func feed(_ chunk: [UInt8]) -> String? {
            unsent += parser.feed(chunk)
            guard !unsent.isEmpty, ContinuousClock.now - lastSent >= .milliseconds(100) else { return nil }
            return flush()
        }

        func flush() -> String? {
            guard !unsent.isEmpty else { return nil }
            defer {
                unsent = ""
                lastSent = .now
            }
            return unsent
        }
    }
}
