import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

@Suite("HTTP: idle connections are closed, busy ones are not")
struct IdleConnectionTests {
    static let config = TestGateway.config(server: "{ host: 127.0.0.1, port: 0, maxConcurrentRuns: 4, sseHeartbeatSeconds: 1, idleTimeoutSeconds: 1 }")

    /// What became of a TCP connection that sent `request` and then nothing:
    /// how long until the gateway closed it, and what it answered first. Nil
    /// if it was still open after `limit` seconds.
    static func openedAndLeft(port: Int, sending request: String, limit: Int = 60) async -> (seconds: Double, answer: String)? {
        await withCheckedContinuation { cont in
            // A blocking socket on a thread of its own, not one of the few the async tests share.
            Thread {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var addr = sockaddr_in()
                addr.sin_family = sa_family_t(AF_INET)
                addr.sin_port = in_port_t(UInt16(port).bigEndian)
                addr.sin_addr.s_addr = inet_addr("127.0.0.1")
                let connected = withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                guard connected == 0 else { return cont.resume(returning: nil) }
                var timeout = timeval(tv_sec: limit, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                let start = ContinuousClock.now
                if !request.isEmpty { _ = request.withCString { send(fd, $0, strlen($0), 0) } }
                var data = [UInt8](), chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = recv(fd, &chunk, chunk.count, 0)
                    if n == 0 { break }
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
        // Closed by the gateway (an orderly end, not a reset), and not at once.
        let closedSilent = try #require(s, "a connection that sent nothing was still open")
        #expect(closedSilent.seconds >= 0.9 && closedSilent.answer.isEmpty, "\(closedSilent)")
        let closedHalfway = try #require(h, "a connection that stopped halfway through its headers was still open")
        #expect(closedHalfway.seconds >= 0.9 && closedHalfway.answer.isEmpty, "\(closedHalfway)")
        let closedKept = try #require(k, "an idle kept-alive connection was still open")
        #expect(closedKept.seconds >= 0.9 && closedKept.answer.hasPrefix("HTTP/1.1 200"), "\(closedKept)")
        // The gateway itself goes on answering.
        #expect(try await gw.get("/health").status == 200)
    }

    @Test("a sync run and an event stream that outlast idleTimeoutSeconds get their whole answer")
    func busyKept() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: Self.config)
        defer { gw.cleanupLater() }
        async let synced = gw.run("slow", ["seconds": "3"])
        let streamed = try #require(try await gw.run("slow", ["seconds": "3"], sync: false)["id"]?.stringValue)
        let (events, heartbeats) = try await gw.events(streamed)
        #expect(events.last?.type == "run.succeeded", "\(events.map(\.type))")
        #expect(heartbeats >= 1)
        let done = try await synced
        #expect(done["status"] == "succeeded", "\(done)")
        // Over TCP too, where the client's connection is kept between requests.
        let overTCP = try await gw.tcp.post("/runs", json: ["workflow": "slow", "input": ["seconds": "2"], "mode": "sync"])
        #expect(overTCP.status == 200 && overTCP.json?["status"] == "succeeded", "\(overTCP.status) \(overTCP.errorMessage)")
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
