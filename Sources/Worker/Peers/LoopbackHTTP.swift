import Foundation
import Synchronization
import NIOCore
import NIOHTTP1
import NIOPosix
import Workflow

/// A small HTTP/1.1 server on the worker's loopback, for what a step's peer
/// reaches through the worker (the MCP gate, the provider relay). Hand-written
/// on SwiftNIO's HTTP/1 codec: Hummingbird is the control plane's, and these
/// servers need one route each, bodies held whole (up to `maxBody`, else 413).
enum LoopbackHTTP {
    struct Reply: Sendable {
        var status: HTTPResponseStatus
        var headers: [(String, String)] = []
        var body: [UInt8] = []

        init(_ status: HTTPResponseStatus, headers: [(String, String)] = [], body: [UInt8] = []) {
            self.status = status
            self.headers = headers
            self.body = body
        }

        init(_ status: HTTPResponseStatus, json: JSONValue) {
            self.init(status, headers: [("Content-Type", "application/json")], body: Array(json.jsonText.utf8))
        }
    }

    typealias Route = @Sendable (HTTPRequestHead, ByteBuffer?) async -> Reply

    /// A listening server and every connection it accepted: `stop` closes them
    /// all, so a connection cannot outlive the step it served.
    final class Server: Sendable {
        let listener: any Channel
        fileprivate let box: ConnectionsBox

        fileprivate init(listener: any Channel, box: ConnectionsBox) {
            self.listener = listener
            self.box = box
        }

        func stop() {
            listener.close(promise: nil)
            let open = box.connections.withLock { c -> [any Channel] in
                c.stopped = true
                defer { c.open = [:] }
                return Array(c.open.values)
            }
            for c in open { c.close(promise: nil) }
        }
    }

    /// At most this many connections at once.
    static let maxConnections = 32

    /// `token`: every request must carry `Authorization: Bearer <token>` (else 401):
    /// the port is the step's, but the worker's loopback is shared by its steps.
    static func bind(port: UInt16, loop: any EventLoop, maxBody: Int, token: String, route: @escaping Route) async throws -> Server {
        let box = ConnectionsBox()
        let listener = try await ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 16)
            .childChannelInitializer { channel in
                let admitted = box.connections.withLock { c -> Bool in
                    guard !c.stopped, c.open.count < maxConnections else { return false }
                    c.open[ObjectIdentifier(channel)] = channel
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in _ = box.connections.withLock { $0.open.removeValue(forKey: ObjectIdentifier(channel)) } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(maxBody: maxBody, token: token, route: route))
                }
            }
            .bind(host: "127.0.0.1", port: Int(port)).get()
        return Server(listener: listener, box: box)
    }

    /// Shares the connection table between the bootstrap's closures and the Server.
    fileprivate final class ConnectionsBox: Sendable {
        let connections = Mutex<(open: [ObjectIdentifier: any Channel], stopped: Bool)>(([:], false))
    }

    /// A fresh bearer token: 32 random bytes as hex (the system's CSPRNG).
    static func newToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(format: "%016llx", g.next() as UInt64) }.joined()
    }

    /// Constant time in the length of `expected`.
    static func matches(_ given: String?, _ expected: String) -> Bool {
        let a = Array((given ?? "").utf8), b = Array(expected.utf8)
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<b.count { diff |= b[i] ^ (i < a.count ? a[i] : 0) }
        return diff == 0
    }

    /// One connection's requests, on its event loop only.
    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let maxBody: Int
        let token: String
        let route: Route
        private var head: HTTPRequestHead?
        private var body: ByteBuffer?
        private var tooLarge = false

        init(maxBody: Int, token: String, route: @escaping Route) {
            self.maxBody = maxBody
            self.token = token
            self.route = route
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case let .head(h):
                (head, body, tooLarge) = (h, context.channel.allocator.buffer(capacity: 0), false)
            case var .body(chunk):
                guard !tooLarge else { return }
                if (body?.readableBytes ?? 0) + chunk.readableBytes > maxBody {
                    tooLarge = true
                    body = nil
                } else {
                    body?.writeBuffer(&chunk)
                }
            case .end:
                guard let h = head else { return }
                let (b, large) = (body, tooLarge)
                (head, body, tooLarge) = (nil, nil, false)
                let channel = context.channel
                if large { return LoopbackHTTP.send(channel, Reply(.payloadTooLarge)) }
                guard LoopbackHTTP.matches(h.headers.first(name: "Authorization"), "Bearer " + token) else {
                    return LoopbackHTTP.send(channel, Reply(.unauthorized))
                }
                let route = self.route
                Task { LoopbackHTTP.send(channel, await route(h, b)) }
            }
        }
    }

    static func send(_ channel: any Channel, _ reply: Reply) {
        var fields = HTTPHeaders()
        for (name, value) in reply.headers { fields.add(name: name, value: value) }
        fields.replaceOrAdd(name: "Content-Length", value: "\(reply.body.count)")
        let headers = fields
        channel.eventLoop.execute {
            channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: reply.status, headers: headers)), promise: nil)
            if !reply.body.isEmpty {
                var buffer = channel.allocator.buffer(capacity: reply.body.count)
                buffer.writeBytes(reply.body)
                channel.write(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
            }
            channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: nil)
        }
    }
}
