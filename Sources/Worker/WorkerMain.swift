import CSandbox
import Dispatch
import Foundation
import NIOCore
import NIOPosix
import Sandbox
import Synchronization
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// `skelm worker --fd 3 --sandbox <json>`: the hidden entry point the control
/// plane execs. Sandboxes itself first, then says hello, runs one job and exits.
public enum WorkerMain {
    public static func run(arguments: [String]) -> Never {
        guard let specIndex = arguments.firstIndex(of: "--sandbox"), specIndex + 1 < arguments.count,
              arguments.contains("--fd") else {
            refuse()
        }
        start(specJSON: Data(arguments[specIndex + 1].utf8))
    }

    /// `skelm worker-template`: warms up once, then forks workers on the control
    /// plane's request (see template.c). Each child continues in `forkedEntry`.
    public static func template() -> Never {
        guard getenv("SKELM_WORKER_TEMPLATE") != nil else { refuse() }
        // Nothing here may start a thread: the serving thread forks, and a child
        // must be this process's only thread when it sandboxes itself.
        // First, while this is the only thread: the code the warm-up and every
        // worker run from onto huge pages, where the kernel has them. Without
        // them the code stays as it was, and workers only cost more: the
        // operator hears why (stderr is the gateway's), unless the host simply
        // has no huge pages to give.
        let moved = sk_template_huge_code()
        if moved < 0, moved != -Int(EOPNOTSUPP) {
            FileHandle.standardError.write(Data("worker template: code stays on the file's pages: \(String(cString: strerror(Int32(-moved))))\n".utf8))
        }
        WarmUp.run()
        // Forking is safe only while no other thread can hold a lock: check, not hope.
        let threads = WorkerSandbox.threadCount()
        guard threads == 1 else {
            FileHandle.standardError.write(Data("worker template: \(threads) threads after warm-up; refusing to fork\n".utf8))
            exit(71)
        }
        let dropped = sk_template_drop_caps()
        if dropped != 0 {
            FileHandle.standardError.write(Data("worker template: dropping capabilities: \(String(cString: strerror(-dropped)))\n".utf8))
            exit(71)
        }
        exit(sk_template_serve(WorkerSandbox.channelFD, 5, forkedEntry))
    }

    /// A forked worker: the only thread, its namespaces, uid and fds already in place.
    private static let forkedEntry: sk_tpl_entry_t = { bytes, count in
        guard let bytes else { exit(64) }
        start(specJSON: Data(bytes: bytes, count: count))
    }

    private static func refuse() -> Never {
        FileHandle.standardError.write(Data("skelm worker is started by the gateway, not by hand\n".utf8))
        exit(64)
    }

    /// Decodes the sandbox spec, sandboxes this process, then turns the calling
    /// thread into the worker's event loop and serves the control plane on it.
    ///
    /// The loop runs on the thread we already have (no second thread to start),
    /// through the same code the template's warm-up ran, so a forked worker finds
    /// its metadata cached.
    private static func start(specJSON: Data) -> Never {
        guard let spec = try? JSONDecoder().decode(WorkerSandboxSpec.self, from: specJSON) else { refuse() }
        // Nothing before this line may start a thread (see WorkerSandbox.apply).
        let report = WorkerSandbox.apply(spec)
        let workspaceRoot = spec.workspaceRoot

        MultiThreadedEventLoopGroup.withCurrentThreadAsEventLoop { loop in
            EventLoopAsGlobalExecutor.install(onto: loop)
            Task {
                let code = await serve(report: report, workspaceRoot: workspaceRoot, connectPorts: spec.connectPorts,
                                       egressSocket: spec.egressSocket, loop: loop)
                exit(code)
            }
        }
        // Nothing stops the loop: the worker ends by exit().
        exit(70)
    }

    static func serve(report: SandboxReport, workspaceRoot: String, connectPorts: [UInt16], egressSocket: String?,
                      loop: any EventLoop) async -> Int32 {
        let job = JobSlot()
        var router = RPCRouter()
        router.on(Ping.self) { _, _ in Empty() }
        router.on(JobStart.self) { spec, peer in
            try await job.run(spec, workspaceRoot: workspaceRoot, connectPorts: connectPorts, loop: loop, peer: peer)
        }
        router.on(RunJob.self) { spec, peer in
            try await job.run(spec, workspaceRoot: workspaceRoot, connectPorts: connectPorts, egressSocket: egressSocket, loop: loop, peer: peer)
        }
        router.on(AgentHost.self) { params, peer in
            try await job.host(params, workspaceRoot: workspaceRoot) { try await ResidentHost.run(params, loop: loop, peer: peer) }
        }
        router.on(MCPHost.self) { params, peer in
            try await job.host(params, workspaceRoot: workspaceRoot) { try await ResidentMCPHost.run(params, loop: loop, peer: peer) }
        }
        router.on(MCPTools.self) { params, _ in
            try await job.listTools(params, workspaceRoot: workspaceRoot, loop: loop)
        }
        router.on(JobCancel.self) { params, _ in
            // The job's processes live in our pid namespace: exiting takes them all.
            // Answering first would race the exit, so the control plane treats the
            // closed channel as the acknowledgement.
            if job.current == params.jobId { exit(0) }
            return Empty()
        }
        let peer: RPCPeer
        do {
            peer = try await RPCPeer.connect(fd: WorkerSandbox.channelFD, group: loop, handler: router)
        } catch {
            return 70
        }
        do {
            // The control plane bounds the handshake (and kills a worker that
            // misses it); on a loaded host its answer can take longer than its
            // own bound suggests, and a worker that gave up first would be lost.
            _ = try await peer.call(WorkerHello.self, .init(protocolVersion: WireProtocol.version, pid: getpid(), sandbox: report),
                                    timeout: .seconds(60))
        } catch {
            // Refused (protocol version, or a sandbox weaker than config requires).
            return 2
        }
        // Single use: the control plane closes the channel once it has the result.
        try? await peer.closeFuture.get()
        return 0
    }
}

/// The one job this worker will ever run.
final class JobSlot: Sendable {
    private let state = Mutex<String?>(nil)
    private let used = Mutex(false)

    var current: String? { state.withLock { $0 } }

    /// Single use: the first job claims the worker, any later one is refused.
    /// `tmp`: the job runs a program without a home of its own (a `JobStart`,
    /// an MCP server asked for its tools), whose TMPDIR is the workspace's
    /// `.tmp`. A workflow's steps each get a home that is their TMPDIR too, so
    /// its job makes none: every directory made and removed per run costs,
    /// on ext4 most of all (see docs/benchmarks.md).
    private func claim(jobId: String, workspace: String, workspaceRoot: String, tmp: Bool) throws {
        let first = used.withLock { u -> Bool in
            defer { u = true }
            return !u
        }
        guard first else { throw RPCError(code: RPCError.jobRefused, message: "this worker already ran a job") }
        guard workspace.hasPrefix(workspaceRoot + "/"), !workspace.contains("/../") else {
            throw RPCError(code: RPCError.jobRefused, message: "workspace \(workspace) is outside \(workspaceRoot)")
        }
        // Made here, as the workspace's owner, rather than by the control plane:
        // one mkdir and chown fewer.
        if tmp, mkdir(workspace + "/.tmp", 0o700) != 0, errno != EEXIST {
            throw RPCError(code: RPCError.jobRefused, message: "cannot create \(workspace)/.tmp: \(String(cString: strerror(errno)))")
        }
        state.withLock { $0 = jobId }
    }

    func run(_ spec: RunJobSpec, workspaceRoot: String, connectPorts: [UInt16], egressSocket: String?, loop: any EventLoop,
             peer: RPCPeer) async throws -> RunJobResult {
        try claim(jobId: spec.jobId, workspace: spec.workspace, workspaceRoot: workspaceRoot, tmp: false)
        let jobId = spec.jobId
        let interpreter = Interpreter(spec: spec, connectPorts: connectPorts, egressSocket: egressSocket, loop: loop,
                                      sink: { event in peer.notify(EventEmit.self, event) },
                                      calls: ControlPlaneCalls(
                                          resolveSecret: { step, name in
                                              try await peer.call(SecretResolve.self, .init(jobId: jobId, step: step, name: name),
                                                                  timeout: .seconds(30)).value
                                          },
                                          // A little beyond the step's time: the control plane's own timeout answers first.
                                          fetch: { params, left in try await peer.call(HTTPFetch.self, params, timeout: left + .seconds(5)) },
                                          complete: { params, left in try await peer.call(InferComplete.self, params, timeout: left + .seconds(5)) },
                                          relay: { params, left in try await peer.call(ProviderRelay.self, params, timeout: left + .seconds(5)) },
                                          agentTurn: { params in
                                              try await peer.call(AgentTurnRequest.self, params, timeout: .milliseconds(params.timeoutMs) + .seconds(10))
                                          },
                                          residentMCP: { params in
                                              try await peer.call(MCPResidentRequest.self, params, timeout: .milliseconds(params.timeoutMs) + .seconds(10))
                                          },
                                          askPermission: { params in
                                              try await peer.call(AgentPermission.self, params, timeout: .milliseconds(params.timeoutMs) + .seconds(5))
                                          }))
        return await interpreter.run()
    }

    /// A resident peer's job: its home, kept across lives, is under the root too.
    func host(_ params: HostParams, workspaceRoot: String, serve: () async throws -> HostEnded) async throws -> HostEnded {
        try claim(jobId: params.jobId, workspace: params.workspace, workspaceRoot: workspaceRoot, tmp: false)
        guard params.home.hasPrefix(workspaceRoot + "/"), !params.home.contains("/../") else {
            throw RPCError(code: RPCError.jobRefused, message: "home \(params.home) is outside \(workspaceRoot)")
        }
        return try await serve()
    }

    func listTools(_ params: MCPTools.Params, workspaceRoot: String, loop: any EventLoop) async throws -> MCPTools.Result {
        try claim(jobId: params.jobId, workspace: params.workspace, workspaceRoot: workspaceRoot, tmp: true)
        return try await MCPToolsJob.run(params, loop: loop)
    }

    func run(_ spec: JobSpec, workspaceRoot: String, connectPorts: [UInt16], loop: any EventLoop, peer: RPCPeer) async throws -> JobResult {
        try claim(jobId: spec.jobId, workspace: spec.workspace, workspaceRoot: workspaceRoot, tmp: true)
        peer.notify(EventEmit.self, JobEvent(jobId: spec.jobId, type: "job.started", message: spec.exec.argv.first ?? ""))
        let ruleset = LandlockRuleset.confined(writable: [spec.workspace] + spec.fsWrite, readable: spec.fsRead,
                                               connectPorts: connectPorts)
        // A thread of its own: the Landlock layer binds the thread that forks the step.
        do {
            return try await confined(on: loop) { try StepRunner.run(job: spec, ruleset: ruleset) }
        } catch let error as SandboxError {
            throw RPCError(code: RPCError.jobRefused, message: "\(error)")
        } catch {
            throw RPCError(code: RPCError.execFailed, message: "\(error)")
        }
    }
}
