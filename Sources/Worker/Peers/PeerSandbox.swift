import Foundation
import NIOCore
import Synchronization
import Sandbox
import Wire
import Workflow

/// What a peer of a step (an agent, an MCP server) runs inside: the step's
/// own home, an environment built like an exec step's, the step's egress
/// forwarder when its policy allows any host, and the step's Landlock layer.
struct PeerSandbox: Sendable {
    let home: StepHome
    let ruleset: LandlockRuleset
    let env: [String: String]
    let forwarder: EgressForwarder?
    /// The ports its network may reach without the extra ones (the gate's, the relay's).
    let egressPorts: [UInt16]

    func close() {
        forwarder?.stop()
        home.remove()
    }
}

extension Interpreter {
    /// `extraPorts`: loopback ports of the worker the peer may connect to (its MCP gate).
    func peerSandbox(policy: StepPolicy, path: String, env declared: [String: String], extraPorts: [UInt16] = []) throws -> PeerSandbox {
        let home: StepHome
        do { home = try StepHome.make(workspace: spec.workspace) } catch { throw fail(path, .execFailed, "\(error)") }
        var env: [String: String]
        do { env = try StepRunner.environment(declared, workspace: spec.workspace, home: home.path) } catch {
            home.remove()
            throw fail(path, .invalidStep, "\(error)")
        }
        let forwarder: EgressForwarder?
        let egressPorts: [UInt16]
        do { (forwarder, egressPorts) = try egress(for: policy, path: path, env: &env) } catch {
            home.remove()
            throw error
        }
        let ports = egressPorts + extraPorts
        let ruleset = policy.unrestricted
            ? LandlockRuleset.confined(writable: [spec.workspace, home.path] + policy.fsWrite, readable: policy.fsRead, connectPorts: ports)
            : LandlockRuleset.step(workspace: spec.workspace, home: home.path, fsRead: policy.fsRead, fsWrite: policy.fsWrite,
                                   executables: policy.executables, connectPorts: ports)
        return PeerSandbox(home: home, ruleset: ruleset, env: env, forwarder: forwarder, egressPorts: egressPorts)
    }

    /// The step's forwarder when its policy allows any host (its proxy
    /// variables set in `env`), and the ports its layer may connect to.
    func egress(for policy: StepPolicy, path: String, env: inout [String: String]) throws -> (EgressForwarder?, [UInt16]) {
        guard let egressSocket, policy.unrestricted || !policy.allowHosts.isEmpty else { return (nil, connectPorts) }
        do {
            let f = try EgressForwarder.start(socket: egressSocket, jobId: spec.jobId, step: path)
            for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] { env[key] = f.proxyURL }
            return (f, connectPorts + [f.port])
        } catch {
            throw fail(path, .execFailed, "cannot start the egress forwarder: \(error)")
        }
    }

    /// Starts a peer's program under the sandbox's layer, from a thread of its own.
    func startPeer(_ program: String, argv: [String], env: [String: String], cwd: String, sandbox: PeerSandbox,
                   mergeStderr: Bool = false) async throws -> PeerProcess {
        try await spawnConfined(program, argv: argv, env: env, cwd: cwd, limits: spec.limits, ruleset: sandbox.ruleset,
                                mergeStderr: mergeStderr, loop: loop)
    }
}

/// The one way a step's peer or terminal starts: on a thread of its own that
/// takes `outer` first (a resident agent's ceiling), then `ruleset`, so the
/// process is held to both; the caller resumes on `loop`.
func spawnConfined(_ program: String, argv: [String], env: [String: String], cwd: String, limits: StepLimits,
                   ruleset: LandlockRuleset, within outer: LandlockRuleset? = nil, mergeStderr: Bool = false,
                   loop: any EventLoop) async throws -> PeerProcess {
    try await confined(on: loop) {
        if let outer { _ = try outer.restrictSelf() }
        return try PeerProcess.spawn(program: program, argv: argv, env: env, cwd: cwd, limits: limits, ruleset: ruleset, mergeStderr: mergeStderr)
    }
}

extension PeerLaunch {
    /// Its command line, program first.
    var argv: [String] { [program] + args }
}

/// The last few KiB a peer wrote to stderr, for the step's error message.
final class StderrTail: Sendable {
    private let tail = Shared<[UInt8]>([])
    private let done = Shared(false)
    static let keep = 4096

    init(fd: Int32) {
        guard fd >= 0 else { return }
        DetachedThread.run { [tail, done] in
            var buffer = [UInt8](repeating: 0, count: 16384)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 16384) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { break }
                var t = tail.get
                t.append(contentsOf: buffer[0..<n])
                if t.count > Self.keep { t.removeFirst(t.count - Self.keep) }
                tail.set(t)
            }
            close(fd)
            done.set(true)
        }
    }

    /// Once the peer has exited, what it wrote last may still be in the pipe:
    /// waits (a little) for the end of it.
    func settled(within limit: Duration = .seconds(1)) async -> String {
        let deadline = ContinuousClock.now + limit
        while !done.get, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return text
    }

    var text: String { String(decoding: tail.get, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// A file operation of an agent's request, run on a thread that took `ruleset`
/// (see `AgentServer.confine`).
/// Several layers stack: the thread is held to all of them (a resident
/// agent's ceiling, then the asking step's policy).
func confinedReplies(on loop: any EventLoop, ruleset: LandlockRuleset, within outer: LandlockRuleset? = nil)
    -> @Sendable (@escaping @Sendable () -> LineRPC.Reply) async -> LineRPC.Reply {
    { body in
        do {
            return try await confined(on: loop) {
                if let outer { _ = try outer.restrictSelf() }
                _ = try ruleset.restrictSelf()
                return body()
            }
        } catch {
            return .error(code: -32603, message: "\(error)")
        }
    }
}
