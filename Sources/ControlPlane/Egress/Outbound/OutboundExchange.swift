import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One hop: one connection to the checked address, one request, the response
/// head, and the body unless the response is a redirect. The connection is
/// closed when the hop ends, whichever way it ends, and when the calling task
/// is cancelled.
enum OutboundExchange {
    enum Outcome: Sendable {
        case redirect(status: Int, location: String)
        case final(status: Int, headers: [(name: String, value: String)], body: [UInt8])
    }

    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

    static func run(_ call: OutboundCall, at address: (ip: String, sockaddr: Data), tls: NIOSSLContext, group: any EventLoopGroup,
                    maxBodyBytes: Int, deadline: ContinuousClock.Instant,
                    onBodyChunk: (@Sendable ([UInt8]) async -> Void)?) async throws(OutboundError) -> Outcome {
        guard let target = EgressConnection.socketAddress(address) else {
            throw .connection("\(address.ip) is not an IPv4 or IPv6 address")
        }
        do {
            let channel = try await connect(to: target, url: call.url, tls: tls, group: group, deadline: deadline)
            return try await withTaskCancellationHandler {
                try await channel.executeThenClose { inbound, outbound in
                    var parts: [HTTPClientRequestPart] = [.head(call.head())]
                    if let body = call.body { parts.append(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                    parts.append(.end(nil))
                    // One write; an origin that answers (and closes) before reading the
                    // body fails it, and its answer is still read below.
                    do { try await outbound.write(contentsOf: parts) } catch ChannelError.ioOnClosedChannel {}
                    return try await read(inbound, method: call.method, maxBodyBytes: maxBodyBytes, onBodyChunk: onBodyChunk)
                }
            } onCancel: {
                channel.channel.close(promise: nil)
            }
        } catch {
            throw OutboundError.classify(error, url: call.url, ip: address.ip)
        }
    }

    /// TLS is verified against the URL's host: its name (sent as SNI too) or,
    /// for an IP literal, the address connected to, which is that literal.
    private static func connect(to target: SocketAddress, url: OutboundURL, tls: NIOSSLContext, group: any EventLoopGroup,
                                deadline: ContinuousClock.Instant) async throws -> NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart> {
        let remaining = ContinuousClock.now.duration(to: deadline)
        let (seconds, attoseconds) = remaining.components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue + attoseconds / 1_000_000_000
        let serverName: String? = if case let .name(name) = url.host { name } else { nil }
        let secure = url.scheme == .https
        return try await ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(max(1_000_000, nanos)))
            .connect(to: target) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if secure { try pipeline.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
                    try pipeline.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// The response to the end of its head if it redirects, else to its end,
    /// its body counted (and handed to `onBodyChunk`) as it arrives.
    private static func read(_ inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>, method: String, maxBodyBytes: Int,
                             onBodyChunk: (@Sendable ([UInt8]) async -> Void)?) async throws -> Outcome {
        var status = 0
        var headers: [(name: String, value: String)] = []
        var body: [UInt8] = []
        for try await part in inbound {
            switch part {
            case let .head(head):
                status = Int(head.status.code)
                if redirectStatuses.contains(status), let location = head.headers.first(name: "location") {
                    return .redirect(status: status, location: location)
                }
                headers = head.headers.map { (name: $0.name, value: $0.value) }
                // A body announced too large fails before any of it is read or streamed.
                let bodiless = method == "HEAD" || status == 204 || status == 304
                if !bodiless, let length = head.headers.first(name: "content-length").flatMap(Int.init), length > maxBodyBytes {
                    throw OutboundError.responseTooLarge(limit: maxBodyBytes)
                }
            case let .body(chunk):
                guard chunk.readableBytes <= maxBodyBytes - body.count else {
                    throw OutboundError.responseTooLarge(limit: maxBodyBytes)
                }
                let bytes = Array(chunk.readableBytesView)
                body += bytes
                await onBodyChunk?(bytes)
            case .end:
                return .final(status: status, headers: headers, body: body)
            }
        }
        throw OutboundError.connection("the connection closed before the response was complete")
    }
}
