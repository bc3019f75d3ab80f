import Foundation
import NIOCore
import Sandbox
import Synchronization
import Wire
import Workflow

/// `agent.host`: a resident agent in a worker of its own. The agent starts
/// once, in its home (kept across restarts by the control plane), under its
/// ceiling's Landlock layer; then the worker asks the control plane for turns,
/// one at a time, and serves each turn's requests under the asking step's
/// policy, on threads that take that narrower layer.
enum ResidentHost {
    /// One turn's serving parts, swapped in and out as turns come.
    private struct Current: Sendable {
        let server: AgentServer
        let updates: AgentUpdates?
    }

    static func run(_ p: HostParams, loop: any EventLoop, peer: RPCPeer) async throws -> HostEnded {
        let launch = try await ResidentLaunch.start(p, loop: loop)
        let process = launch.process, ceiling = launch.ceiling
        defer { process.kill() }
        let current = Shared<Current?>(nil)
        let rpc = try await LineRPC.connect(
            input: process.stdout, output: process.stdin, loop: loop,
            onRequest: { method, params in
                guard let c = current.get else { return .error(code: -32603, message: "no turn is running") }
                return await c.server.serve(method, params)
            },
            onNotification: { method, params in if method == "session/update" { current.get?.updates?.receive(params) } },
            onMalformed: { _ in })
        defer { rpc.close() }
        do {
            _ = try await rpc.call("initialize", Interpreter.acpInitialize)
        } catch {
            throw RPCError(code: RPCError.execFailed, message: "\(p.peer.id) did not initialize: \(await launch.ended(otherwise: "closed its output"))")
        }
        // An agent that exits ends the job at once, turn or no turn: the
        // control plane fails the turn and starts the agent again.
        return await launch.serve {
            var loaded = Set<String>()
            while true {
                if process.exitStatus != nil || rpc.isClosed { return HostEnded(ended: await launch.ended(otherwise: "closed its output")) }
                let next: ResidentNext.Result
                do { next = try await peer.call(ResidentNext.self, .init(jobId: p.jobId, waitMs: 20_000), timeout: .seconds(30)) } catch is RPCTimeout {
                    continue
                } catch {
                    return HostEnded(ended: "stopped")
                }
                if next.stop { return HostEnded(ended: "stopped") }
                guard case let .turn(turn)? = next.work else { continue }
                let emitted = Shared(0)
                let result = await run(turn, p: p, ceiling: ceiling, rpc: rpc, process: process, loop: loop, peer: peer, current: current,
                                       loaded: &loaded, emitted: emitted)
                _ = try? await peer.call(ResidentDone.self, .init(jobId: p.jobId, workId: turn.id, outcome: .turn(result), events: emitted.get),
                                         timeout: .seconds(30))
            }
        }
    }

    private static func run(_ turn: AgentTurn, p: HostParams, ceiling: LandlockRuleset, rpc: LineRPC, process: PeerProcess, loop: any EventLoop,
                            peer: RPCPeer, current: Shared<Current?>, loaded: inout Set<String>, emitted: Shared<Int>) async -> AgentTurnResult {
        let policy = turn.policy, home = p.home
        // The turn's layer: its step's policy, stacked on the agent's ceiling on
        // every thread that serves it (the kernel holds each to both).
        let ruleset = LandlockRuleset.step(workspace: home, home: home, fsRead: policy.fsRead, fsWrite: policy.fsWrite,
                                           executables: policy.executables)
        let terminals = Terminals()
        defer { terminals.killAll() }
        let emit: @Sendable (JobEventType, JSONValue) -> Void = { type, data in
            emitted.set(emitted.get + 1)
            peer.notify(EventEmit.self, JobEvent(jobId: p.jobId, type: type.rawValue, message: "", step: turn.id, data: data))
        }
        let limits = p.limits, agentEnv = p.peer.env
        let server = AgentServer(
            policy: policy, paths: PathRules(workspace: home, readable: policy.fsRead, writable: policy.fsWrite),
            onPermission: turn.onPermission == .ask ? .deny : turn.onPermission, servers: Set(turn.mcpServers.map(\.id)),
            spawn: { program, argv, env, cwd in
                try await spawnConfined(program, argv: argv, env: env, cwd: cwd, limits: limits, ruleset: ruleset, within: ceiling,
                                        mergeStderr: true, loop: loop)
            },
            environment: { declared in try StepRunner.environment(agentEnv.merging(declared) { $1 }, workspace: home, home: home) },
            terminals: terminals, workspace: home, emit: emit,
            ask: { _ in false },
            confine: confinedReplies(on: loop, ruleset: ruleset, within: ceiling))
        let servers: [JSONValue] = turn.mcpServers.map { s in
            ["name": .string(s.id), "command": .string(s.program), "args": .array(s.args.map { .string($0) }),
             "env": .array(s.env.sorted { $0.key < $1.key }.map { ["name": .string($0.key), "value": .string($0.value)] })]
        }
        var result = AgentTurnResult()
        // The turn's time covers opening or loading its session too. Past it the
        // agent is asked to cancel; 2 s later it is killed and the conversation
        // closed (the control plane starts the agent again).
        let timedOut = Shared(false)
        let sessionSeen = Shared<String?>(turn.sessionId)
        let watchdog = Task {
            try await Task.sleep(for: .milliseconds(turn.timeoutMs))
            timedOut.set(true)
            if let id = sessionSeen.get { rpc.notify("session/cancel", ["sessionId": .string(id)]) }
            try await Task.sleep(for: .seconds(2))
            process.kill()
            rpc.close()
        }
        defer { watchdog.cancel() }
        // History a load replays is the agent's memory, not this turn's story: no updates are recorded meanwhile.
        current.set(Current(server: server, updates: nil))
        defer { current.set(nil) }
        do {
            if let id = turn.sessionId {
                if !loaded.contains(id) {
                    _ = try await rpc.call("session/load", ["sessionId": .string(id), "cwd": .string(home), "mcpServers": .array(servers)])
                    loaded.insert(id)
                    result.loaded = true
                }
                result.sessionId = id
            } else {
                let made = try await rpc.call("session/new", ["cwd": .string(home), "mcpServers": .array(servers)])
                guard case let .string(id)? = made["sessionId"] else { return AgentTurnResult(error: "session/new answered without a sessionId") }
                loaded.insert(id)
                result.sessionId = id
                result.created = true
                sessionSeen.set(id)
            }
        } catch {
            result.timedOut = timedOut.get
            result.error = turn.sessionId == nil ? "cannot open a session: \(error)" : "cannot load session \(turn.sessionId!): \(error)"
            return result
        }
        let updates = AgentUpdates(maxMessage: p.limits.maxOutputBytes, emit: emit)
        current.set(Current(server: server, updates: updates))
        let sessionId = result.sessionId!
        do {
            let answer = try await rpc.call("session/prompt", ["sessionId": .string(sessionId), "prompt": [["type": "text", "text": .string(turn.prompt)]]])
            updates.flush()
            result.stopReason = answer["stopReason"]?.stringValue ?? "end_turn"
        } catch {
            result.error = "\(error)"
        }
        result.timedOut = timedOut.get
        (result.message, result.truncated) = updates.message
        return result
    }
}
