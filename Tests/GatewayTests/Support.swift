import Foundation
import PostgresFixture
import Synchronization
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// The skelm binary built next to this test bundle: tests run the real thing.
let skelmBinary: String = {
    if let override = ProcessInfo.processInfo.environment["SKELM_BIN"] { return override }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("skelm").path
}()

/// A real gateway: the skelm binary started on a project directory of its own
/// (config, workflows, state), on a free port, stopped with SIGTERM.
final class TestGateway: @unchecked Sendable {
    // @unchecked: every stored property is a `let` set in init, except `process`,
    // which only the test that owns this gateway touches (start/stop run in sequence).
    let dir: String
    let configPath: String
    var process: Process?
    /// Added to the gateway's environment (the env secrets driver reads it).
    var environment: [String: String] = [:]
    var client: GatewayClient!
    var tcp: GatewayClient!
    let log: String

    static let defaultConfig = """
        server: { host: 127.0.0.1, port: 0, maxConcurrentRuns: 4, maxBodyKB: 64, sseHeartbeatSeconds: 1 }
        workers: { minSpare: 1, max: 8, uidBase: UIDBASE, limits: { timeoutSeconds: 20 } }
        defaults: { permissions: { allowedExecutables: [echo, sh, python3, sleep, wc] } }
        """

    /// The default config with another `server:` line (YAML allows one).
    static func config(server: String) -> String {
        defaultConfig.split(separator: "\n").map { $0.hasPrefix("server:") ? "server: " + server : String($0) }.joined(separator: "\n")
    }

    init(workflows: [String: String], config: String = TestGateway.defaultConfig) throws {
        dir = "/tmp/skelm-gw-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir + "/workflows", withIntermediateDirectories: true)
        chmod(dir, 0o711)
        for (name, text) in workflows {
            try text.write(toFile: "\(dir)/workflows/\(name)", atomically: true, encoding: .utf8)
        }
        configPath = dir + "/skelm.config.yaml"
        // Gateways of parallel tests get uid ranges of their own (UIDBASE in the config text):
        // handed out in turn from a random start, so no two gateways of this test run
        // share a range (independent random draws did, now and then, and the second
        // gateway refused to start on the first one's workers).
        let uidBase = 1_000_000_000 + Self.nextUIDSlot.withLock { slot in
            defer { slot = (slot + 1) % 50_000 }
            return slot
        } * 60_000
        try (config.replacingOccurrences(of: "UIDBASE", with: "\(uidBase)") + "\nstateDir: state\n")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        log = dir + "/gateway.log"
        Self.leftovers.withLock { _ = $0.insert(dir) }
    }

    /// Directories of gateways not yet cleaned up: a `cleanupLater` still
    /// waiting for its gateway to stop when the test process exits never gets
    /// to remove its own, so these go at exit.
    private static let nextUIDSlot = Mutex(UInt32.random(in: 0..<50_000))

    private static let leftovers: Mutex<Set<String>> = {
        atexit {
            for dir in TestGateway.leftovers.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: dir) }
        }
        return Mutex([])
    }()

    var stateDir: String { dir + "/state" }

    /// A gateway on `workflows`, started: how most suites and tests begin.
    static func started(workflows: [String: String], config: String = TestGateway.defaultConfig) async throws -> TestGateway {
        let gw = try TestGateway(workflows: workflows, config: config)
        try await gw.start()
        return gw
    }

    /// Stops the gateway and removes its directory without waiting: for a
    /// suite's deinit or a test's defer, which cannot await.
    func cleanupLater() {
        Task { await self.cleanup() }
    }

    /// Starts the gateway and waits for its discovery file.
    func start() async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: skelmBinary)
        p.arguments = ["gateway", "start", "--config", configPath, "--drain-seconds", "5"]
        var env = ProcessInfo.processInfo.environment
        env["SKELM_STATE_DIR"] = nil
        env["SKELM_GATEWAY_URL"] = nil
        env.merge(environment) { $1 }
        p.environment = env
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = FileHandle(forWritingAtPath: log)!
        out.seekToEndOfFile()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        // The gateway has its own copy; this one would stay open for the whole test run.
        try? out.close()
        process = p
        let discovery = stateDir + "/gateway.json"
        for _ in 0..<500 {
            if let data = FileManager.default.contents(atPath: discovery),
               let info = try? JSONDecoder().decode(Discovery.self, from: data), info.pid == p.processIdentifier {
                client = GatewayClient(target: .unix(path: info.socket), display: info.socket)
                tcp = try GatewayClient.parse(info.url)
                return
            }
            if !p.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw GatewayFailure(description: "gateway did not start:\n" + logText)
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// SIGTERM, then waits; returns the exit status.
    @discardableResult
    func stop(signal sig: Int32 = SIGTERM) async -> Int32 {
        guard let p = process else { return -1 }
        kill(p.processIdentifier, sig)
        for _ in 0..<1500 where p.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        process = nil
        return p.isRunning ? -1 : p.terminationStatus
    }

    func cleanup() async {
        if process != nil { await stop() }
        try? FileManager.default.removeItem(atPath: dir)
        Self.leftovers.withLock { _ = $0.remove(dir) }
    }

    // MARK: Calls

    func post(_ path: String, _ body: JSONValue, headers: [(String, String)] = []) async throws -> GatewayClient.Reply {
        let client = client!
        return try await bounded("POST \(path)") { try await client.post(path, json: body, headers: headers) }
    }

    func get(_ path: String, headers: [(String, String)] = []) async throws -> GatewayClient.Reply {
        let client = client!
        return try await bounded("GET \(path)") { try await client.get(path, headers: headers) }
    }

    /// The entries of `GET /audit?<query>`, asked again every 20 ms for up to
    /// 5 s until `done` holds: what the gateway audits after a run has answered
    /// (a worker's exit, the kernel's record of a kill) arrives a moment later.
    func auditEntries(_ query: String, until done: ([JSONValue]) -> Bool = { !$0.isEmpty }) async throws -> [JSONValue] {
        var entries: [JSONValue] = []
        for _ in 0..<250 {
            entries = try await get("/audit?" + query).json?["entries"].list ?? []
            if done(entries) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        return entries
    }

    /// How long one call to the gateway may take before the test fails: far
    /// beyond any run a test starts, even on a loaded host, but a call that
    /// never returns fails its test instead of holding the whole suite.
    static let callLimit: Duration = .seconds(300)

    /// Runs `call`, or fails with the gateway's log once `callLimit` has passed.
    func bounded<T: Sendable>(_ what: String, _ call: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await call() }
            group.addTask {
                try await Task.sleep(for: Self.callLimit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw GatewayFailure(description: "\(what) had no answer in \(Self.callLimit)\ngateway log:\n\(logText.suffix(3000))")
            }
            return value
        }
    }

    /// Starts a run and returns its record (sync waits for the end).
    func run(_ workflow: String, _ input: JSONValue = [:], sync: Bool = true) async throws -> JSONValue {
        let r = try await post("/runs", ["workflow": .string(workflow), "input": input, "mode": sync ? "sync" : "async"])
        guard r.status == 200 || r.status == 202, let json = r.json else {
            throw GatewayFailure(description: "POST /runs answered \(r.status): \(r.errorMessage)")
        }
        return json
    }

    func waitForStatus(_ runId: String, _ wanted: Set<String>, timeout: Duration = .seconds(30)) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            let r = try await get("/runs/\(runId)")
            if let s = r.json?["status"]?.stringValue, wanted.contains(s) { return r.json! }
            last = "\(r.status) \(r.json.map { "\($0)" } ?? "")"
            try await Task.sleep(for: .milliseconds(20))
        }
        // What the run and the gateway last said: a timeout alone tells nothing.
        throw GatewayFailure(description: "run \(runId) never reached \(wanted) in \(timeout); last answer: \(last.prefix(2000))\ngateway log:\n\(logText.suffix(3000))")
    }

    /// Reads a whole SSE stream (until the gateway closes it) and returns its events
    /// and how many heartbeat comments came with them.
    func events(_ runId: String, lastEventId: Int? = nil) async throws -> (events: [SSEParser.Event], heartbeats: Int) {
        let headers = [("Accept", "text/event-stream")] + (lastEventId.map { [("Last-Event-ID", "\($0)")] } ?? [])
        let client = client!
        return try await bounded("GET /runs/\(runId)/events") {
            var parser = SSEParser()
            var events: [SSEParser.Event] = []
            var raw = ""
            try await client.exchange(.GET, "/runs/\(runId)/events", headers: headers) { _, chunk in
                if let chunk {
                    let text = String(decoding: chunk.readableBytesView, as: UTF8.self)
                    raw += text
                    events += parser.feed(text)
                }
                return true
            }
            return (events, raw.components(separatedBy: ": heartbeat").count - 1)
        }
    }

    /// Runs the skelm CLI against this gateway, on a thread of its own: waiting for a
    /// process must not hold one of the few threads the async tests share.
    func cli(_ arguments: [String], withConfig: Bool = true) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await withCheckedThrowingContinuation { cont in
            Thread { cont.resume(with: Result { try self.cliBlocking(arguments, withConfig: withConfig) }) }.start()
        }
    }

    private func cliBlocking(_ arguments: [String], withConfig: Bool) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: skelmBinary)
        process.arguments = arguments + (withConfig ? ["--config", configPath] : [])
        var env = ProcessInfo.processInfo.environment
        env["SKELM_STATE_DIR"] = nil
        env["SKELM_GATEWAY_URL"] = nil
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // A command that never ends fails its test instead of holding the suite.
        let pid = process.processIdentifier
        let limit = Self.callLimit.components.seconds
        let timer = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(Int(limit)), execute: timer)
        defer { timer.cancel() }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        // Not an exit status a test could take for the refusal it expected.
        if process.terminationReason == .uncaughtSignal, process.terminationStatus == SIGKILL {
            throw GatewayFailure(description: "skelm \(arguments.joined(separator: " ")) had not ended after \(Self.callLimit); killed\n"
                + String(decoding: o + e, as: UTF8.self).suffix(3000))
        }
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

struct GatewayFailure: Error, CustomStringConvertible {
    let description: String
}

extension String {
    /// Every line moved right by `spaces`: a script placed under a YAML block scalar.
    func indented(by spaces: Int) -> String {
        let pad = String(repeating: " ", count: spaces)
        return split(separator: "\n", omittingEmptySubsequences: false).map { pad + $0 }.joined(separator: "\n")
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice):
/// for a test that must name its gateway's port before starting it.
func freePort() -> Int { PostgresCluster.freePort() }

/// `EgressTests.serverScript` on 127.0.0.1:`port`, accepting connections
/// when this returns: the host-side upstream the egress tests reach.
func startUpstream(port: Int) async throws -> Process {
    let server = Process()
    server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    server.arguments = ["python3", "-c", EgressTests.serverScript, "\(port)"]
    // Not the test runner's pipes: a server still holding them would keep `swift test` waiting.
    server.standardOutput = FileHandle.nullDevice
    server.standardError = FileHandle.nullDevice
    try server.run()
    try await waitUntilListening(port: port)
    return server
}

/// A blocking TCP socket connected to 127.0.0.1:`port`, or nil; the caller closes it.
func connectLoopback(port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        return nil
    }
    return fd
}

/// A blocking stream socket connected to the Unix socket at `path`, or nil.
func connectUnix(_ path: String) -> Int32? {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        let bytes = Array(path.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes + [0])
    }
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        return nil
    }
    return fd
}

/// Returns once something accepts connections on 127.0.0.1:`port` (a test's upstream server).
func waitUntilListening(port: Int) async throws {
    for _ in 0..<200 {
        if let fd = connectLoopback(port: port) {
            close(fd)
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw GatewayFailure(description: "nothing listens on 127.0.0.1:\(port)")
}

/// Processes whose command line contains `needle` (to show a cancelled step's process is gone).
func processes(matching needle: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
        guard let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: cmd.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(needle)
    }
}

/// Runs a program (found on PATH) on a thread of its own; stdout and stderr together.
func runCommand(_ argv: [String]) async throws -> (status: Int32, out: String) {
    try await withCheckedThrowingContinuation { cont in
        Thread {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = argv
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            do {
                try p.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                cont.resume(returning: (p.terminationStatus, String(decoding: data, as: UTF8.self)))
            } catch { cont.resume(throwing: error) }
        }.start()
    }
}
