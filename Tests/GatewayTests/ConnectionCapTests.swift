import Foundation
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

@Suite("HTTP: each listener holds at most server.maxConnections connections")
struct ConnectionCapTests {
    static let config = TestGateway.config(server: "{ host: 127.0.0.1, port: 0, maxConcurrentRuns: 4, maxConnections: 3 }")

    @Test("past maxConnections a new TCP connection waits, unanswered, until one closes; the Unix socket still answers; the fill is logged and counted")
    func capped() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: Self.config)
        defer { gw.cleanupLater() }
        guard case let .tcp(_, port) = gw.tcp.target else { throw GatewayFailure(description: "no tcp listener") }
        let health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\r\n"

        // Three kept-alive connections, each answered: the listener is full.
        var held: [Int32] = []
        defer { held.forEach { close($0) } }
        for _ in 0..<3 {
            let fd = try #require(connectLoopback(port: port))
            held.append(fd)
            let answer = await Self.ask(fd, health, within: 30)
            #expect(answer?.hasPrefix("HTTP/1.1 200") == true, "\(answer ?? "no answer")")
        }

        // The fourth connects (the kernel queues it) but is not served.
        let fourth = try #require(connectLoopback(port: port))
        defer { close(fourth) }
        let early = await Self.ask(fourth, health, within: 2)
        #expect(early == nil, "answered past maxConnections: \(early ?? "")")
        #expect(gw.logText.contains("the tcp listener holds server.maxConnections (3) connections"), "\(gw.logText.suffix(2000))")

        // The Unix socket is bounded apart: the CLI's way in still works.
        #expect(try await gw.get("/health").status == 200)

        // One closes: the waiting connection is taken up and its request answered.
        close(held.removeFirst())
        let late = await Self.read(fourth, within: 30)
        #expect(late?.hasPrefix("HTTP/1.1 200") == true, "\(late ?? "no answer once a connection closed")")

        #expect(gw.logText.contains("the tcp listener accepts connections again"), "\(gw.logText.suffix(2000))")

        // Full twice: at the third connection, and again once the fourth took the freed place.
        let scrape = try await gw.scrape()
        #expect(scrape[#"skelm_http_listener_full_total{listener="tcp"}"#] == 2)
        #expect(scrape[#"skelm_http_connections{listener="tcp"}"#] == 3)
    }

    @Test("the Unix socket is bounded too: past maxConnections a new connection there waits until one closes")
    func cappedUnix() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: Self.config)
        defer { gw.cleanupLater() }
        guard case let .unix(path) = gw.client.target else { throw GatewayFailure(description: "no unix socket") }
        let health = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
        // The test's own client may hold a kept connection there too: connections
        // are opened until one is not answered, which must come by the fourth.
        var held: [Int32] = []
        defer { held.forEach { close($0) } }
        var waiting: Int32?
        for _ in 0..<6 where waiting == nil {
            let fd = try #require(connectUnix(path))
            held.append(fd)
            if await Self.ask(fd, health, within: 2) == nil { waiting = fd }
        }
        let fd = try #require(waiting, "six connections to the Unix socket were all answered")
        #expect(held.count <= 4, "\(held.count) connections before one waited")
        #expect(gw.logText.contains("the unix listener holds server.maxConnections (3) connections"), "\(gw.logText.suffix(2000))")
        close(held.removeFirst())
        let late = await Self.read(fd, within: 30)
        #expect(late?.hasPrefix("HTTP/1.1 200") == true, "\(late ?? "no answer once a connection closed")")
    }

    @Test("maxConnections out of range is refused at start, naming the key")
    func refused() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all,
                                 config: TestGateway.config(server: "{ host: 127.0.0.1, port: 0, maxConnections: 0 }"))
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("server.maxConnections") && gw.logText.contains("between 1 and 1000000"), "\(gw.logText)")
    }

    /// Sends `request` on `fd` and reads one answer (see `read`).
    static func ask(_ fd: Int32, _ request: String, within seconds: Int) async -> String? {
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        return await read(fd, within: seconds)
    }

    /// One HTTP answer read from `fd` (its head, and a body of `Content-Length`),
    /// or nil if none came within `seconds`. On a thread of its own: the socket
    /// blocks, and the async tests share few threads.
    static func read(_ fd: Int32, within seconds: Int) async -> String? {
        await withCheckedContinuation { cont in
            Thread {
                var timeout = timeval(tv_sec: seconds, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var data = [UInt8](), chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let text = String(decoding: data, as: UTF8.self)
                    if let end = text.range(of: "\r\n\r\n") {
                        let length = text[..<end.lowerBound].split(separator: "\r\n")
                            .first { $0.lowercased().hasPrefix("content-length:") }
                            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                        if text.utf8.count - text[..<end.upperBound].utf8.count >= length { return cont.resume(returning: text) }
                    }
                    let n = recv(fd, &chunk, chunk.count, 0)
                    if n < 0, errno == EINTR { continue }
                    if n <= 0 { return cont.resume(returning: nil) }
                    data += chunk[..<n]
                }
            }.start()
        }
    }
}
