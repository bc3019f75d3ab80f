import Foundation
import Sandbox
import Synchronization
import Wire
import Workflow

/// `agent` steps: the worker is the ACP client. It starts the agent inside the
/// step's sandbox, opens a session, sends the prompt (and, with `output`, up to
/// `maxTurns - 1` more asking for a fitting answer), serves the agent's
/// requests under the step's policy, and ends the agent with the step.
extension Interpreter {
    /// ACP's protocol version this client speaks.
    static let acpVersion = 1

    /// `initialize`: the version, and what the client serves (files, terminals).
    static let acpInitialize: JSONValue = [
        "protocolVersion": .number(Double(acpVersion)),
        "clientCapabilities": ["fs": ["readTextFile": true, "writeTextFile": true], "terminal": true],
        "clientInfo": ["name": "skelm", "version": .string("\(WireProtocol.version)")],
    ]

    func runAgent(_ agent: AgentStep, step: Step, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> Outcome {
        var policy = spec.policies[step.id] ?? StepPolicy()
        if let denied = policy.denied { throw deny(path, denied) }
        // The skills mounted for it (beside the workspace, read-only) are the step's to read.
        policy.fsRead += agent.skills.compactMap { spec.skills[$0]?.path }
        guard let launch = spec.agents[agent.agent] else {
            throw fail(path, .invalidStep, "agent \(agent.agent) is not registered in config (agents:)")
        }
        let scope = frame.scope(input: spec.input, env: env)
        var prompt: String
        do { prompt = try Template.string(agent.prompt, in: scope) } catch { throw fail(path, .expressionError, "prompt: \(error.message)") }
        let skills = agent.skills.compactMap { spec.skills[$0] }
        if !skills.isEmpty {
            let list = skills.map { "- \($0.name): \($0.description) (read-only, at \($0.path)/SKILL.md)" }
            prompt = "Skills you may use:\n" + list.joined(separator: "\n") + "\n\n" + prompt
        }
        if !launch.resident, agent.sessionKey != nil {
            throw fail(path, .invalidStep, "sessionKey needs a resident agent (lifecycle: resident); \(agent.agent) starts with each step")
        }
        if launch.resident, !agent.skills.isEmpty || agent.onPermission == .ask {
            throw fail(path, .invalidStep, "a resident agent works in its own home: skills and onPermission: ask are for ephemeral agents")
        }
        if launch.resident, let server = agent.mcpServers.first(where: { spec.mcpServers[$0]?.resident == true }) {
            throw fail(path, .invalidStep, "a resident agent starts the MCP servers it is offered itself; \(server) is a resident MCP server, for mcp steps and ephemeral agents")
        }
        if launch.resident { return try await runResident(agent, step: step, path: path, scope: scope, prompt: prompt, deadline: deadline) }
        // The offered MCP servers are reached through the worker's gate, which
        // holds every call to allowedTools; the agent never starts them itself.
        let offered = agent.mcpServers.compactMap { spec.mcpServers[$0] }
        let emitHere: @Sendable (JobEventType, JSONValue) -> Void = { [self] type, data in emit(type, step: path, data: data) }
        let gateBox = Shared<PeerSandbox?>(nil)
        let serverHomes = Shared<[StepHome]>([])
        var gate: MCPGate?
        if !offered.isEmpty {
            do {
                gate = try await MCPGate.start(offered: offered, policy: policy, loop: loop, spawn: { [self, policy] launch in
                    guard let box = gateBox.get else { throw MCPClient.ToolError(description: "the step is ending") }
                    // Each server in a home of its own, as its working directory, under
                    // a layer without the gate's and relay's ports: the agent cannot
                    // plant code where the server looks, nor the server use the gate.
                    let home = try StepHome.make(workspace: spec.workspace)
                    serverHomes.set(serverHomes.get + [home])
                    let ruleset = policy.unrestricted
                        ? LandlockRuleset.confined(writable: [spec.workspace, home.path] + policy.fsWrite, readable: policy.fsRead,
                                                   connectPorts: box.egressPorts)
                        : LandlockRuleset.step(workspace: spec.workspace, home: home.path, fsRead: policy.fsRead, fsWrite: policy.fsWrite,
                                               executables: policy.executables, connectPorts: box.egressPorts)
                    var declared = try StepRunner.environment(launch.env, workspace: spec.workspace, home: home.path)
                    for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] { declared[key] = box.env[key] }
                    return try await spawnConfined(launch.program, argv: launch.argv, env: declared, cwd: home.path, limits: spec.limits,
                                                   ruleset: ruleset, loop: loop)
                }, resident: { [self] server, operation in
                    try await calls.residentMCP(.init(jobId: spec.jobId, step: path, server: server, operation: operation,
                                                      timeoutMs: Int(timeLeft(step, deadline).milliseconds)))
                }, emit: emitHere)
            } catch {
                throw fail(path, .agentFailed, "cannot start the MCP gate: \(error)")
            }
        }
        defer {
            gate?.stop()
            serverHomes.get.forEach { $0.remove() }
        }
        // Its provider through the relay: a base URL on the worker, and as its
        // key a token that opens the relay and nothing else.
        var relay: ProviderRelayServer?
        var agentEnv = launch.env
        if launch.provider != nil {
            do {
                relay = try await ProviderRelayServer.start(loop: loop, send: { [self] params in
                    try await calls.relay(params, timeLeft(step, deadline))
                }, params: { [jobId = spec.jobId] method, uri, headers, body in
                    ProviderRelay.Params(jobId: jobId, step: path, method: method, path: uri, headers: headers, body: body)
                })
            } catch {
                throw fail(path, .agentFailed, "cannot start the provider relay: \(error)")
            }
            agentEnv["OPENAI_BASE_URL"] = "http://127.0.0.1:\(relay!.port)\(launch.providerPath ?? "")"
            agentEnv["OPENAI_API_KEY"] = relay!.token
            agentEnv["NO_PROXY"] = "127.0.0.1,localhost"
            agentEnv["no_proxy"] = "127.0.0.1,localhost"
        }
        defer { relay?.stop() }
        let sandbox = try peerSandbox(policy: policy, path: path, env: agentEnv,
                                      extraPorts: (gate.map { [$0.port] } ?? []) + (relay.map { [$0.port] } ?? []))
        gateBox.set(sandbox)
        defer { sandbox.close() }
        // Before the sandbox closes: nothing of the gate or relay outlives the step.
        defer {
            gateBox.set(nil)
            gate?.stop()
            relay?.stop()
        }
        let process: PeerProcess
        do {
            process = try await startPeer(launch.program, argv: launch.argv, env: sandbox.env, cwd: spec.workspace,
                                          sandbox: sandbox)
        } catch {
            throw fail(path, .agentFailed, "cannot start agent \(agent.agent): \(error)")
        }
        let stderr = StderrTail(fd: process.stderr)
        let terminals = Terminals()
        defer {
            terminals.killAll()
            process.kill()
        }
        let updates = AgentUpdates(maxMessage: spec.limits.maxOutputBytes, emit: emitHere)
        let server = AgentServer(
            policy: policy,
            paths: PathRules(workspace: spec.workspace, readable: policy.fsRead + [sandbox.home.path],
                             writable: (policy.unrestricted ? [] : policy.fsWrite) + [sandbox.home.path]),
            onPermission: agent.onPermission, servers: Set(offered.map(\.id)),
            spawn: { [self] program, argv, env, cwd in
                try await startPeer(program, argv: argv, env: env, cwd: cwd, sandbox: sandbox, mergeStderr: true)
            },
            environment: { [workspace = spec.workspace, home = sandbox.home.path] declared in
                try StepRunner.environment(declared, workspace: workspace, home: home)
            },
            terminals: terminals, workspace: spec.workspace,
            emit: { [self] type, data in emit(type, step: path, data: data) },
            ask: { [self] title in
                let left = Int(timeLeft(step, deadline).milliseconds)
                let params = AgentPermission.Params(jobId: spec.jobId, step: path, title: title, timeoutMs: max(1, left))
                return (try? await calls.askPermission(params))?.approved ?? false
            },
            confine: confinedReplies(on: loop, ruleset: sandbox.ruleset))
        let malformed = Shared<String?>(nil)
        let rpc: LineRPC
        do {
            rpc = try await LineRPC.connect(input: process.stdout, output: process.stdin, loop: loop,
                                            onRequest: { method, params in await server.serve(method, params) },
                                            onNotification: { method, params in if method == "session/update" { updates.receive(params) } },
                                            onMalformed: { line in malformed.set(line) })
        } catch {
            throw fail(path, .agentFailed, "cannot talk to agent \(agent.agent): \(error)")
        }
        defer { rpc.close() }

        // The step's time bounds the whole conversation: past it the agent is
        // asked to cancel, and killed if it has not ended its turn 2 s later.
        let timeoutMs = Int(timeLeft(step, deadline).milliseconds)
        let timedOut = Shared(false)
        let session = Shared<String?>(nil)
        let cancelAsked = Shared(false)
        let watchdog = Task {
            try await Task.sleep(for: .milliseconds(timeoutMs))
            timedOut.set(true)
            if let id = session.get {
                rpc.notify("session/cancel", ["sessionId": .string(id)])
                cancelAsked.set(true)
            }
            try await Task.sleep(for: .seconds(2))
            process.kill()
            // A descendant may still hold its output open: the conversation ends here.
            rpc.close()
        }
        defer { watchdog.cancel() }

        func failure(_ error: any Error, doing what: String) async -> StepFailure {
            if timedOut.get {
                // Killed 2 s after the request, or gone by itself: either way it never answered it.
                let cancel = cancelAsked.get ? "; the agent was asked to cancel and did not end its turn" : ""
                return fail(path, .timeout, "timed out after \(timeoutMs) ms \(what)" + cancel)
            }
            var message = "agent \(agent.agent) \(what): \(error)"
            // A closed pipe is a peer ending: its status and its last words are worth a moment.
            if let status = await process.exitStatus(within: .seconds(1)) { message = "agent \(agent.agent) \(PeerProcess.describe(status)) \(what)" }
            if let line = malformed.get { message += "; it wrote a line that is not JSON-RPC: \(line)" }
            return fail(path, .agentFailed, message + Self.tail(await stderr.settled()))
        }

        do {
            _ = try await rpc.call("initialize", Self.acpInitialize)
        } catch { throw await failure(error, doing: "while initializing") }
        let servers: [JSONValue] = offered.map { s in
            ["type": "http", "name": .string(s.id), "url": .string(gate?.url(s.id) ?? ""),
             "headers": [["name": "Authorization", "value": .string("Bearer " + (gate?.token ?? ""))]]]
        }
        let sessionId: String
        do {
            let created = try await rpc.call("session/new", ["cwd": .string(spec.workspace), "mcpServers": .array(servers)])
            guard case let .string(id)? = created["sessionId"] else {
                throw LineRPC.RemoteError(code: -32603, message: "session/new answered without a sessionId")
            }
            sessionId = id
        } catch let f as StepFailure { throw f } catch { throw await failure(error, doing: "while opening a session") }
        session.set(sessionId)
        // The watchdog sets timedOut before it looks for a session: if it found
        // none, this sees its flag, and a turn that could never be cancelled is not started.
        if timedOut.get { throw fail(path, .timeout, "timed out after \(timeoutMs) ms while opening a session") }

        var turn = 1, text = prompt
        while true {
            updates.startTurn()
            let answer: JSONValue
            do {
                answer = try await rpc.call("session/prompt", ["sessionId": .string(sessionId), "prompt": [["type": "text", "text": .string(text)]]])
            } catch { throw await failure(error, doing: "during its turn") }
            updates.flush()
            if timedOut.get { throw fail(path, .timeout, "timed out after \(timeoutMs) ms; the agent was asked to cancel") }
            let stop = answer["stopReason"]?.stringValue ?? "end_turn"
            guard stop == "end_turn" || stop == "max_tokens" else {
                throw fail(path, .agentFailed, "agent \(agent.agent) ended its turn with stopReason \(stop)")
            }
            let (message, truncated) = updates.message
            let details: [String: JSONValue] = ["turns": .number(Double(turn)), "stopReason": .string(stop), "sessionId": .string(sessionId)]
            switch try judge(message, truncated: truncated, agent: agent, turn: turn, path: path, details: details) {
            case let .done(outcome): return outcome
            case let .again(next):
                turn += 1
                text = next
            }
        }
    }

    /// A resident agent: each turn goes through the control plane to the
    /// agent's own worker, which records the turn's events itself.
    func runResident(_ agent: AgentStep, step: Step, path: String, scope: ExpressionScope, prompt: String,
                     deadline: ContinuousClock.Instant?) async throws -> Outcome {
        var key: String?
        if let k = agent.sessionKey {
            do { key = try Template.string(k, in: scope) } catch { throw fail(path, .expressionError, "sessionKey: \(error.message)") }
        }
        var turn = 1, text = prompt
        while true {
            let left = Int(timeLeft(step, deadline).milliseconds)
            guard left > 0 else { throw fail(path, .timeout, "no time left for turn \(turn)") }
            let result: AgentTurnResult
            do {
                result = try await calls.agentTurn(.init(jobId: spec.jobId, step: path, prompt: text, sessionKey: key, timeoutMs: left))
            } catch let e as RPCError {
                if e.code == RPCError.notAllowed { throw StepFailure(.permissionDenied, step: path, message: e.message) }
                throw fail(path, .agentFailed, "agent \(agent.agent): \(e.message)")
            }
            if result.timedOut { throw fail(path, .timeout, "timed out after \(left) ms; the agent was asked to cancel") }
            if let error = result.error { throw fail(path, .agentFailed, "agent \(agent.agent): \(error)") }
            let stop = result.stopReason ?? "end_turn"
            guard stop == "end_turn" || stop == "max_tokens" else {
                throw fail(path, .agentFailed, "agent \(agent.agent) ended its turn with stopReason \(stop)")
            }
            var details: [String: JSONValue] = ["turns": .number(Double(turn)), "stopReason": .string(stop)]
            if let id = result.sessionId { details["sessionId"] = .string(id) }
            if let key { details["sessionKey"] = .string(key) }
            switch try judge(result.message, truncated: result.truncated, agent: agent, turn: turn, path: path, details: details) {
            case let .done(outcome): return outcome
            case let .again(next):
                turn += 1
                text = next
            }
        }
    }

    enum Verdict {
        case done(Outcome)
        /// Not yet: the prompt that asks again.
        case again(String)
    }

    /// A turn's answer as the step's output: the message, or with `output` the
    /// JSON in it when it fits; else another turn while `maxTurns` allows.
    func judge(_ message: String, truncated: Bool, agent: AgentStep, turn: Int, path: String,
               details: [String: JSONValue]) throws -> Verdict {
        guard let schema = agent.output else {
            if truncated { throw fail(path, .outputInvalid, "the agent's message passed the output limit (workers.limits.outputKB)") }
            return .done(Outcome(output: .string(message.trimmingCharacters(in: .whitespacesAndNewlines)), details: details))
        }
        let problems: [String]
        if let value = Self.json(in: message) {
            problems = JSONSchema(schema).validate(value).map(\.description)
            if problems.isEmpty { return .done(Outcome(output: value, details: details)) }
        } else {
            problems = ["the answer is not JSON"]
        }
        let said = problems.prefix(5).joined(separator: "; ")
        guard turn < agent.maxTurns else {
            throw StepFailure(.outputInvalid, step: path, message: "after \(turn) turn\(turn == 1 ? "" : "s") the answer does not fit output: \(said)")
        }
        return .again("Your answer does not fit the JSON Schema it must satisfy: \(said). "
                      + "Answer again with only the JSON value, nothing around it. The schema: \(schema.jsonText)")
    }

    /// The JSON an answer holds: all of it, or the inside of a fenced block.
    static func json(in message: String) -> JSONValue? {
        let trimmed = message.trimmingCharacters(in: .whitespacesAndNewlines)
        if let v = JSONValue.parse(trimmed) { return v }
        guard let open = trimmed.range(of: "```") else { return nil }
        var inner = trimmed[open.upperBound...]
        if let newline = inner.firstIndex(of: "\n") { inner = inner[inner.index(after: newline)...] }
        guard let close = inner.range(of: "```") else { return nil }
        return JSONValue.parse(String(inner[..<close.lowerBound]).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
