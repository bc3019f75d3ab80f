import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// `http` steps against a local HTTPS origin whose certificate comes from a
/// private CA (given by `egress.caFile`), with a credential bound to the
/// origin's host: the origin sees it, the sandbox never does.
@Suite("HTTP steps", .serialized)
final class HTTPStepTests {
    static let token = "tok-5e0c1b9a7d3f"
    /// Sent bare (`format: "{}"`), so the origin echoes the secret's value itself.
    static let raw = "raw-8c41d2e07b9a"
    let gw: TestGateway
    let origin: FixturePeer
    let record: String
    /// The origin's certificates, log and record of requests: removed with the suite.
    let dir: String

    static func workflows(port: Int) -> [String: String] {
        [
            "fetch.workflow.yaml": """
                id: fetch
                steps:
                  - id: call
                    http:
                      method: POST
                      url: "https://127.0.0.1:\(port)/echo"
                      query: { q: "${{ input.q }}" }
                      headers: { X-Trace: t-1 }
                      body: { json: { name: "${{ input.name }}" } }
                  - id: look
                    exec:
                      argv: [sh, -c, 'env; tr "\\\\0" "\\\\n" < /proc/self/environ; ls -la; cat ./* .tmp/* 2>/dev/null; echo looked']
                """,
            "redirected.workflow.yaml": """
                id: redirected
                steps:
                  - id: call
                    http: { url: "https://127.0.0.1:\(port)/redirect?to=https://127.0.0.2:\(port)/elsewhere" }
                """,
            "closed.workflow.yaml": """
                id: closed
                steps:
                  - id: call
                    http: { url: "https://127.0.0.1:1/" }
                """,
            "templated.workflow.yaml": """
                id: templated
                steps:
                  - id: call
                    http: { url: "https://${{ input.host }}/" }
                """,
            "expects.workflow.yaml": """
                id: expects
                steps:
                  - id: call
                    http: { url: "https://127.0.0.1:\(port)/big?n=10", expectStatus: [404] }
                """,
            "huge.workflow.yaml": """
                id: huge
                steps:
                  - id: call
                    http: { url: "https://127.0.0.1:\(port)/big?n=5000" }
                """,
        ]
    }

    init() async throws {
        dir = "/tmp/skelm-origin-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir + "/certs", withIntermediateDirectories: true)
        record = dir + "/requests.jsonl"
        origin = try await FixturePeer.start("https_origin.py", ["--tls", dir + "/certs", "--ip-san", "--record", record], log: dir + "/origin.log")
        gw = try TestGateway(workflows: Self.workflows(port: origin.port), config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 4, uidBase: UIDBASE }
            defaults: { permissions: { allowedExecutables: [sh, tr, ls, cat, env], networkEgress: { allowHosts: ["127.0.0.1:\(origin.port)"] } } }
            secrets: { env: { prefix: SKELM_TEST_SECRET_ } }
            egress:
              caFile: \(dir)/certs/ca.pem
              maxResponseKB: 1
              inject: [{ host: "127.0.0.1:\(origin.port)", secret: API_TOKEN }, { host: "127.0.0.1:\(origin.port)", header: X-Raw, secret: RAW_TOKEN, format: "{}" }]
            """)
        gw.environment = ["SKELM_TEST_SECRET_API_TOKEN": Self.token, "SKELM_TEST_SECRET_RAW_TOKEN": Self.raw]
        try await gw.start()
    }

    deinit {
        gw.cleanupLater()
        origin.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test("a POST over TLS from a private CA carries the injected bearer header to the origin; the step, its worker's answer and the run never hold it")
    func injected() async throws {
        let done = try await gw.run("fetch", ["q": "a b+c", "name": "Ada"])
        #expect(done["status"] == "succeeded", "\(done)")
        let id = try #require(done["id"]?.stringValue)
        let call = try #require(done["steps"].list.first { $0["path"] == "call" }?["output"])
        #expect(call["status"] == 200)
        #expect(call["headers"]?["content-type"] == "application/json")
        let echoed = try #require(call["body"])
        #expect(echoed["method"] == "POST")
        #expect(echoed["path"]?.stringValue == "/echo?q=a%20b%2Bc", "\(String(describing: echoed["path"]))")
        #expect(JSONValue.parse(echoed["body"]?.stringValue ?? "") == ["name": "Ada"])
        let headers = echoed["headers"].list.compactMap { pair -> (String, String)? in
            guard case let .array(kv) = pair, kv.count == 2, let k = kv[0].stringValue, let v = kv[1].stringValue else { return nil }
            return (k.lowercased(), v)
        }
        #expect(headers.contains { $0 == ("x-trace", "t-1") })
        // The origin echoed the credential back; the worker got it redacted.
        #expect(headers.contains { $0 == ("authorization", "[REDACTED]") }, "\(headers)")
        #expect(headers.contains { $0 == ("x-raw", "[REDACTED]") }, "\(headers)")

        // The origin itself saw it.
        let seen = try String(contentsOfFile: record, encoding: .utf8)
        #expect(seen.contains("Bearer \(Self.token)"))
        #expect(seen.contains(Self.raw))
        // Nothing of the run has it: not the next step's environment, files or
        // /proc view, not the events, not the audit chain.
        let looked = try #require(done["steps"].list.first { $0["path"] == "look" }?["output"]?.stringValue)
        #expect(looked.hasSuffix("looked"))
        #expect(!looked.contains(Self.token) && !looked.contains(Self.raw))
        let events = String(decoding: try await gw.get("/runs/\(id)/events?limit=1000", headers: [("Accept", "application/json")]).body, as: UTF8.self)
        #expect(!events.contains(Self.token) && !events.contains(Self.raw))
        #expect(!String(decoding: try await gw.get("/audit?limit=1000").body, as: UTF8.self).contains(Self.token))
        let injected = try await gw.get("/audit?action=secret.injected").json?["entries"].list ?? []
        #expect(injected.contains { $0["runId"]?.stringValue == id && $0["details"]?["name"] == "API_TOKEN" && $0["details"]?["step"] == "call" })
        let allowed = try await gw.get("/audit?action=egress.allowed").json?["entries"].list ?? []
        #expect(allowed.contains { $0["runId"]?.stringValue == id && $0["details"]?["via"] == "control-plane" })
    }

    @Test("a redirect to a host the step may not reach is refused and audited; the credential goes nowhere else")
    func redirect() async throws {
        let done = try await gw.run("redirected")
        #expect(done["status"] == "failed")
        #expect(done["error"]?["code"] == "PermissionDenied", "\(done)")
        let id = try #require(done["id"]?.stringValue)
        let refused = try await gw.get("/audit?action=http.redirect.refused").json?["entries"].list ?? []
        #expect(refused.contains { $0["runId"]?.stringValue == id && $0["details"]?["to"]?.stringValue?.contains("127.0.0.2") == true }, "\(refused)")
        let denied = try await gw.get("/audit?action=egress.denied").json?["entries"].list ?? []
        #expect(denied.contains { $0["runId"]?.stringValue == id && $0["details"]?["host"] == "127.0.0.2" })
        let seen = try String(contentsOfFile: record, encoding: .utf8)
        #expect(!seen.contains(#""path": "/elsewhere""#), "nothing reached the other host")
    }

    @Test("a host outside allowHosts is refused, literal or templated")
    func refused() async throws {
        let closed = try await gw.run("closed")
        #expect(closed["error"]?["code"] == "PermissionDenied", "\(closed)")
        let templated = try await gw.run("templated", ["host": "example.com"])
        #expect(templated["error"]?["code"] == "PermissionDenied", "\(templated)")
        #expect(templated["error"]?["message"]?.stringValue?.contains("example.com") == true)
    }

    @Test("a status expectStatus does not accept is HTTPStatus; a body past egress.maxResponseKB is HTTPFailed")
    func failures() async throws {
        let status = try await gw.run("expects")
        #expect(status["error"]?["code"] == "HTTPStatus", "\(status)")
        #expect(status["error"]?["details"]?["status"] == "200")
        let huge = try await gw.run("huge")
        #expect(huge["error"]?["code"] == "HTTPFailed", "\(huge)")
    }
}
