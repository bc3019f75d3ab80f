import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Wire
import Workflow

/// The CLI's HTTP/1.1 client for one gateway, over its Unix socket or TCP.
/// Written on NIOHTTP1 (which Hummingbird already builds): the CLI talks only
/// plain HTTP to a local gateway, and AsyncHTTPClient would add a second
/// BoringSSL build for TLS it never uses. Connections are kept open between
/// requests (`KeptConnection`), shared by every copy of one client.
public struct GatewayClient: Sendable {
    public enum Target: Sendable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public struct Reply: Sendable {
        public var status: Int
        public var body: Data
        /// The response's headers, in order (names as the gateway sent them).
        public var headers: [(name: String, value: String)] = []

        /// The first header of that name (case-insensitive).
        public func header(_ name: String) -> String? {
            headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
        }
        public var json: JSONValue? { try? JSONDecoder().decode(JSONValue.self, from: body) }

        /// The API's error code; nil for a success, or a body that is not an API error.
        public var errorCode: APIErrorCode? {
            json?["error"]?["code"]?.stringValue.flatMap(APIErrorCode.init(rawValue:))
        }

        /// The API's error message, or the body as text.
        public var errorMessage: String {
            if case let .string(m)? = json?["error"]?["message"] { return m }
            return String(decoding: body, as: UTF8.self)
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let target: Target
    public let display: String
    private let connections = ConnectionPool()
    /// Sent as `Authorization: Bearer` on TCP (the Unix socket needs none):
    /// default `SKELM_TOKEN` from the environment.
    public var token: String?

    public init(target: Target, display: String, token: String? = ProcessInfo.processInfo.environment["SKELM_TOKEN"]) {
        self.target = target
        self.display = display
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `--gateway`, else `SKELM_GATEWAY_URL`, else the discovery file the running gateway
    /// wrote in its state dir (its Unix socket, which only the same user may open).
    public static func resolve(explicit: String?, stateDir: String) throws -> GatewayClient {
        if let url = explicit ?? ProcessInfo.processInfo.environment["SKELM_GATEWAY_URL"], !url.isEmpty {
            return try parse(url)
        }
        let file = stateDir + "/gateway.json"
        guard let data = FileManager.default.contents(atPath: file),
              let info = try? JSONDecoder().decode(Discovery.self, from: data) else {
            throw Failure(description: "no running gateway found (no \(file)); start one with `skelm gateway start`, or set SKELM_GATEWAY_URL")
        }
        if kill(info.pid, 0) != 0, errno == ESRCH {
            throw Failure(description: "the gateway recorded in \(file) (pid \(info.pid)) is not running")
        }
        if access(info.socket, R_OK | W_OK) == 0 {
            return GatewayClient(target: .unix(path: info.socket), display: info.socket)
        }
        return try parse(info.url)
    }

    public static func parse(_ url: String) throws -> GatewayClient {
        if url.hasPrefix("unix://") { return GatewayClient(target: .unix(path: String(url.dropFirst(7))), display: url) }
        guard let u = URLComponents(string: url), u.scheme == "http", let host = u.host else {
            throw Failure(description: "gateway URL must be http://host:port or unix:///path, got \(url)")
        }
        return GatewayClient(target: .tcp(host: host, port: u.port ?? 14738), display: url)
    }

    public func get(_ path: String, headers: [(String, String)] = []) async throws -> Reply {
        try await send(.GET, path, headers: headers)
    }

    public func post(_ path: String, json: JSONValue? = nil, headers: [(String, String)] = []) async throws -> Reply {
        try await send(.POST, path, body: json.map { Data($0.jsonText.utf8) }, headers: headers)
    }

    public func send(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = []) async throws -> Reply {
        var reply = Reply(status: 0, body: Data())
        try await exchange(method, path, body: body, headers: headers, whole: true, onPart: { status, chunk in
            reply.status = status
            if let chunk { reply.body.append(contentsOf: chunk.readableBytesView) }
            return true
        }, onHead: { reply.headers = $0.map { (name: $0.name, value: $0.value) } })
        return reply
    }

    /// Sends one request and feeds the response to `onPart` as it arrives
    /// (status, then body chunks); `onPart` returns false to stop reading.
    /// `onHead` sees the response's headers before the first `onPart`.
    /// `whole`: the response is read to its end before the first `onPart`
    /// (fewer wake-ups; not for a stream that never ends).
    public func exchange(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = [], whole: Bool = false,
                  onPart: (Int, ByteBuffer?) async throws -> Bool, onHead: (HTTPHeaders) -> Void = { _ in }) async throws {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        let own = Set(headers.map { $0.0.lowercased() })
        switch target {
        case _ where own.contains("host"):
            if case .tcp = target, let token, !own.contains("authorization") {
                head.headers.add(name: "Authorization", value: "Bearer \(token)")
            }
        case let .tcp(host, port):
            // The gateway checks that Host names it (DNS rebinding).
            head.headers.add(name: "Host", value: "\(host.contains(":") ? "[\(host)]" : host):\(port)")
            if let token, !own.contains("authorization") {
                head.headers.add(name: "Authorization", value: "Bearer \(token)")
            }
        case .unix:
            head.headers.add(name: "Host", value: "localhost")
        }
        for (k, v) in headers { head.headers.add(name: k, value: v) }
        if method != .GET, method != .HEAD, !own.contains("content-type") {
            // Also on a POST without a body: the gateway takes only JSON for what changes state.
            head.headers.add(name: "Content-Type", value: "application/json")
        }
        if let body { head.headers.add(name: "Content-Length", value: "\(body.count)") }
        // One write: a server may answer (and close) as soon as it has the head.
        var parts: [HTTPClientRequestPart] = [.head(head)]
        if let body { parts.append(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
        parts.append(.end(nil))
        while true {
            let reused: Bool
            let connection: KeptConnection
            if let idle = connections.take() {
                (connection, reused) = (idle, true)
            } else {
                do { connection = try await KeptConnection.connect(target) } catch {
                    throw Failure(description: "cannot reach the gateway at \(display): \(error)")
                }
                reused = false
            }
            var received = false
            var ended = false
            var status = 0
            do {
                for try await part in connection.send(parts, whole: whole) {
                    received = true
                    switch part {
                    case let .head(h):
                        status = Int(h.status.code)
                        onHead(h.headers)
                        guard try await onPart(status, nil) else {
                            connection.close()
                            return
                        }
                    case let .body(chunk):
                        guard try await onPart(status, chunk) else {
                            connection.close()
                            return
                        }
                    case .end:
                        ended = true
                    }
                }
            } catch {
                connection.close()
                // A kept connection the gateway closed while it sat idle
                // (server.idleTimeoutSeconds) fails before any answer: the request
                // never reached a handler, so it goes again on another connection.
                // But a gateway that stopped mid-request fails the same way, so
                // only a request that may be applied twice is sent again: a POST
                // without an Idempotency-Key could start a second run.
                guard reused, !received else { throw error }
                guard Self.mayRepeat(method, own) else {
                    throw Failure(description: "the gateway at \(display) closed the connection before answering \(method) \(path); "
                        + "it may or may not have acted on it (send an Idempotency-Key to make a retry safe)")
                }
                continue
            }
            guard ended else {
                // The stream stops short only when this task was cancelled: the rest
                // of the response would be the next request's start.
                connection.close()
                throw CancellationError()
            }
            connections.give(connection)
            return
        }
    }
}

extension GatewayClient {
    /// Whether a request may go again after its connection failed before any
    /// answer (RFC 9110, 9.2.2): an idempotent method, or one with a key the
    /// gateway deduplicates by.
    static func mayRepeat(_ method: HTTPMethod, _ headerNames: Set<String>) -> Bool {
        switch method {
        case .GET, .HEAD, .PUT, .DELETE, .OPTIONS: true
        default: headerNames.contains("idempotency-key")
        }
    }
}

/// `stateDir/gateway.json`, as a running gateway writes it.
public struct Discovery: Codable, Sendable {
    public var url: String
    public var socket: String
    public var pid: Int32
    public var version: String
    public var startedAt: Double
}
