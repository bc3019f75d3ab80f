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

/// Code a step did not bring: programs its policy does not allow, code another
/// step left behind. Each row is one way around `allowedExecutables` or around
/// the step boundary, and shows it failing.
@Suite("Trust boundary: only the code a step may run", .serialized)
final class ExecutionBoundaryTests {
    let gw: TestGateway
    static let secret = "s3cr3t-token-value-42"

    static let probe = #"""
        import ctypes, glob, json, os, shutil, subprocess, sys
        attack = os.environ["ATTACK"]
        loader = "/lib64/ld-linux-x86-64.so.2"
        python = os.path.realpath(sys.executable)
        def run(argv, **kw):
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=20, **kw)
                return "status %d: %s%s" % (r.returncode, r.stdout, r.stderr)
            except OSError as e:
                return "refused: %s" % e
        if attack == "control":
            out = run([python, "-c", "print('ran')"])
        elif attack == "loader-reads-a-program":
            out = run([loader, "/usr/bin/id"])
        elif attack == "loader-runs-a-copy":
            shutil.copy(python, "./py")
            out = run([loader, "./py", "-c", "print('ran')"])
        elif attack == "exec-a-copy":
            shutil.copy(python, "./py2")
            os.chmod("./py2", 0o755)
            out = run(["./py2", "-c", "print('ran')"])
        elif attack == "memfd-exec":
            fd = os.memfd_create("x")
            os.write(fd, open(python, "rb").read())
            out = run(["/proc/self/fd/%d" % fd, "-c", "print('ran')"], pass_fds=(fd,))
            try:
                os.memfd_create("y", 0x10)   # MFD_EXEC
                out += " | MFD_EXEC allowed"
            except OSError as e:
                out += " | MFD_EXEC refused: %s" % e
        elif attack == "dlopen-a-copy":
            lib = sorted(glob.glob("/usr/lib/*/libz.so.1*"))[0]
            shutil.copy(lib, "./libz.so")
            try:
                ctypes.CDLL(os.path.abspath("./libz.so"))
                out = "loaded"
            except OSError as e:
                out = "refused: %s" % e
        print(json.dumps(out))
        """#

    init() async throws {
        let probe = Self.probe.split(separator: "\n", omittingEmptySubsequences: false).map { "          " + $0 }.joined(separator: "\n")
        let gw = try TestGateway(workflows: [
            "escape.workflow.yaml": """
                id: escape
                input: { type: object, properties: { attack: { type: string } } }
                steps:
                  - id: probe
                    exec:
                      interpreter: [python3]
                      script: |
                \(probe)
                      env: { ATTACK: "${{ input.attack }}" }
                """,
            // A step with no secret plants code where a later step holding one would run it.
            "plant.workflow.yaml": #"""
                id: plant
                steps:
                  - id: plant
                    exec:
                      interpreter: [python3]
                      script: |
                        import json, os
                        home, ws = os.environ["HOME"], os.getcwd()
                        payload = "import os\nopen(os.path.join(os.getcwd(), 'LEAK'), 'w').write(os.environ.get('TOKEN', '')[::-1])\n"
                        planted = []
                        for d in [home + "/.local/lib/python3.11/site-packages", ws]:
                            os.makedirs(d, exist_ok=True)
                            for name in ["usercustomize.py", "sitecustomize.py", "json.py"]:
                                open(os.path.join(d, name), "w").write(payload)
                                planted.append(os.path.join(d, name))
                        for rc in [".bashrc", ".profile", ".bash_profile"]:
                            open(os.path.join(home, rc), "w").write("echo $TOKEN | rev > LEAK\n")
                        # The homes of steps to come, were they predictable and writable.
                        for n in range(1, 40):
                            try:
                                p = os.path.join(os.path.dirname(home), str(n))
                                os.makedirs(p, exist_ok=True)
                                open(os.path.join(p, ".profile"), "w").write("echo $TOKEN | rev > LEAK\n")
                                planted.append(p)
                            except OSError:
                                pass
                        print(json.dumps({"home": home, "planted": planted}))
                  - id: python
                    exec:
                      argv: [python3, -c, "import json, os; print(json.dumps({'json': json.__file__, 'home': os.environ['HOME']}))"]
                      env: { TOKEN: "${{ secrets.TOKEN }}" }
                  - id: shell
                    exec:
                      argv: [bash, -lc, "echo login shell"]
                      env: { TOKEN: "${{ secrets.TOKEN }}" }
                  - id: look
                    exec:
                      argv: [python3, -c, "import os; print(open('LEAK').read() if os.path.exists('LEAK') else 'no leak')"]
                """#,
        ], config: TestGateway.defaultConfig.replacingOccurrences(
            of: "defaults: { permissions: { allowedExecutables: [echo, sh, python3, sleep, wc] } }",
            with: "defaults: { permissions: { allowedExecutables: [python3, bash, rev] } }\nsecrets: { env: { prefix: SKELM_TEST_SECRET_ } }"))
        gw.environment = ["SKELM_TEST_SECRET_TOKEN": Self.secret]
        try await gw.start()
        self.gw = gw
    }

    deinit { gw.cleanupLater() }

    @Test("a program the policy does not allow cannot be run another way", arguments: [
        ("control", "status 0: ran"),
        ("loader-reads-a-program", "Permission denied"),
        ("loader-runs-a-copy", "failed to map segment"),
        ("exec-a-copy", "refused: [Errno 13] Permission denied"),
        ("memfd-exec", "refused: [Errno 13] Permission denied"),
        ("dlopen-a-copy", "failed to map segment"),
    ])
    func escape(_ attack: String, _ expected: String) async throws {
        let run = try await gw.run("escape", ["attack": .string(attack)])
        #expect(run["status"] == "succeeded", "\(run)")
        let out = run["output"]?.stringValue ?? ""
        #expect(out.contains(expected), "\(attack): \(out)")
        if attack != "control" {
            #expect(!out.contains("ran\n") && !out.contains("uid="), "\(attack) ran code: \(out)")
        }
        if attack == "memfd-exec" { #expect(out.contains("MFD_EXEC refused"), "\(out)") }
    }

    @Test("code one step plants is not run by a later step that holds a secret")
    func planted() async throws {
        let run = try await gw.run("plant")
        #expect(run["status"] == "succeeded", "\(run)")
        let steps = run["steps"].list
        func output(_ step: String) -> JSONValue? { steps.first { $0["path"]?.stringValue == step }?["output"] }
        let plantHome = output("plant")?["home"]?.stringValue
        let planted = output("plant")?["planted"].list.compactMap(\.stringValue) ?? []
        #expect(!planted.contains { $0.hasSuffix("/2") || $0.hasSuffix("/3") }, "another step's home was writable: \(planted)")
        #expect(output("python")?["json"]?.stringValue?.hasPrefix("/usr/lib/python3") == true, "\(String(describing: output("python")))")
        #expect(output("python")?["home"]?.stringValue != plantHome, "each step has a HOME of its own")
        #expect(output("shell") == "login shell")
        #expect(output("look") == "no leak")
        let everything = try await gw.get("/runs/\(run["id"]!.stringValue!)").body
        #expect(!String(decoding: everything, as: UTF8.self).contains(String(Self.secret.reversed())))
    }
}
