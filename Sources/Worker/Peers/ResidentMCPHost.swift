import Foundation
import NIOCore
import Sandbox
import Wire
import Workflow

/// `mcp.host`: a resident MCP server in a worker of its own. The server starts
/// once, in its home, under its ceiling's Landlock layer (its own program and
/// installation, and what its `permissions` name); then the worker asks the
/// control plane for calls and answers several at once, as MCP allows. The
/// control plane has checked each call against the asking step's policy.
///
/// Health: a server that exits ends the job at once (and the control plane
/// starts it again); one that is idle, or let a call time out, is pinged, and
/// one that does not answer the ping, or holds every call slot with calls
/// that timed out, is killed.
enum ResidentMCPHost {
    /// Calls the server answers at once; more wait in the control plane's queue.
    static let maxInFlight = 16
    /// How long a `ping` may take before the server counts as wedged.
    static let pingLimit = Duration.seconds(10)
    /// How long the server may take to start and answer `initialize`.
    static let startLimit = Duration.seconds(30)

    static func run(_ p: HostParams, loop: any EventLoop, peer: RPCPeer) async throws -> HostEnded {
        let launch = try await ResidentLaunch.start(p, loop: loop)
        let process = launch.process
        defer { process.kill() }
        let started = await FirstOf.within(startLimit) { () async -> (MCPClient, JSONValue)? in
            try? await MCPClient.start(input: process.stdout, output: process.stdin, loop: loop, onMalformed: { _ in })
        }
        guard let (client, info) = started ?? nil else {
            process.kill()
            throw RPCError(code: RPCError.execFailed, message: "\(p.peer.id) did not initialize: \(await launch.ended(otherwise: "was stopped"))")
        }
        defer { client.close() }
        return await launch.serve { await serve(client, info: info, p: p, process: process, peer: peer) }
    }

    /// Asks for calls until told to stop; each runs on a task of its own.
    private static func serve(_ client: MCPClient, info: JSONValue, p: HostParams, process: PeerProcess, peer: RPCPeer) async -> HostEnded {
        // Calls the server has not answered yet, and of those the ones whose time
        // ran out. A slot is free only once the server answers: MCP gives no way
        // to stop a call, so one that timed out still occupies the server.
        let inFlight = Shared(0)
        let hung = Shared(0)
        let suspect = Shared(false)
        while !Task.isCancelled {
            if inFlight.get >= maxInFlight {
                if hung.get >= maxInFlight {
                    process.kill()
                    return HostEnded(ended: "every one of its \(maxInFlight) call slots held by a call that timed out")
                }
                try? await Task.sleep(for: .milliseconds(10))
                continue
            }
            if suspect.get {
                suspect.set(false)
                guard await healthy(client) else {
                    process.kill()
                    return HostEnded(ended: "did not answer ping within \(pingLimit)")
                }
            }
            let next: ResidentNext.Result
            do { next = try await peer.call(ResidentNext.self, .init(jobId: p.jobId, waitMs: 20_000), timeout: .seconds(30)) } catch is RPCTimeout {
                continue
            } catch {
                // The channel is gone: the control plane ended the job.
                return HostEnded(ended: "stopped")
            }
            if next.stop { return HostEnded(ended: "stopped") }
            guard case let .call(call)? = next.work else {
                // Idle: a good moment to see that the server still answers.
                suspect.set(true)
                continue
            }
            inFlight.update { $0 += 1 }
            let running = Task {
                let outcome = await perform(call.operation, client, info: info)
                inFlight.update { $0 -= 1 }
                return outcome
            }
            Task {
                let outcome: MCPCallResult
                if let answered = await FirstOf.within(.milliseconds(max(call.timeoutMs, 1)), { await running.value }) {
                    outcome = answered
                } else {
                    outcome = .timedOut
                    suspect.set(true)
                    hung.update { $0 += 1 }
                    Task {
                        _ = await running.value
                        hung.update { $0 -= 1 }
                    }
                }
                _ = try? await peer.call(ResidentDone.self, .init(jobId: p.jobId, workId: call.id, outcome: .call(outcome), events: 0),
                                         timeout: .seconds(30))
            }
        }
        return HostEnded(ended: "stopped")
    }

    /// A listing carries the server's `initialize` answer too, for the registry.
    static func perform(_ operation: MCPOperation, _ client: MCPClient, info: JSONValue) async -> MCPCallResult {
        do {
            switch operation {
            case .listTools:
                return .result(["tools": .array(try await client.listTools()), "serverInfo": info["serverInfo"] ?? .null,
                                "protocolVersion": info["protocolVersion"] ?? .null])
            case let .call(tool, arguments):
                return .result(try await client.call(tool, arguments: arguments))
            }
        } catch {
            return .failed("\(error)")
        }
    }

    private static func healthy(_ client: MCPClient) async -> Bool {
        let answered = await FirstOf.within(pingLimit) { (try? await client.rpc.call("ping", .object([:]))) != nil }
        return answered == true
    }
}
