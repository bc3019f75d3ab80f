import Foundation
import Synchronization
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
final class EgressAttackTests {
    /// Every row runs against both ways of starting workers (the caller check
    /// compares the pid the pool knows with the kernel's word, and the step's
    /// session and fds come from the runner in either). swift-testing makes an
    /// instance per test case, so each starts only the gateway its case needs.
    static let modes = ["template", "exec"]
    private let started = Mutex<[TestGateway]>([])
    let upstream: Process
    let upstreamPort: Int

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
        elif attack == "connection-flood":
            # Tunnels held open at once: the proxy serves a bounded number per job.
            socks, answers = [], []
            for _ in range(40):
                host, p = os.environ["HTTP_PROXY"].replace("http://", "").rsplit(":", 1)
                s = socket.create_connection((host, int(p)), timeout=10)
                s.sendall(("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port)).encode())
                answers.append(s.recv(4096).decode().split("\r\n")[0])
                socks.append(s)
            out = "%d open, %d refused" % (sum(" 200 " in a for a in answers), sum(" 503 " in a for a in answers))
        elif attack == "denial-flood":
            for _ in range(300):
                send(b"CONNECT 10.1.2.3:443 HTTP/1.1\r\n\r\n")
            out = "sent 300"
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
        let upstreamPort = freePort()
        self.upstreamPort = upstreamPort
        upstream = try await startUpstream(port: upstreamPort)
    }

    func gateway(_ spawn: String) async throws -> TestGateway {
        let gw = try await Self.gateway(spawn: spawn, port: freePort(), upstreamPort: upstreamPort)
        started.withLock { $0.append(gw) }
        return gw
    }

    static func gateway(spawn: String, port gatewayPort: Int, upstreamPort: Int) async throws -> TestGateway {
        let probe = Self.probe.indented(by: 10)
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
        return try await TestGateway.started(workflows: [
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
            workers: { spawn: \(spawn), minSpare: 1, max: 4, uidBase: UIDBASE }
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
        started.withLock { $0 }.forEach { $0.cleanupLater() }
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

    @Test("a hostile step is refused, and the refusal is audited", arguments: attacks, modes)
    func attack(_ attack: Attack, spawn: String) async throws {
        let gw = try await gateway(spawn)
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

    @Test("one job cannot hold more than its share of proxy connections")
    func connectionFlood() async throws {
        let gw = try await gateway("template")
        let run = try await gw.run("attack", ["attack": "connection-flood"])
        #expect(run["output"] == "32 open, 8 refused", "\(run)")
        let denied = try await gw.get("/audit?run=\(run["id"]!.stringValue!)&action=egress.denied").json?["entries"].list ?? []
        #expect(denied.filter { $0["details"]?["reason"]?.stringValue?.contains("already has 32 connections open") == true }.count == 8)
    }

    @Test("a step that is refused in a loop cannot flood the audit chain, and no refusal goes uncounted")
    func denialFlood() async throws {
        let gw = try await gateway("template")
        let started = ContinuousClock.now
        let run = try await gw.run("attack", ["attack": "denial-flood"])
        let seconds = (ContinuousClock.now - started).components.seconds + 1
        #expect(run["output"] == "sent 300", "\(run)")
        let id = run["id"]!.stringValue!
        // The job's summary is written as the job is let go, just after the run's end.
        var denied: [JSONValue] = [], counted = 0
        for _ in 0..<100 {
            denied = try await gw.get("/audit?run=\(id)&action=egress.denied&limit=1000").json?["entries"].list ?? []
            let summary = try await gw.get("/audit?run=\(id)&action=egress.denied.suppressed").json?["entries"].list ?? []
            counted = denied.count
                + denied.compactMap { $0["details"]?["suppressedBefore"]?.stringValue.flatMap(Int.init) }.reduce(0, +)
                + summary.compactMap { $0["details"]?["count"]?.stringValue.flatMap(Int.init) }.reduce(0, +)
            if counted >= 300 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(denied.count <= 20 + 10 * Int(seconds) + 1, "\(denied.count) entries in \(seconds) s")
        #expect(counted == 300, "every refusal is an entry or counted in one: \(counted)")
    }

    @Test("skelm run shows a step's escape sequences as text, never sends them to the terminal")
    func escapes() async throws {
        let gw = try await gateway("template")
        let bad = try await gw.cli(["run", "escape"])
        #expect(bad.status == 1)
        #expect(!bad.stdout.contains("\u{1b}") && !bad.stderr.contains("\u{1b}"), "\(bad)")
        #expect(bad.stderr.contains("\\u{1b}]0;pwned"), "\(bad.stderr)")
    }
}
