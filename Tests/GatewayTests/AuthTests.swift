import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// A hostile web page and a hostile local user against a gateway on loopback
/// with authentication off: the page can make the browser send requests, but
/// not with a JSON content type, a Host naming the gateway or an Origin of its
/// own. One row per attack; each refusal is audited as `api.denied`.
@Suite("Auth: a browser against a loopback gateway", .serialized)
final class BrowserAttackTests {
    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: TestWorkflows.all)
    }

    deinit { gw.cleanupLater() }

    struct Attack: Sendable, CustomTestStringConvertible {
        let name: String
        let method: String
        let path: String
        let headers: [String: String]
        let status: Int
        let code: String?
        var testDescription: String { name }
    }

    static let attacks: [Attack] = [
        Attack(name: "control: a JSON request naming the gateway", method: "POST", path: "/runs", headers: [:], status: 202, code: nil),
        Attack(name: "CSRF: a text/plain form post", method: "POST", path: "/runs", headers: ["Content-Type": "text/plain"],
               status: 415, code: "unsupported_media_type"),
        Attack(name: "CSRF: a urlencoded form post", method: "POST", path: "/runs",
               headers: ["Content-Type": "application/x-www-form-urlencoded"], status: 415, code: "unsupported_media_type"),
        Attack(name: "CSRF: a multipart form post", method: "POST", path: "/runs",
               headers: ["Content-Type": "multipart/form-data; boundary=x"], status: 415, code: "unsupported_media_type"),
        Attack(name: "DNS rebinding: reading the audit under the page's own name", method: "GET", path: "/audit",
               headers: ["Host": "attacker.example:PORT"], status: 403, code: "host_not_allowed"),
        Attack(name: "DNS rebinding: starting a run under the page's own name", method: "POST", path: "/runs",
               headers: ["Host": "attacker.example"], status: 403, code: "host_not_allowed"),
        Attack(name: "cross-origin fetch with a JSON body", method: "POST", path: "/runs",
               headers: ["Origin": "http://attacker.example"], status: 403, code: "origin_not_allowed"),
        Attack(name: "DNS rebinding: a name that ends like the gateway's", method: "GET", path: "/runs",
               headers: ["Host": "localhost.attacker.example"], status: 403, code: "host_not_allowed"),
    ]

    @Test("each cross-site attempt is refused and audited", arguments: attacks)
    func attack(_ a: Attack) async throws {
        guard case let .tcp(_, port) = gw.tcp.target else { Issue.record("no tcp"); return }
        let headers = a.headers.map { ($0.key, $0.value.replacingOccurrences(of: "PORT", with: "\(port)")) }
        let body = a.method == "POST" ? Data(#"{"workflow": "hello", "input": {"name": "csrf"}}"#.utf8) : nil
        let r = try await gw.tcp.send(a.method == "POST" ? .POST : .GET, a.path, body: body, headers: headers)
        #expect(r.status == a.status, "\(a.name): \(r.status) \(r.errorMessage)")
        guard let code = a.code else { return }
        #expect(r.json?["error"]?["code"]?.stringValue == code)
        // A refusal is audited without holding up its answer: wait for the entry.
        var denied: [JSONValue] = []
        var audited = false
        for _ in 0..<500 where !audited {
            denied = try await gw.get("/audit?action=api.denied").json?["entries"].list ?? []
            audited = denied.contains { $0["details"]?["code"]?.stringValue == code && $0["details"]?["path"]?.stringValue == a.path }
            if !audited { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(audited, "\(a.name): \(denied)")
        // Refused before anything ran: no run was created by it.
        if a.method == "POST" {
            let runs = try await gw.get("/runs?workflow=hello&limit=1000").json?["runs"].list ?? []
            #expect(!runs.contains { $0["input"]?["name"] == "csrf" && a.status != 202 })
        }
    }
}

/// Bearer tokens with scopes: who may read, run, decide and administer.
@Suite("Auth: bearer tokens and scopes", .serialized)
final class BearerTokenTests {
    let gw: TestGateway
    static let tokens = ["ADMIN_TOK": "admin-0123456789abcdef", "OPS_TOK": "operator-0123456789abcdef", "VIEW_TOK": "viewer-0123456789abcdef"]

    init() async throws {
        var workflows = TestWorkflows.all
        workflows["gate.workflow.yaml"] = """
            id: gate
            steps:
              - id: ask
                approval: { message: "go?", timeout: 1h }
              - { id: after, exec: { argv: [sh, -c, 'echo "decided by $BY"'], env: { BY: "${{ steps.ask.output.actor }}" } } }
            """
        let gw = try TestGateway(workflows: workflows, config: TestGateway.config(server: """
            { host: 127.0.0.1, port: 0, auth: { mode: bearer, tokens: [
                { name: root, scope: admin, env: ADMIN_TOK }, { name: ci, scope: operator, env: OPS_TOK },
                { name: dash, scope: viewer, env: VIEW_TOK } ] } }
            """.replacingOccurrences(of: "\n", with: " ")))
        gw.environment = Self.tokens
        try await gw.start()
        self.gw = gw
    }

    deinit { gw.cleanupLater() }

    func tcp(_ token: String?) -> GatewayClient {
        var c = gw.tcp!
        c.token = token.flatMap { Self.tokens[$0] }
        return c
    }

    struct Call: Sendable, CustomTestStringConvertible {
        let name: String
        let token: String?
        let method: String
        let path: String
        let status: Int
        var body: String? = nil
        var testDescription: String { name }
    }

    static let calls: [Call] = [
        Call(name: "health needs no token", token: nil, method: "GET", path: "/health", status: 200),
        Call(name: "no token: 401", token: nil, method: "GET", path: "/runs", status: 401),
        Call(name: "a wrong token: 401", token: "NOPE", method: "GET", path: "/audit", status: 401),
        Call(name: "a viewer reads", token: "VIEW_TOK", method: "GET", path: "/runs", status: 200),
        Call(name: "a viewer cannot start a run", token: "VIEW_TOK", method: "POST", path: "/runs", status: 403),
        Call(name: "an operator starts a run", token: "OPS_TOK", method: "POST", path: "/runs", status: 202),
        Call(name: "an operator cannot reload", token: "OPS_TOK", method: "POST", path: "/registry/reload", status: 403),
        Call(name: "an admin reloads", token: "ADMIN_TOK", method: "POST", path: "/registry/reload", status: 200),
        // One row per route class of the service surface.
        Call(name: "probes and the API document need no token", token: nil, method: "GET", path: "/openapi.yaml", status: 200),
        Call(name: "readiness needs no token", token: nil, method: "GET", path: "/readyz", status: 200),
        Call(name: "status: no token 401", token: nil, method: "GET", path: "/gateway/status", status: 401),
        Call(name: "status: a viewer reads it", token: "VIEW_TOK", method: "GET", path: "/gateway/status", status: 200),
        Call(name: "metrics: no token 401", token: nil, method: "GET", path: "/metrics", status: 401),
        Call(name: "metrics: a viewer scrapes", token: "VIEW_TOK", method: "GET", path: "/metrics", status: 200),
        Call(name: "dashboard: no token 401", token: nil, method: "GET", path: "/v1/dashboard/overview", status: 401),
        Call(name: "dashboard: a viewer reads it", token: "VIEW_TOK", method: "GET", path: "/v1/dashboard/overview", status: 200),
        Call(name: "config: a viewer reads it", token: "VIEW_TOK", method: "GET", path: "/v1/config", status: 200),
        Call(name: "config: an operator cannot patch it", token: "OPS_TOK", method: "PATCH", path: "/v1/config", status: 403,
             body: #"{"server.maxConcurrentRuns": 2}"#),
        Call(name: "config: an admin patches it", token: "ADMIN_TOK", method: "PATCH", path: "/v1/config", status: 200,
             body: #"{"server.maxConcurrentRuns": 2}"#),
        Call(name: "pause: a viewer cannot", token: "VIEW_TOK", method: "POST", path: "/gateway/pause", status: 403),
        Call(name: "pause: an operator can", token: "OPS_TOK", method: "POST", path: "/gateway/pause", status: 200),
        Call(name: "resume: an operator can", token: "OPS_TOK", method: "POST", path: "/gateway/resume", status: 200),
        Call(name: "gateway reload: an operator cannot", token: "OPS_TOK", method: "POST", path: "/gateway/reload", status: 403),
        Call(name: "gateway reload: an admin can", token: "ADMIN_TOK", method: "POST", path: "/gateway/reload", status: 200),
        Call(name: "batch: no token 401", token: nil, method: "POST", path: "/v1/batch/runs", status: 401,
             body: #"{"runs": [{"workflow": "hello", "input": {"name": "b"}}]}"#),
        Call(name: "batch: a viewer cannot start runs", token: "VIEW_TOK", method: "POST", path: "/v1/batch/runs", status: 403,
             body: #"{"runs": [{"workflow": "hello", "input": {"name": "b"}}]}"#),
        Call(name: "batch: an operator starts runs", token: "OPS_TOK", method: "POST", path: "/v1/batch/runs", status: 200,
             body: #"{"runs": [{"workflow": "hello", "input": {"name": "b"}}]}"#),
        Call(name: "workflows: a viewer lists them", token: "VIEW_TOK", method: "GET", path: "/v1/workflows", status: 200),
        Call(name: "register: an operator cannot", token: "OPS_TOK", method: "POST", path: "/v1/workflows/register", status: 403,
             body: #"{"source": {"type": "path", "path": "workflows/hello.workflow.yaml"}}"#),
        Call(name: "unregister: an operator cannot", token: "OPS_TOK", method: "DELETE", path: "/v1/workflows/hello", status: 403),
        Call(name: "unregister: an admin may (a config-dir workflow: 409)", token: "ADMIN_TOK", method: "DELETE", path: "/v1/workflows/hello", status: 409),
        Call(name: "a trailing slash does not lower the scope", token: "OPS_TOK", method: "PATCH", path: "/v1/config/", status: 403,
             body: #"{"server.maxConcurrentRuns": 2}"#),
        Call(name: "a doubled slash does not lower the scope", token: "OPS_TOK", method: "POST", path: "//gateway/reload", status: 403),
        Call(name: "a doubled slash does not lower the scope of registration", token: "OPS_TOK", method: "POST", path: "//v1/workflows/register",
             status: 403, body: #"{"source": {"type": "path", "path": "workflows/hello.workflow.yaml"}}"#),
        Call(name: "health with a trailing slash is still public", token: nil, method: "GET", path: "/health/", status: 200),
        Call(name: "workers: a viewer cannot drain", token: "VIEW_TOK", method: "POST", path: "/v1/workers/1/drain", status: 403),
        Call(name: "workers: an operator may (no such worker: 404)", token: "OPS_TOK", method: "POST", path: "/v1/workers/1/drain", status: 404),
    ]

    @Test("each scope may do what it names and nothing more", arguments: calls)
    func scopes(_ c: Call) async throws {
        var client = tcp(c.token)
        if c.token == "NOPE" { client.token = "not-a-token-of-this-gateway" }
        let body = c.body.map { Data($0.utf8) } ?? (c.path == "/runs" ? Data(#"{"workflow": "hello", "input": {"name": "tok"}}"#.utf8) : nil)
        let r = switch c.method {
        case "POST": try await client.send(.POST, c.path, body: body)
        case "PATCH": try await client.send(.PATCH, c.path, body: body)
        case "DELETE": try await client.send(.DELETE, c.path, body: body)
        default: try await client.send(.GET, c.path, body: body)
        }
        #expect(r.status == c.status, "\(c.name): \(r.status) \(r.errorMessage)")
        if c.status == 401 || c.status == 403 {
            let denied = try await gw.get("/audit?action=api.denied").json?["entries"].list ?? []
            #expect(denied.contains { $0["details"]?["status"]?.stringValue == "\(c.status)" && $0["details"]?["path"]?.stringValue == c.path })
            #expect(!(try String(contentsOfFile: gw.stateDir + "/audit.jsonl", encoding: .utf8)).contains("0123456789abcdef"),
                    "a token value never reaches the audit chain")
        }
        if c.status == 202, let id = r.json?["id"]?.stringValue {
            let created = try await gw.get("/audit?run=\(id)&action=run.created").json?["entries"].list ?? []
            #expect(created.first?["actor"] == "token:ci")
        }
    }

    @Test("an approval is decided by the token's principal, whatever the body says")
    func decider() async throws {
        let started = try await tcp("OPS_TOK").post("/runs", json: ["workflow": "gate"])
        let id = try #require(started.json?["id"]?.stringValue)
        var approval: String?
        for _ in 0..<200 {
            approval = try await gw.get("/approvals?run=\(id)").json?["approvals"].list.first?["id"]?.stringValue
            if approval != nil { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        let aid = try #require(approval)
        #expect(try await tcp("VIEW_TOK").post("/approvals/\(aid)/approve", json: [:]).status == 403)
        #expect(try await tcp("OPS_TOK").post("/approvals/\(aid)/approve", json: ["actor": "somebody-else"]).status == 400)
        let ok = try await tcp("OPS_TOK").post("/approvals/\(aid)/approve", json: ["reason": "ship it"])
        #expect(ok.json?["decidedBy"] == "token:ci")
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["output"] == "decided by token:ci")
        let audit = try await gw.get("/audit?run=\(id)&action=approval.approved").json?["entries"].list ?? []
        #expect(audit.first?["actor"] == "token:ci")
        #expect(audit.first?["details"]?["by"] == "token:ci")
    }
}

/// Config that would leave the API open, or keys that cannot work, stop the gateway with the key named.
@Suite("Auth: config")
struct AuthConfigTests {
    @Test("unsafe or broken auth config is refused with the key named", arguments: [
        ("server: { host: 0.0.0.0, auth: { mode: none } }", "server.auth.mode", "is not a loopback address"),
        ("server: { host: 0.0.0.0 }", "server.auth.tokens", "needs at least one token"),
        ("server: { auth: { mode: bearer, tokens: [ { name: a, scope: admin } ] } }", "server.auth.tokens[0]", "exactly one of env or secret"),
        ("server: { auth: { mode: bearer, tokens: [ { name: a, scope: admin, env: X }, { name: a, scope: viewer, env: Y } ] } }",
         "server.auth.tokens[1].name", "used twice"),
        ("server: { auth: { mode: bearer, tokens: [ { name: a, scope: root, env: X } ] } }", "server.auth.tokens[0].scope", "'root' is not one of: viewer, operator, admin"),
        ("server: { socketGroup: no-such-group-here }", "server.socketGroup", "no group named"),
    ])
    func refused(_ yaml: String, _ key: String, _ message: String) async throws {
        let gw = try TestGateway(workflows: [:], config: yaml)
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains(key) && gw.logText.contains(message), "\(gw.logText)")
    }

    @Test("a short token is refused at start: guessable")
    func shortToken() async throws {
        let gw = try TestGateway(workflows: [:], config: "server: { port: 0, auth: { mode: bearer, tokens: [ { name: a, scope: admin, env: SHORT_TOK } ] } }")
        gw.environment = ["SHORT_TOK": "hunter2"]
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("shorter than 16 characters"), "\(gw.logText)")
        #expect(!gw.logText.contains("hunter2"))
    }
}

/// The Unix socket admits callers by the kernel's word (SO_PEERCRED): the
/// gateway's own user and root, and members of `server.socketGroup`.
@Suite("Auth: the Unix socket", .serialized)
final class SocketPeerTests {
    /// Connects to the socket as another uid (and groups), sends one request,
    /// prints the status line and body, or the connect error.
    static let client = #"""
        import os, socket, sys
        uid, groups, path, method, target = int(sys.argv[1]), [int(g) for g in sys.argv[2].split(",") if g], sys.argv[3], sys.argv[4], sys.argv[5]
        os.setgroups(groups)
        gid = groups[0] if groups else uid
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
        except OSError as e:
            print("connect: %s" % e.strerror); sys.exit(0)
        body = b'{"workflow": "hello", "input": {"name": "peer"}}' if method == "POST" else b""
        s.sendall(("%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (method, target, len(body))).encode() + body)
        data = b""
        while True:
            c = s.recv(65536)
            if not c: break
            data += c
        head, _, rest = data.decode().partition("\r\n\r\n")
        print(head.split("\r\n")[0] + " " + rest)
        """#

    /// On a thread of its own: waiting for a process must not hold one of the
    /// few threads every concurrently running test shares.
    func asUser(_ uid: UInt32, groups: [UInt32], socket: String, _ method: String, _ path: String) async throws -> String {
        try await withCheckedThrowingContinuation { cont in
            Thread { cont.resume(with: Result { try Self.asUserBlocking(uid, groups: groups, socket: socket, method, path) }) }.start()
        }
    }

    static func asUserBlocking(_ uid: UInt32, groups: [UInt32], socket: String, _ method: String, _ path: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", Self.client, "\(uid)", groups.map(String.init).joined(separator: ","), socket, method, path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test("another user cannot use the socket; a member of socketGroup can run but not administer")
    func peers() async throws {
        guard geteuid() == 0, let group = getgrnam("nogroup") else { return }
        let gid = group.pointee.gr_gid
        let gw = try await TestGateway.started(workflows: TestWorkflows.all,
                                               config: TestGateway.config(server: "{ host: 127.0.0.1, port: 0, socketGroup: nogroup }"))
        defer { gw.cleanupLater() }
        let socket = gw.stateDir + "/gateway.sock"
        let stranger: UInt32 = 61_234
        #expect(try await asUser(stranger, groups: [], socket: socket, "GET", "/runs").contains("connect: Permission denied"))
        let member = try await asUser(stranger, groups: [gid], socket: socket, "POST", "/runs")
        #expect(member.hasPrefix("HTTP/1.1 202"), "\(member)")
        let created = try await gw.get("/audit?action=run.created").json?["entries"].list ?? []
        #expect(created.contains { $0["actor"] == .string("unix:uid-\(stranger)") }, "\(created)")
        let reload = try await asUser(stranger, groups: [gid], socket: socket, "POST", "/registry/reload")
        #expect(reload.hasPrefix("HTTP/1.1 403"), "\(reload)")
    }
}
