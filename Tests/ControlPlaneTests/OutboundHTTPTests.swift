@testable import ControlPlane
import Foundation
import NIOPosix
import Testing

/// Requests the control plane makes for `http` and `infer` steps, against real
/// origins (`Tests/Fixtures/https_origin.py`): TLS verified against a private CA,
/// credentials injected only where they belong, redirects decided hop by hop.
@Suite("Outbound HTTP")
final class OutboundHTTPTests: Sendable {
    let dir: String
    var ca: String { dir + "/ca.pem" }

    init() throws {
        dir = try scratchDirectory()
    }

    deinit {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// An HTTPS origin whose certificate names `localhost`, issued by `ca`.
    func origin(tls: Bool = true) async throws -> OriginServer {
        try await OriginServer.start(certs: tls ? dir : nil, log: dir + "/origin-\(UUID().uuidString).log")
    }

    func client() throws -> OutboundHTTP {
        try OutboundHTTP(group: MultiThreadedEventLoopGroup.singleton, caFile: ca)
    }

    @Test("an HTTPS request carries the credential injected for its host, and only that one")
    func injected() async throws {
        let server = try await origin()
        defer { server.stop() }
        let request = OutboundRequest(url: "https://localhost:\(server.port)/echo?q=1", headers: [("X-Step", "yes")])
        let response = try await client().perform(request, injections: [
            OutboundInjection(host: "LOCALHOST", port: server.port, header: "Authorization", value: "Bearer xyz"),
            OutboundInjection(host: "localhost", port: server.port + 1, header: "X-Other-Port", value: "no"),
            OutboundInjection(host: "api.example.com", header: "X-Other-Host", value: "no"),
        ], decide: testDecision())
        #expect(response.status == 200)
        #expect(response.url == "https://localhost:\(server.port)/echo?q=1")
        let echo = try Echo(response)
        #expect(echo.path == "/echo?q=1")
        #expect(echo.values("Authorization") == ["Bearer xyz"])
        #expect(echo.values("X-Step") == ["yes"])
        #expect(echo.values("X-Other-Port").isEmpty)
        #expect(echo.values("X-Other-Host").isEmpty)
        #expect(echo.values("Host") == ["localhost:\(server.port)"])
        #expect(echo.values("User-Agent") == ["skelm"])
        #expect(echo.values("Connection") == ["close"])
    }

    @Test("a certificate from a CA the client was not given fails the handshake")
    func untrusted() async throws {
        let server = try await origin()
        defer { server.stop() }
        let error = await outboundFailure {
            try await OutboundHTTP(group: MultiThreadedEventLoopGroup.singleton, caFile: nil)
                .perform(OutboundRequest(url: "https://localhost:\(server.port)/"), decide: testDecision())
        }
        guard case .tls? = error else { Issue.record("expected a TLS failure, got \(String(describing: error))"); return }
    }

    @Test("a certificate for another name fails, by IP literal and by a name resolving to the same address")
    func wrongName() async throws {
        let server = try await origin()
        defer { server.stop() }
        let http = try client()
        for url in ["https://127.0.0.1:\(server.port)/", "https://elsewhere.test:\(server.port)/"] {
            let error = await outboundFailure {
                try await http.perform(OutboundRequest(url: url), decide: testDecision(aliases: ["elsewhere.test": "localhost"]))
            }
            guard case .tls? = error else { Issue.record("\(url): expected a TLS failure, got \(String(describing: error))"); return }
        }
        // The same origin by the name its certificate gives is fine.
        let ok = try await http.perform(OutboundRequest(url: "https://localhost:\(server.port)/"), decide: testDecision())
        #expect(ok.status == 200)
    }

    @Test("a refused destination stops the request; a refused redirect is recorded as a hop")
    func refusedRedirects() async throws {
        let server = try await origin()
        defer { server.stop() }
        let http = try client()
        let base = "https://localhost:\(server.port)"
        let first = await outboundFailure {
            try await http.perform(OutboundRequest(url: "https://forbidden.invalid/"), decide: testDecision())
        }
        guard case .refused(host: "forbidden.invalid", port: 443, reason: _)? = first else {
            Issue.record("expected the request refused, got \(String(describing: first))")
            return
        }
        for (to, reason) in [("https://forbidden.invalid/x", "allowHosts"), ("http://localhost:\(server.port)/plain", "https to http")] {
            let hops = Collected<OutboundHop>()
            let error = await outboundFailure {
                let url = "\(base)/redirect?to=\(to.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&code=302"
                return try await http.perform(OutboundRequest(url: url), decide: testDecision(), onHop: { hops.append($0) })
            }
            guard case let .redirectRefused(target, why)? = error else {
                Issue.record("expected the redirect to \(to) refused, got \(String(describing: error))")
                return
            }
            #expect(target == to)
            #expect(why.contains(reason))
            #expect(hops.all == [.refused(to: to, reason: why)])
        }
    }

    @Test("a redirect to another origin carries neither the caller's credentials nor the first host's injection")
    func crossOrigin() async throws {
        let first = try await origin()
        defer { first.stop() }
        let second = try await origin()
        defer { second.stop() }
        let http = try client()
        let headers = [("Authorization", "Bearer caller"), ("Cookie", "c=1"), ("X-Keep", "kept")]
        let injections = [OutboundInjection(host: "localhost", port: first.port, header: "X-Api-Key", value: "secret")]
        // Within the first origin (a relative Location) everything stays.
        let same = try await http.perform(OutboundRequest(url: "https://localhost:\(first.port)/redirect?to=/landing", headers: headers),
                                          injections: injections, decide: testDecision())
        let sameEcho = try Echo(same)
        #expect(sameEcho.path == "/landing")
        #expect(sameEcho.values("Authorization") == ["Bearer caller"])
        #expect(sameEcho.values("X-Api-Key") == ["secret"])

        let landing = "https://localhost:\(second.port)/landing"
        let start = "https://localhost:\(first.port)/redirect?to=\(landing.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&code=302"
        let response = try await http.perform(OutboundRequest(url: start, headers: headers), injections: injections, decide: testDecision())
        #expect(response.url == landing)
        #expect(response.hops == [.followed(from: start, to: landing, status: 302)])
        let echo = try Echo(response)
        #expect(echo.values("Host") == ["localhost:\(second.port)"])
        #expect(echo.values("Authorization").isEmpty)
        #expect(echo.values("Cookie").isEmpty)
        #expect(echo.values("X-Api-Key").isEmpty)
        #expect(echo.values("X-Keep") == ["kept"])
    }

    @Test("303, and 302 after a POST, become a GET without the body; 307 and 308 keep both", arguments: [
        (303, "GET", ""), (302, "GET", ""), (307, "POST", "payload"), (308, "POST", "payload"),
    ])
    func redirectMethods(_ code: Int, _ method: String, _ body: String) async throws {
        let server = try await origin()
        defer { server.stop() }
        let request = OutboundRequest(method: "POST", url: "https://localhost:\(server.port)/redirect?to=/landing&code=\(code)",
                                      headers: [("Content-Type", "text/plain")], body: Array("payload".utf8))
        let response = try await client().perform(request, decide: testDecision())
        let echo = try Echo(response)
        #expect(echo.method == method)
        #expect(echo.body == body)
        #expect(echo.values("Content-Type") == (body.isEmpty ? [] : ["text/plain"]))
        #expect(response.hops.count == 1)
    }

    @Test("more redirects than allowed fail, the refused one recorded")
    func tooManyRedirects() async throws {
        let server = try await origin()
        defer { server.stop() }
        let inner = "/redirect?to=/landing".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let hops = Collected<OutboundHop>()
        let error = await outboundFailure {
            try await client().perform(OutboundRequest(url: "https://localhost:\(server.port)/redirect?to=\(inner)"),
                                       limits: OutboundLimits(maxRedirects: 1), decide: testDecision(), onHop: { hops.append($0) })
        }
        #expect(error == .tooManyRedirects(1))
        #expect(hops.all.count == 2)
        #expect(hops.all.last == .refused(to: "https://localhost:\(server.port)/landing", reason: "more than 1 redirects"))
    }

    @Test("bodies are capped as they arrive; chunked and close-delimited bodies are read whole")
    func bodies() async throws {
        let server = try await origin()
        defer { server.stop() }
        let plain = try await origin(tls: false)
        defer { plain.stop() }
        let http = try client()
        let base = "https://localhost:\(server.port)"
        let limit = OutboundLimits(maxResponseBytes: 1000)
        for path in ["/big?n=1001", "/chunked?n=5000&parts=5"] {
            let error = await outboundFailure { try await http.perform(OutboundRequest(url: base + path), limits: limit, decide: testDecision()) }
            #expect(error == .responseTooLarge(limit: 1000), "\(path)")
        }
        let exact = try await http.perform(OutboundRequest(url: base + "/big?n=1000"), limits: limit, decide: testDecision())
        #expect(exact.body.count == 1000)
        let chunked = try await http.perform(OutboundRequest(url: base + "/chunked?n=5000&parts=5"), decide: testDecision())
        #expect(chunked.body == Array(repeating: UInt8(ascii: "c"), count: 5000))
        let closed = try await http.perform(OutboundRequest(url: "http://localhost:\(plain.port)/close?n=3000"), decide: testDecision())
        #expect(closed.body == Array(repeating: UInt8(ascii: "d"), count: 3000))
    }

    @Test("a request slower than its timeout fails with a timeout, without waiting for the origin")
    func timeout() async throws {
        let server = try await origin()
        defer { server.stop() }
        let started = ContinuousClock.now
        let error = await outboundFailure {
            try await client().perform(OutboundRequest(url: "https://localhost:\(server.port)/slow?s=60", timeout: .milliseconds(500)),
                                       decide: testDecision())
        }
        #expect(error == .timeout)
        // Not a timing claim: the origin answers after a minute, and the request did not wait for it.
        #expect(ContinuousClock.now - started < .seconds(45))
    }

    @Test("cancelling the calling task ends the request")
    func cancellation() async throws {
        let server = try await origin()
        defer { server.stop() }
        let http = try client()
        let url = "https://localhost:\(server.port)/slow?s=60"
        let started = ContinuousClock.now
        let task = Task {
            await outboundFailure {
                try await http.perform(OutboundRequest(url: url), decide: testDecision())
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let error = await task.value
        #expect(error == .cancelled)
        // The origin answers after a minute: the cancelled request did not wait for it.
        #expect(ContinuousClock.now - started < .seconds(45))
    }

    @Test("the final response's body is handed on as it arrives")
    func streaming() async throws {
        let server = try await origin()
        defer { server.stop() }
        let chunks = Collected<(at: ContinuousClock.Instant, bytes: [UInt8])>()
        let response = try await client().perform(OutboundRequest(url: "https://localhost:\(server.port)/sse?events=3"),
                                                  decide: testDecision(), onBodyChunk: { chunks.append((.now, $0)) })
        let done = ContinuousClock.now
        let seen = chunks.all
        #expect(response.header("content-type") == "text/event-stream")
        #expect(seen.count >= 2)
        #expect(seen.flatMap(\.bytes) == response.body)
        #expect(String(decoding: response.body, as: UTF8.self) == "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n")
        // The origin waits 0.3 s between events: the first came well before the end.
        if let first = seen.first { #expect(done - first.at > .milliseconds(300)) }
    }

    @Test("malformed requests are refused before any decision or connection", arguments: [
        OutboundRequest(url: "https://localhost/", headers: [("X-Bad", "a\r\nX-Injected: 1")]),
        OutboundRequest(url: "https://localhost/", headers: [("X-Bad", "a\u{0}b")]),
        OutboundRequest(url: "https://localhost/", headers: [("Bad Name", "a")]),
        OutboundRequest(url: "https://localhost/", headers: [("Host", "elsewhere.test")]),
        OutboundRequest(url: "https://localhost/", headers: [("Transfer-Encoding", "chunked")]),
        OutboundRequest(url: "https://user:secret@localhost/"),
        OutboundRequest(url: "ftp://localhost/file"),
        OutboundRequest(url: "/relative"),
        OutboundRequest(url: "https://localhost/a b"),
        OutboundRequest(url: "https://127.1/"),
        OutboundRequest(method: "GE T", url: "https://localhost/"),
        OutboundRequest(method: "CONNECT", url: "https://localhost/"),
    ])
    func invalid(_ request: OutboundRequest) async throws {
        let calls = CallCounter()
        let http = try OutboundHTTP(group: MultiThreadedEventLoopGroup.singleton, caFile: nil)
        let error = await outboundFailure { try await http.perform(request, decide: testDecision(calls: calls)) }
        guard case .invalidRequest? = error else { Issue.record("expected an invalid request, got \(String(describing: error))"); return }
        #expect(calls.count == 0)
    }

    @Test("a CA file that cannot be read or holds no certificates is refused")
    func badCAFile() throws {
        let garbage = dir + "/garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        for path in [dir + "/missing.pem", garbage] {
            #expect(throws: OutboundError.self) { try OutboundHTTP(group: MultiThreadedEventLoopGroup.singleton, caFile: path) }
        }
    }
}
