import Foundation
import SkelmClient
import Testing
import Workflow

/// Webhook triggers over real HTTP: signatures (GitHub's, Slack's and our own
/// HMAC), forgeries refused and audited, replays deduplicated across a
/// restart, bodies capped while they stream, and public paths beside an API
/// that needs a token.
@Suite("Webhook triggers", .serialized)
final class WebhookTests {
    static let secret = "whsec-0123456789abcdef"
    static let token = "operator-0123456789abcdef"
    let gw: TestGateway

    init() async throws {
        let workflows = [
            "hooked.workflow.yaml": """
                id: hooked
                steps:
                  - id: show
                    run: echo hooked
                triggers:
                  - id: github
                    webhook:
                      path: github/push
                      public: true
                      signature: { scheme: github, secret: HOOK }
                      headers: [X-GitHub-Event, User-Agent]
                      dedupe: { header: X-GitHub-Delivery, ttl: 1h }
                      maxBodyKB: 4
                  - id: slack
                    webhook: { path: slack, public: true, signature: { scheme: slack, secret: HOOK } }
                  - id: ours
                    webhook: { path: ours, public: true, signature: { scheme: hmac, secret: HOOK, tolerance: 2m } }
                  - id: private
                    webhook: { path: private }
                  - id: sneaky
                    webhook: { path: ours, method: GET }
                """,
        ]
        gw = try TestGateway(workflows: workflows, config: TestGateway.defaultConfig.replacingOccurrences(
            of: "server: { host: 127.0.0.1, port: 0,",
            with: "secrets: { env: { prefix: SKELM_TEST_SECRET_ } }\nserver: { auth: { mode: bearer, tokens: [ { name: ci, scope: operator, env: OPS_TOK } ] }, host: 127.0.0.1, port: 0,"))
        gw.environment = ["SKELM_TEST_SECRET_HOOK": Self.secret, "OPS_TOK": Self.token]
        try await gw.start()
    }

    deinit { gw.cleanupLater() }

    /// HMAC-SHA256 in hex, computed by Python's hmac module: an implementation that is not ours.
    /// On a thread of its own: waiting for a process must not hold one of the few threads the async tests share.
    static func hmac(_ message: [UInt8], key: String = secret) async throws -> String {
        try await withCheckedThrowingContinuation { cont in
            Thread { cont.resume(with: Result { try hmacBlocking(message, key: key) }) }.start()
        }
    }

    private static func hmacBlocking(_ message: [UInt8], key: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import hmac,hashlib,sys; sys.stdout.write(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())", key]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        input.fileHandleForWriting.write(Data(message))
        try input.fileHandleForWriting.close()
        let hex = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return hex
    }

    func deliver(_ path: String, _ body: String, headers: [(String, String)], token: String? = nil) async throws -> GatewayClient.Reply {
        var c = gw.tcp!
        c.token = token
        return try await c.send(.POST, "/hooks/\(path)", body: Data(body.utf8), headers: headers)
    }

    func input(of runId: String) async throws -> JSONValue {
        try await gw.waitForStatus(runId, ["succeeded", "failed"])["input"] ?? .null
    }

    @Test("a GitHub delivery with a good signature starts a run with the parsed body and only the allowed headers")
    func github() async throws {
        let body = #"{"ref":"refs/heads/main","commits":[1,2]}"#
        let sig = try await Self.hmac(Array(body.utf8))
        let r = try await deliver("github/push", body, headers: [
            ("X-Hub-Signature-256", "sha256=" + sig), ("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d-1"),
            ("Content-Type", "application/json"), ("Cookie", "session=secret"), ("Authorization", "Bearer nope"),
        ])
        #expect(r.status == 202, "\(r.errorMessage)")
        let runId = r.json?["runId"]?.stringValue ?? ""
        let input = try await input(of: runId)
        #expect(input["body"]?["ref"]?.stringValue == "refs/heads/main")
        #expect(input["headers"]?["x-github-event"]?.stringValue == "push")
        #expect(input["deliveryId"]?.stringValue == "d-1")
        let headers = input["headers"]
        for never in ["cookie", "authorization", "x-hub-signature-256", "x-github-delivery"] {
            #expect(headers?[never] == nil, "\(never) must not reach the run")
        }
        #expect(!input.jsonText.contains("session=secret"))

        // The same delivery again (a retry, or a replay of a captured request): the run it made, no new one.
        let again = try await deliver("github/push", body, headers: [("X-Hub-Signature-256", "sha256=" + sig), ("X-GitHub-Delivery", "d-1")])
        #expect(again.status == 200)
        #expect(again.json?["duplicate"] == .bool(true))
        #expect(again.json?["runId"]?.stringValue == runId)
        // Remembered across a restart.
        #expect(await gw.stop() == 0)
        try await gw.start()
        let replay = try await deliver("github/push", body, headers: [("X-Hub-Signature-256", "sha256=" + sig), ("X-GitHub-Delivery", "d-1")])
        #expect(replay.json?["duplicate"] == .bool(true))
        #expect(try await gw.triggeredRuns("hooked.github").count == 1)
    }

    @Test("a forged or missing signature is 401 and an audit entry; no run starts")
    func forged() async throws {
        let body = #"{"ref":"refs/heads/evil"}"#
        let wrong = try await Self.hmac(Array(body.utf8), key: "not-the-secret")
        let forged = try await deliver("github/push", body, headers: [("X-Hub-Signature-256", "sha256=" + wrong), ("X-GitHub-Delivery", "d-evil")])
        #expect(forged.status == 401)
        #expect(forged.errorCode == .badSignature)
        let missing = try await deliver("github/push", body, headers: [("X-GitHub-Delivery", "d-evil-2")])
        #expect(missing.status == 401)
        // The body changed after signing.
        let good = try await Self.hmac(Array(body.utf8))
        let tampered = try await deliver("github/push", body.replacingOccurrences(of: "evil", with: "main"),
                                         headers: [("X-Hub-Signature-256", "sha256=" + good)])
        #expect(tampered.status == 401)
        #expect(try await gw.triggeredRuns("hooked.github").isEmpty)
        let rejected = try await gw.auditEntries(action: "webhook.rejected")
        #expect(rejected.count == 3)
        #expect(rejected.allSatisfy { $0["details"]?["trigger"]?.stringValue == "hooked.github" })
        #expect(rejected.contains { $0["details"]?["reason"]?.stringValue?.contains("does not match") == true })
        let metrics = Scrape(String(decoding: try await gw.get("/metrics").body, as: UTF8.self))
        #expect(metrics["skelm_webhook_rejections_total{}"] >= 3)
    }

    @Test("Slack's v0 signature and our own HMAC scheme: good ones accepted, a stale timestamp (a replay) refused")
    func timestamped() async throws {
        let now = Int(Date().timeIntervalSince1970)
        let body = "token=x&text=hello"
        let slackSig = try await Self.hmac(Array("v0:\(now):\(body)".utf8))
        let slack = try await deliver("slack", body, headers: [("X-Slack-Request-Timestamp", "\(now)"), ("X-Slack-Signature", "v0=" + slackSig),
                                                               ("Content-Type", "application/x-www-form-urlencoded")])
        #expect(slack.status == 202, "\(slack.errorMessage)")
        // Not JSON: the run gets the raw text, never a 500.
        #expect(try await input(of: slack.json?["runId"]?.stringValue ?? "")["body"]?.stringValue == body)

        let stale = now - 600
        let old = try await Self.hmac(Array("v0:\(stale):\(body)".utf8))
        let replayed = try await deliver("slack", body, headers: [("X-Slack-Request-Timestamp", "\(stale)"), ("X-Slack-Signature", "v0=" + old)])
        #expect(replayed.status == 401)

        let ours = #"{"n":1}"#
        let mac = try await Self.hmac(Array("\(now).\(ours)".utf8))
        let accepted = try await deliver("ours", ours, headers: [("X-Skelm-Signature", "t=\(now),v1=\(mac)")])
        #expect(accepted.status == 202, "\(accepted.errorMessage)")
        let late = try await Self.hmac(Array("\(now - 300).\(ours)".utf8))
        #expect(try await deliver("ours", ours, headers: [("X-Skelm-Signature", "t=\(now - 300),v1=\(late)")]).status == 401)
    }

    @Test("with authentication off, a GET webhook is not an <img> away: a request without a JSON content type is refused and audited")
    func browserCannotFire() async throws {
        let open = try await TestGateway.started(workflows: ["pixel.workflow.yaml": """
            id: pixel
            steps: [ { id: s, run: echo } ]
            triggers:
              - webhook: { path: pixel, method: GET }
            """])
        defer { open.cleanupLater() }
        // What a page's <img src="http://127.0.0.1:PORT/hooks/pixel?a=b"> sends: a GET, no content type.
        let fromPage = try await open.tcp.send(.GET, "/hooks/pixel?a=b", headers: [("Accept", "image/*")])
        #expect(fromPage.status == 415, "\(fromPage.errorMessage)")
        #expect(try await open.triggeredRuns("pixel.webhook").isEmpty)
        let denied = try await open.auditEntries(action: "api.denied")
        #expect(denied.contains { $0["details"]?["path"]?.stringValue?.hasPrefix("/hooks/pixel") == true }, "\(denied)")
        // A local client that says JSON fires it.
        let local = try await open.tcp.send(.GET, "/hooks/pixel", headers: [("Content-Type", "application/json")])
        #expect(local.status == 202, "\(local.errorMessage)")
    }

    @Test("a body over maxBodyKB is 413 before it is read; unknown paths 404; public hooks need no token while the API does")
    func limitsAndAccess() async throws {
        let big = String(repeating: "x", count: 64 << 10)
        let tooBig = try await deliver("github/push", big, headers: [("X-Hub-Signature-256", "sha256=00")])
        #expect(tooBig.status == 413)
        // A path no public hook serves is behind the token like the rest of the API; with one, 404.
        #expect(try await deliver("nowhere", "{}", headers: []).status == 401)
        #expect(try await deliver("nowhere", "{}", headers: [("Content-Type", "application/json")], token: Self.token).status == 404)

        // The private hook needs an operator token (and takes a JSON body then).
        let anonymous = try await deliver("private", "{}", headers: [("Content-Type", "application/json")])
        #expect(anonymous.status == 401)
        let authorized = try await deliver("private", #"{"a":1}"#, headers: [("Content-Type", "application/json")], token: Self.token)
        #expect(authorized.status == 202, "\(authorized.errorMessage)")
        var c = gw.tcp!
        c.token = nil
        #expect(try await c.get("/runs").status == 401)
        // The same path public for POST does not make its GET (not public) reachable without a token.
        #expect(try await c.get("/hooks/ours").status == 401)
        #expect(try await gw.triggeredRuns("hooked.sneaky").isEmpty)
        #expect(try await c.get("/triggers").status == 401)

        // The trigger view names the secret, never its value.
        let view = try await gw.get("/triggers/hooked.github")
        #expect(view.json?["spec"]?["webhook"]?["signature"]?["secret"]?.stringValue == "HOOK")
        #expect(!String(decoding: view.body, as: UTF8.self).contains(Self.secret))
    }
}
