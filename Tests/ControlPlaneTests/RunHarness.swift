@testable import ControlPlane
import Foundation
import NIOPosix
import Sandbox
import Synchronization
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// A run service wired as `Gateway.init` wires it (a real run store on SQLite,
/// the audit log, the workflow registry, policies, secrets, the egress
/// directory and a worker pool), with a program of the test's choosing in
/// the worker's place: the control plane is the real one, only the worker lies.
final class RunHarness: Sendable {
    let dir: String
    let store: RunStore
    let audit: AuditLog
    let pool: WorkerPool
    let runs: RunService

    /// `worker`: Python, run after `FakeWorker.prelude` (which has already
    /// said hello and taken the job). `secrets`: the values the secret store holds.
    static func start(worker: String, workflows: [String: String], secrets: [String: String] = [:],
                      defaults: PermissionSet = PermissionSet(allowedExecutables: ["sh", "echo"]),
                      peers: PeerRegistry = PeerRegistry()) async throws -> RunHarness {
        let dir = "/tmp/skelm-claims-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir + "/workflows", withIntermediateDirectories: true)
        // Worker uids traverse it to reach their workspace, as in a real state dir.
        chmod(dir, 0o711)
        for (name, text) in workflows { try text.write(toFile: "\(dir)/workflows/\(name)", atomically: true, encoding: .utf8) }

        var config = WorkerPoolConfiguration(workspaceRoot: dir + "/workspaces")
        config.minSpare = 1
        config.max = 2
        config.require = WorkerPoolConfiguration.defaultRequirements(runningAsRoot: geteuid() == 0)
        config.handshakeTimeout = .seconds(5)
        config.workerArgumentsPrefix = ["-c", FakeWorker.prelude + "\n" + worker]
        try WorkerPool.prepareWorkspaceRoot(config.workspaceRoot)
        let audit = try AuditLog(stateDir: dir)
        let spawner = try WorkerSpawner(executable: "/usr/bin/python3", namespaces: HostSupport.probe().namespaces,
                                        uidBase: nextUIDBase(), uidCount: uidSlot)
        let pool = WorkerPool(configuration: config, spawner: spawner, group: MultiThreadedEventLoopGroup.singleton,
                              onViolation: { pid, what in audit.record(actor: "gateway", action: "sandbox.violation", details: ["pid": "\(pid)", "what": what]) },
                              onLifecycle: { action, details in audit.record(actor: "gateway", action: action, details: details) })
        let store = try RunStore(path: dir + "/skelm.db")
        let registry = WorkflowRegistry(dirs: [dir + "/workflows"], audit: audit)
        let (_, invalid) = await registry.reload()
        guard invalid == 0 else { throw HarnessError("invalid test workflow: \(await registry.list().map(\.issues))") }
        var environment: [String: String] = [:]
        for (name, value) in secrets { environment["SKELM_SECRET_" + name] = value }
        let secretStore = try SecretStore(envPrefix: "SKELM_SECRET_", filePath: nil, environment: environment)
        let policies = PolicyResolver(defaults: defaults, profiles: [:], unrestrictedGrants: [], peers: peers)
        let runs = RunService(store: store, registry: registry, pool: pool, hub: RunEventHub(), audit: audit, egress: EgressDirectory(),
                              settings: RunSettings(policies: policies, secrets: secretStore, maxConcurrent: 2,
                                                    runTimeout: .seconds(60), stepTimeoutMs: 20_000),
                              admission: Admission(stateDir: dir),
                              // Steps here make no requests: every decision refuses.
                              requester: StepRequester(outbound: try OutboundHTTP(group: MultiThreadedEventLoopGroup.singleton, caFile: nil),
                                                       decide: { _, _, _, _ in .failure(EgressDenial("no egress in this harness")) }))
        try await pool.start()
        return RunHarness(dir: dir, store: store, audit: audit, pool: pool, runs: runs)
    }

    /// Harnesses of parallel tests get uid ranges of their own, handed out in
    /// turn: two whose workers shared a uid would share its process limit and
    /// could signal each other's workers. A slot holds every worker a test spawns.
    static let uidSlot: UInt32 = 5_000
    private static let nextSlot = Mutex<UInt32>(0)
    /// 4_000_000_000 up to 20M above it: above every gateway test's range
    /// (GatewayTests), below the sandbox tests' pools.
    static func nextUIDBase() -> UInt32 {
        4_000_000_000 + nextSlot.withLock { slot in
            defer { slot = (slot + 1) % 4_000 }
            return slot
        } * uidSlot
    }

    private init(dir: String, store: RunStore, audit: AuditLog, pool: WorkerPool, runs: RunService) {
        self.dir = dir
        self.store = store
        self.audit = audit
        self.pool = pool
        self.runs = runs
    }

    /// Submits a run and returns once its segment is over (ended, or parked).
    func run(_ workflow: String, input: JSONValue = .object([:])) async throws -> String {
        let (run, _) = try await runs.submit(workflow: workflow, input: input, idempotencyKey: nil)
        await settle(run.id)
        return run.id
    }

    /// Returns once the run is no longer queued or running.
    func settle(_ runId: String) async {
        for _ in 0..<1500 {
            await runs.waitUntilFinished(runId)
            if let r = try? await store.run(runId, withSteps: false), r.status != .queued, r.status != .running { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    func record(_ runId: String) async throws -> RunRecord {
        guard let r = try await store.run(runId) else { throw HarnessError("no run \(runId)") }
        return r
    }

    /// The audit chain as written so far.
    func entries() -> [AuditEntry] {
        let text = (try? String(contentsOfFile: dir + "/audit.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(AuditEntry.self, from: Data($0.utf8)) }
    }

    /// The host pid of the worker that ran `job`, from its `worker.exited` entry
    /// (recorded once the pool reaped it).
    func pid(ofJob job: String) async -> Int32? {
        for _ in 0..<500 {
            if let e = entries().first(where: { $0.action == "worker.exited" && $0.details["job"] == job }) {
                return e.details["pid"].flatMap { Int32($0) }
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    func cleanup() async {
        await pool.shutdown(drain: .seconds(2))
        await audit.close()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The Python a fake worker starts with: the wire on fd 3, the handshake with
/// the layers this build knows, the job, and helpers to report as the real
/// interpreter reports (`emit`, `ran`, `secret`, `answer`).
enum FakeWorker {
    static let layers = String(decoding: try! JSONEncoder().encode(SandboxLayer.allCases.map(\.rawValue)), as: UTF8.self)

    static let prelude = """
        import json, os, struct, sys, time
        s = os.fdopen(3, "r+b", buffering=0)
        def send(obj):
            b = json.dumps(obj).encode()
            s.write(struct.pack(">I", len(b)) + b)
        def readn(n):
            buf = b""
            while len(buf) < n:
                c = s.read(n - len(buf))
                if not c: sys.exit(0)
                buf += c
            return buf
        def recv():
            n = struct.unpack(">I", readn(4))[0]
            return json.loads(readn(n))
        send({"jsonrpc": "2.0", "id": 1, "method": "worker.hello", "params": {"protocolVersion": 1, "pid": 1,
              "sandbox": {"active": \(layers), "missing": {}, "landlockABI": 7, "uid": 1000, "rlimits": {}}}})
        # The hello's answer and the job can come in either order (the wire
        # answers out of order, and the job may be sent before the answer is
        # written): everything up to the job is skipped, the answer with it.
        while True:
            job = recv()
            if job.get("method") == "job.run": break
        spec = job["params"]
        JOB = spec["jobId"]
        sent = 0
        def emit(type, step, message="", **data):
            global sent
            sent += 1
            p = {"jobId": JOB, "type": type, "message": message}
            if step is not None: p["step"] = step
            if data: p["data"] = data
            send({"jsonrpc": "2.0", "method": "event.emit", "params": p})
        def ran(step, output, kind="exec"):
            emit("step.started", step, attempt=1, kind=kind)
            emit("step.finished", step, attempt=1, output=output, durationMs=1)
        nextid = [100]
        def call(method, params):
            nextid[0] += 1
            me = nextid[0]
            send({"jsonrpc": "2.0", "id": me, "method": method, "params": params})
            while True:
                m = recv()
                if m.get("id") == me: return m
        def secret(step, name):
            r = call("secret.resolve", {"jobId": JOB, "step": step, "name": name})
            return ("result" in r), r
        def answer(status, **fields):
            r = {"status": status, "events": sent}
            r.update(fields)
            send({"jsonrpc": "2.0", "id": job["id"], "result": r})
        def fail(step, code, message, **data):
            emit("step.failed", step, message, attempt=1, code=code, willRetry=False, durationMs=1, **data)
            answer("failed", error={"code": code, "step": step, "message": message})
        def linger():
            time.sleep(30)
        """
}
