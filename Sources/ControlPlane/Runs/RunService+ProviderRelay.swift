import Foundation
import Wire
import Workflow

/// `provider.relay`: an agent's request to its model provider, made by the
/// control plane with the provider's key, as an `infer` step's is.
extension RunService {
    nonisolated func relay(_ request: RPCIncoming, definition: WorkflowDefinition, runId: String, active a: Active,
                           policies: [String: StepPolicy], settings: RequestSettings, secrets: SecretStore,
                           requester: StepRequester) async -> RPCReply {
        let params: ProviderRelay.Params
        do { params = try request.params(as: ProviderRelay.Params.self) } catch { return .error(error) }
        func refuse(_ why: String) -> RPCReply { .error(RPCError(code: RPCError.notAllowed, message: why)) }
        let step: Step
        switch await Self.requestingStep(params.jobId, params.step, active: a, once: false) {
        case let .failure(e): return .error(e)
        case let .success(s): step = s
        }
        guard case let .agent(agent) = step.kind, let name = self.policies.peers.agents[agent.agent]?.config.provider else {
            return refuse("\(SegmentClaims.cut(params.step)) is not an agent step with a provider")
        }
        guard let provider = settings.providers[name], let base = URLComponents(string: provider.baseURL),
              let scheme = base.scheme, let host = base.host else {
            return .error(RPCError(code: RPCError.requestFailed, message: "provider \(name) is not configured (providers: in config)"))
        }
        let policy = policies[step.id] ?? StepPolicy()
        if let denied = policy.denied { return refuse(denied.message) }
        // Only below the provider's base path, and only the methods an API client
        // uses. Judged on the path as written, refusing anything a server could
        // normalize differently: escapes, dot segments, backslashes, parameters.
        let basePath = base.path.hasSuffix("/") ? String(base.path.dropLast()) : base.path
        let path = params.path
        let pathOnly = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        let segments = pathOnly.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard pathOnly.hasPrefix(basePath + "/"), !pathOnly.contains("%"), !pathOnly.contains("\\"), !pathOnly.contains(";"),
              !path.contains("#"), !segments.contains(where: { $0 == "." || $0 == ".." || $0.isEmpty }),
              ["GET", "POST"].contains(params.method) else {
            return refuse("the relay serves GET and POST under \(basePath)/ of provider \(name) only")
        }
        let port = base.port ?? (scheme == "https" ? 443 : 80)
        let origin = "\(scheme)://\(host.contains(":") ? "[\(host)]" : host)\(base.port.map { ":\($0)" } ?? "")"
        let url = origin + path
        if let problem = HTTPURLRule.problem(url) { return .error(RPCError(code: RPCError.requestFailed, message: problem)) }
        // The step's hosts before any credential is resolved (or its use audited).
        if !policy.unrestricted, !policy.allowHosts.contains(where: { HostPattern.matches($0, host: host.lowercased(), port: port) }) {
            return refuse("\(host):\(port), provider \(name)'s host, is not in networkEgress.allowHosts")
        }
        var credentials = Credentials()
        if let secret = provider.apiKeySecret {
            var only = settings
            only.inject = [CredentialInjection(host: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)", secret: secret)]
            do { credentials = try await Self.credentials(for: url, step: params.step, definition: WorkflowDefinition(id: definition.id, steps: []),
                                                          runId: runId, settings: only, secrets: secrets, audit: audit) } catch { return .error(error) }
        }
        var body: [UInt8]?
        if let b = params.body {
            guard let data = Data(base64Encoded: b) else { return .error(RPCError(code: RPCError.invalidParams, message: "body is not base64")) }
            body = Array(data)
        }
        let headers = params.headers.filter { ["content-type", "accept"].contains($0.name.lowercased()) }.map { (name: $0.name, value: $0.value) }
        let values = credentials.redact
        @Sendable func clean(_ text: String) -> String { String(decoding: EchoRedaction.redact(Array(text.utf8), values: values), as: UTF8.self) }
        let outbound = OutboundRequest(method: params.method, url: url, headers: headers, body: body,
                                       timeout: .milliseconds(step.timeoutMs ?? 300_000))
        do {
            // The provider's host must be in the step's allowHosts, as for an infer step (decided per hop).
            let response = try await requester.outbound.perform(
                outbound, limits: OutboundLimits(maxResponseBytes: settings.maxResponseBytes, maxRedirects: 0),
                injections: credentials.injections,
                decide: Self.hopDecision(requester: requester, policy: policy, step: params.step, runId: runId, workflow: definition.id,
                                         jobId: a.jobId, audit: audit))
            audit.record(actor: a.workerActor, action: "provider.relayed", runId: runId, details: [
                "step": params.step, "provider": name, "path": SegmentClaims.cut(path), "status": "\(response.status)",
            ])
            return .result(HTTPFetch.Result(status: response.status, headers: response.headers.map { Header($0.name, clean($0.value)) },
                                            body: Data(EchoRedaction.redact(response.body, values: values)).base64EncodedString(),
                                            url: clean(response.url)))
        } catch {
            let e = Self.rpcError(error)
            return .error(RPCError(code: e.code, message: clean(e.message)))
        }
    }
}
