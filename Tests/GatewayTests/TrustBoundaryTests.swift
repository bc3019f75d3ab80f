import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Hostile steps against the boundary around the sandbox: the egress proxy, the
/// gateway's own API, the operator's terminal. One row per attack, each with
/// the safe outcome a user would see and, where the gateway decides, the audit
/// entry that records the refusal.
@Suite("Trust boundary: hostile steps", .serialized)
final class TrustBoundaryTests {
    let gw: TestGateway
    let upstream: Process
    let upstreamPort: Int
    let gatewayPort: Int

    /// Speaks raw bytes to the step's forwarder (or, for `sibling`, straight
    /// to the proxy's socket) and prints what came back.
    static let probe = #"""
        import json, os, socket, sys
        attack, port, gw = os.environ["ATTACK"], int(os.environ["UPSTREAM"]), int(os.environ["GATEWAY"])
        def send(head, unix=None):
            try:
                if unix:
                    s = socket.socket(socket.AF_UNIX)
                    s.settimeout(10)
                    s.connect(unix)
                else:
                    host, p = os.environ["HTTP_PROXY"].replace("http://", "").rsplit(":", 1)
                    s = socket.create_connection((host, int(p)), timeout=10)
                s.sendall(head)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk: break
                    data += chunk
                return data.decode(errors="replace")
            except Exception as e:
                return "error: %s" % e
        get = lambda url, host: send(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (url, host)).encode())
        if attack == "control":
            out = get("http://127.0.0.1:%d/hello" % port, "127.0.0.1:%d" % port)
        elif attack == "nul-connect":
            out = send(b"CONNECT 127.0.0.1\x00.example.invalid:443 HTTP/1.1\r\n\r\n")
        elif attack == "nul-url":
            out = send(b"GET http://127.0.0.1\x00.example.invalid/ HTTP/1.1\r\nConnection: close\r\n\r\n")
        elif attack == "escaped-url":
            out = get("http://127.0.0.1%00.example.invalid/", "x")
        elif attack == "numeric-name":
            out = send(b"CONNECT 2130706433:443 HTTP/1.1\r\n\r\n")
        elif attack == "host-mismatch":
            out = get("http://127.0.0.1:%d/hello" % port, "metadata.example.invalid")
        elif attack == "gateway-api":
            out = get("http://127.0.0.1:%d/health" % gw, "127.0.0.1:%d" % gw)
        elif attack == "gateway-api-by-name":
            out = send(("CONNECT localhost:%d HTTP/1.1\r\n\r\n" % gw).encode())
        elif attack == "widened-port":
            out = get("http://api.example.invalid:8080/", "api.example.invalid:8080")
        elif attack == "sibling":
            # The job's workspace is named for the job; the proxy's socket sits beside it.
            job = os.path.basename(os.getcwd())
            sock = os.path.join(os.path.dirname(os.getcwd()), ".egress.sock")
            out = send(("SKELM-EGRESS %s other\nGET http://127.0.0.1:%d/hello HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (job, port, port)).encode(), unix=sock)
        elif attack == "terminal":
            try:
                open("/dev/tty", "w").write("pwned\n")
                tty = "opened"
            except OSError as e:
                tty = "refused"
            fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
            out = "own-session=%s tty=%s fds=%s" % (os.getsid(0) == os.getpid(), tty, fds)
        print(json.dumps(out))
        """#

    init() async throws {
        let upstreamPort = Int.random(in: 20_000...30_000), gatewayPort = Int.random(in: 30_001...40_000)
        self.upstreamPort = upstreamPort
        self.gatewayPort = gatewayPort
        upstream = Process()
        upstream.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        upstream.arguments = ["python3", "-c", EgressTests.serverScript, "\(upstreamPort)"]
        upstream.standardOutput = FileHandle.nullDevice
        upstream.standardError = FileHandle.nullDevice
        try upstream.run()
        try await waitUntilListening(port: upstreamPort)
        let probe = Self.probe.split(separator: "\n", omittingEmptySubsequences: false).map { "          " + $0 }.joined(separator: "\n")
        func workflow(_ id: String, _ permissions: String) -> String {
            """
            id: \(id)
            permissions: \(permissions)
            input: { type: object, properties: { attack: { type: string } } }
            steps:
              - id: probe
                exec:
                  interpreter: python3
                  script: |
            \(probe)
                  env: { ATTACK: "${{ input.attack }}", UPSTREAM: "\(upstreamPort)", GATEWAY: "\(gatewayPort)" }
            """
        }
        gw = try await TestGateway.started(workflows: [
            "attack.workflow.yaml": workflow("attack", "{}"),
            // Names a port its ceiling (`*.example.invalid`: 80 and 443 only) does not allow.
            "widen.workflow.yaml": workflow("widen", #"{ networkEgress: { allowHosts: ["*.example.invalid", "api.example.invalid:8080"] } }"#),
            // A failing step whose stderr is terminal control sequences: set the title, clear the screen.
            "escape.workflow.yaml": """
                id: escape
                steps:
                  - id: noisy
                    exec: { argv: [python3, -c, "import sys; sys.stderr.write(chr(27) + ']0;pwned' + chr(7) + chr(27) + '[2J'); sys.exit(3)"] }
                """,
        ], config: """
            server: { host: 127.0.0.1, port: \(gatewayPort) }
            workers: { minSpare: 1, max: 4, uidBase: UIDBASE }
            defaults:
              permissions:
                allowedExecutables: [python3]
                # Names the gateway's own port on purpose: it must stay unreachable anyway.
                networkEgress: { allowHosts: ["127.0.0.1:\(upstreamPort)", "127.0.0.1:\(gatewayPort)", "localhost:\(gatewayPort)", "*.example.invalid"] }
            """)
    }

    deinit {
        kill(upstream.processIdentifier, SIGKILL)
        upstream.waitUntilExit()
        gw.cleanupLater()
    }

    struct Attack: Sendable, CustomTestStringConvertible {
        let name: String
        var workflow = "attack"
        /// What the step must see.
        let outcome: String
        /// The `reason` of the `egress.denied` entry the refusal leaves, if the gateway decided.
        let audited: String?
        var testDescription: String { name }
    }

    static let attacks: [Attack] = [
        Attack(name: "control", outcome: "hello from upstream", audited: nil),
        Attack(name: "nul-connect", outcome: "400 Bad Request", audited: "control characters in the request head"),
        Attack(name: "nul-url", outcome: "400 Bad Request", audited: "control characters in the request head"),
        Attack(name: "escaped-url", outcome: "400 Bad Request", audited: "invalid host in the URL"),
        Attack(name: "numeric-name", outcome: "400 Bad Request", audited: "invalid CONNECT target"),
        Attack(name: "host-mismatch", outcome: "400 Bad Request", audited: "the Host header does not name 127.0.0.1"),
        Attack(name: "gateway-api", outcome: "403 Forbidden", audited: "is the gateway's own API"),
        Attack(name: "gateway-api-by-name", outcome: "403 Forbidden", audited: "is the gateway's own API"),
        Attack(name: "widened-port", workflow: "widen", outcome: "403 Forbidden", audited: "api.example.invalid:8080 is not in networkEgress.allowHosts"),
        Attack(name: "sibling", outcome: "403 Forbidden", audited: "is not the forwarder of job"),
        Attack(name: "terminal", outcome: "own-session=True tty=refused fds=[0, 1, 2, 3]", audited: nil),
    ]

    @Test("a hostile step is refused, and the refusal is audited", arguments: attacks)
    func attack(_ attack: Attack) async throws {
        let run = try await gw.run(attack.workflow, ["attack": .string(attack.name)])
        #expect(run["status"] == "succeeded", "\(run)")
        let out = run["output"]?.stringValue ?? ""
        #expect(out.contains(attack.outcome), "\(attack.name): \(out)")
        if attack.name != "control" { #expect(!out.contains("hello from upstream"), "\(attack.name) reached the upstream") }
        let id = run["id"]!.stringValue!
        let denied = try await gw.get("/audit?run=\(id)&action=egress.denied").json?["entries"].list ?? []
        if let reason = attack.audited {
            #expect(denied.contains { $0["details"]?["reason"]?.stringValue?.contains(reason) == true }, "\(attack.name): \(denied)")
        } else {
            #expect(denied.isEmpty, "\(attack.name): \(denied)")
        }
        if attack.name == "sibling" {
            // The name the caller claimed is recorded as a claim, never as the step that made the request.
            #expect(denied.allSatisfy { $0["details"]?["step"] == nil && $0["details"]?["claimedStep"] == "other" }, "\(denied)")
        }
    }

    @Test("skelm run shows a step's escape sequences as text, never sends them to the terminal")
    func escapes() async throws {
        let bad = try await gw.cli(["run", "escape"])
        #expect(bad.status == 1)
        #expect(!bad.stdout.contains("\u{1b}") && !bad.stderr.contains("\u{1b}"), "\(bad)")
        #expect(bad.stderr.contains("\\u{1b}]0;pwned"), "\(bad.stderr)")
    }
}

/// What a gateway finds on its host when it starts: leftovers of a killed one,
/// and another gateway's workers.
@Suite("Trust boundary: gateway start", .serialized)
struct GatewayStartTests {
    @Test("workspaces a killed gateway left behind are removed at the next start, and audited")
    func staleWorkspaces() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let stale = gw.stateDir + "/workspaces/0f1e2d3c-left-by-a-killed-gateway"
        try FileManager.default.createDirectory(atPath: stale + "/.tmp", withIntermediateDirectories: true)
        try "secret-ish output".write(toFile: stale + "/result.txt", atomically: true, encoding: .utf8)
        try await gw.start()
        #expect(!FileManager.default.fileExists(atPath: stale))
        let cleaned = try await gw.get("/audit?action=workspaces.cleaned").json?["entries"].list ?? []
        #expect(cleaned.first?["details"]?["removed"] == "1", "\(cleaned)")
    }

    @Test("a gateway whose worker uid range is in use refuses to start and names the fix")
    func uidRangeInUse() async throws {
        guard geteuid() == 0 else { return }
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let config = try String(contentsOfFile: gw.configPath, encoding: .utf8)
        guard let base = config.firstMatch(of: /uidBase: (\d+)/).flatMap({ UInt32($0.1) }) else {
            Issue.record("no uidBase in \(config)")
            return
        }
        // Another gateway's worker, as far as the kernel can tell.
        let squatter = Process()
        squatter.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        squatter.arguments = ["python3", "-c", "import os, time; os.setresuid(\(base + 7), \(base + 7), \(base + 7)); time.sleep(60)"]
        try squatter.run()
        defer {
            kill(squatter.processIdentifier, SIGKILL)
            squatter.waitUntilExit()
        }
        for _ in 0..<100 where !((try? String(contentsOfFile: "/proc/\(squatter.processIdentifier)/status", encoding: .utf8))?.contains("\(base + 7)") ?? false) {
            try await Task.sleep(for: .milliseconds(20))
        }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("workers.uidBase"), "\(gw.logText)")
        #expect(gw.logText.contains("pid \(squatter.processIdentifier) runs as uid \(base + 7)"), "\(gw.logText)")
    }
}

/// Diagnostics next to a live gateway, and a gateway in a directory its workers cannot enter.
@Suite("Trust boundary: diagnostics and state dirs", .serialized)
struct DiagnosticsTests {
    @Test("doctor and sandbox exec on a live gateway's config leave its state alone")
    func diagnosticsLeaveLiveStateAlone() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let socket = gw.stateDir + "/workspaces/.egress.sock"
        let exec = try await gw.cli(["sandbox", "exec", "--config", gw.configPath, "--", "echo", "hi"], withConfig: false)
        #expect(exec.status == 0 && exec.stdout == "hi\n", "\(exec)")
        let doctor = try await gw.cli(["doctor"])
        #expect(doctor.stdout.contains("seccomp"), "\(doctor)")
        #expect(FileManager.default.fileExists(atPath: socket), "the live gateway's egress socket is still there")
        let run = try await gw.run("hello", ["name": "still here"])
        #expect(run["status"] == "succeeded")
        let verify = try await gw.get("/audit/verify").json
        #expect(verify?["ok"] == true, "the chain has no entries of another writer: \(String(describing: verify))")
        // The diagnostics' own gateway would have written gateway.started/stopped here.
        let started = try await gw.get("/audit?action=gateway.started").json?["entries"].list ?? []
        #expect(started.count == 1, "\(started)")
    }

    @Test("a state dir below a directory worker uids cannot search still runs steps")
    func unsearchableStateDir() async throws {
        guard geteuid() == 0 else { return }
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        chmod(gw.dir, 0o700)   // as a checkout in /root would be
        try await gw.start()
        let run = try await gw.run("hello", ["name": "root's checkout"])
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "Hello, root's checkout!")
        #expect(gw.logText.contains("/run/skelm/"), "the log says where workspaces went: \(gw.logText)")
    }
}
