import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

@Suite("HTTP: idle connections are closed, busy ones are not; the client sends again only what is safe to")
struct IdleConnectionTests {
    static let config = TestGateway.config(server: "{ host: 127.0.0.1, port: 0, maxConcurrentRuns: 4, sseHeartbeatSeconds: 1, idleTimeoutSeconds: 1 }")

    /// What became of a TCP connection that sent `request` and then nothing:
    /// how long until the gateway closed it, and what it answered first. Nil
    /// if it was still open after `limit` seconds.
    static func openedAndLeft(port: Int, sending request: String, limit: Int = 10) async -> (seconds: Double, answer: String)? {
        await withCheckedContinuation { cont in
            // A blocking socket on a thread of its own, not one of the few the async tests share.
            Thread {
                // From before the connect: the gateway's clock starts at its accept.
                let start = ContinuousClock.now
                guard let fd = connectLoopback(port: port) else { return cont.resume(returning: nil) }
                defer { close(fd) }
                var timeout = timeval(tv_sec: limit, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                if !request.isEmpty { _ = request.withCString { send(fd, $0, strlen($0), 0) } }
                var data = [UInt8](), chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = recv(fd, &chunk, chunk.count, 0)
                    if n == 0 { break }
                    if n < 0, errno == EINTR { continue }
                    // Out of time (EAGAIN), or reset: either way not the orderly close looked for.
                    if n < 0 { return cont.resume(returning: nil) }
                    data += chunk[..<n]
                }
                let elapsed = ContinuousClock.now - start
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                cont.resume(returning: (seconds, String(decoding: data, as: UTF8.self)))
            }.start()
        }
    }

    @Test("a connection that sends nothing, stops halfway through its headers, or sits idle after an answer is closed after idleTimeoutSeconds")
    func idleClosed() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: Self.config)
        defer { gw.cleanupLater() }
        guard case let .tcp(_, port) = gw.tcp.target else { throw GatewayFailure(description: "no tcp listener") }
        async let silent = Self.openedAndLeft(port: port, sending: "")
        async let halfway = Self.openedAndLeft(port: port, sending: "GET /health HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nX-Slow: ")
        async let kept = Self.openedAndLeft(port: port, sending: "GET /health HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\r\n")
        let (s, h, k) = await (silent, halfway, kept)
        // Closed by the gateway (an orderly end, not a reset), not at once, and
        // well before the 60 s default would have.
        let closedSilent = try #require(s, "a connection that sent nothing was still open after 10 s")
        #expect(closedSilent.seconds >= 0.9 && closedSilent.seconds < 8 && closedSilent.answer.isEmpty, "\(closedSilent)")
        let closedHalfway = try #require(h, "a connection that stopped halfway through its headers was still open after 10 s")
        #expect(closedHalfway.seconds >= 0.9 && closedHalfway.seconds < 8 && closedHalfway.answer.isEmpty, "\(closedHalfway)")
        let closedKept = try #require(k, "an idle kept-alive connection was still open after 10 s")
        #expect(closedKept.seconds >= 0.9 && closedKept.seconds < 8 && closedKept.answer.hasPrefix("HTTP/1.1 200"), "\(closedKept)")
        // The gateway itself goes on answering.
        #expect(try await gw.get("/health").status == 200)
    }

    @Test("the client's kept connection, closed while idle, is replaced: a read and a run without an Idempotency-Key both go through")
    func clientAfterIdleClose() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: Self.config)
        defer { gw.cleanupLater() }
        #expect(try await gw.tcp.get("/health").status == 200)
        try await Task.sleep(for: .milliseconds(2500))
        #expect(try await gw.tcp.get("/health").status == 200)
        try await Task.sleep(for: .milliseconds(2500))
        let run = try await gw.tcp.post("/runs", json: ["workflow": "hello", "input": ["name": "again"], "mode": "sync"])
        #expect(run.status == 200 && run.json?["status"] == "succeeded", "\(run.status) \(run.errorMessage)")
    }

    @Test("a sync run and an event stream that outlast idleTimeoutSeconds get their whole answer")
    func busyKept() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: Self.config)
        defer { gw.cleanupLater() }
        async let synced = gw.run("slow", ["seconds": "3"])
        // Long enough that its stream is quiet past the timeout, with heartbeats.
        let streamed = try #require(try await gw.run("slow", ["seconds": "5"], sync: false)["id"]?.stringValue)
        let (events, heartbeats) = try await gw.events(streamed)
        #expect(events.last?.type == "run.succeeded", "\(events.map(\.type))")
        #expect(heartbeats >= 1)
        let done = try await synced
        #expect(done["status"] == "succeeded", "\(done)")
        // Over TCP too, where the client's connection is kept between requests.
        let overTCP = try await gw.tcp.post("/runs", json: ["workflow": "slow", "input": ["seconds": "2"], "mode": "sync"])
        #expect(overTCP.status == 200 && overTCP.json?["status"] == "succeeded", "\(overTCP.status) \(overTCP.errorMessage)")
    }

    @Test("a run request cut off before its answer (the gateway killed) is not sent again: the client says it may or may not have been acted on")
    func notSentTwice() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let client = gw.tcp!
        // A kept connection: the next request goes on it.
        #expect(try await client.get("/health").status == 200)
        let cut = Task { try await client.post("/runs", json: ["workflow": "slow", "input": ["seconds": "30"], "mode": "sync"]) }
        var running = 0
        for _ in 0..<500 where running == 0 {
            try await Task.sleep(for: .milliseconds(20))
            if case let .number(n)? = try await gw.get("/health").json?["runs"]?["running"] { running = Int(n) }
        }
        #expect(running == 1)
        await gw.stop(signal: SIGKILL)
        switch await cut.result {
        case let .success(reply):
            Issue.record("answered \(reply.status) by a killed gateway")
        case let .failure(error):
            // Sent again, it would have failed otherwise: no gateway to reach, or one going down.
            #expect("\(error)".contains("may or may not have acted on it"), "\(error)")
        }
    }

    @Test("a client that goes away closes its kept connection: fifty clients used once each leave none open at the gateway")
    func droppedClientsClose() async throws {
        // The default idle timeout (60 s): only the clients can close these in time.
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        guard case let .tcp(host, port) = gw.tcp.target else { throw GatewayFailure(description: "no tcp listener") }
        for _ in 0..<50 {
            let client = GatewayClient(target: .tcp(host: host, port: port), display: "once", token: gw.tcp.token)
            #expect(try await client.get("/health").status == 200)
        }
        var open = Self.established(atPort: port)
        for _ in 0..<100 where open > 0 {
            try await Task.sleep(for: .milliseconds(50))
            open = Self.established(atPort: port)
        }
        #expect(open == 0, "\(open) of the fifty connections are still open at the gateway")
    }

    /// TCP connections accepted on `port` that are still established (the
    /// gateway's side of each), from the network namespace's table.
    static func established(atPort port: Int) -> Int {
        let table = (try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)) ?? ""
        let local = String(format: ":%04X", port)
        return table.split(separator: "\n").dropFirst().filter { line in
            let fields = line.split(separator: " ")
            return fields.count > 3 && fields[1].hasSuffix(local) && fields[3] == "01"
        }.count
    }

    @Test("idleTimeoutSeconds out of range is refused at start, naming the key")
    func refused() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all,
                                 config: TestGateway.config(server: "{ host: 127.0.0.1, port: 0, idleTimeoutSeconds: 0 }"))
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("server.idleTimeoutSeconds") && gw.logText.contains("between 1 and 86400"), "\(gw.logText)")
    }
}
