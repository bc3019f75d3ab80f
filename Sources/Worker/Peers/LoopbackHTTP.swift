import Foundation
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

    static func bind(port: UInt16, loop: any EventLoop, maxBody: Int, route: @escaping Route) async throws -> any Channel {
        try await ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(maxBody: maxBody, route: route))
                }
            }
            .bind(host: "127.0.0.1", port: Int(port)).get()
    }

    /// One connection's requests, on its event loop only.
    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let maxBody: Int
        let route: Route
        private var head: HTTPRequestHead?
        private var body: ByteBuffer?
        private var tooLarge = false

        init(maxBody: Int, route: @escaping Route) {
            self.maxBody = maxBody
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
