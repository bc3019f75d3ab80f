import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Wire
import Workflow

/// JSON-RPC 2.0 over newline-delimited JSON on a peer's stdio: what ACP
/// speaks. Written here because no listed library speaks ACP; MCP goes
/// through modelcontextprotocol/swift-sdk instead.
///
/// One ordered inbound loop: the peer's notifications are handed over in the
/// order it wrote them, and a response resumes its caller only after every
/// line before it was handled, so a turn's updates are all seen before the
/// turn's answer. The peer's own requests carry ids of its own numbering
/// (from 0), kept apart from ours: a line with a method is the peer's, a line
/// without one answers us.
final class LineRPC: Sendable {
    struct RemoteError: Error, CustomStringConvertible {
        let code: Int
        let message: String
        var description: String { "\(message) (\(code))" }
    }

    struct Closed: Error, CustomStringConvertible {
        let description: String
    }

    /// What the peer's requests get back.
    enum Reply: Sendable {
        case result(JSONValue)
        case error(code: Int, message: String)
    }

    typealias RequestHandler = @Sendable (_ method: String, _ params: JSONValue) async -> Reply
    typealias NotificationHandler = @Sendable (_ method: String, _ params: JSONValue) -> Void

    /// A line longer than this closes the connection (messages can be megabytes).
    static let maxLine = 64 << 20
    /// Lines that are not JSON-RPC before the peer is given up on.
    static let maxMalformed = 100

    private struct State {
        var nextId: Int64 = 1
        var pending: [Int64: CheckedContinuation<JSONValue, any Error>] = [:]
        var closed: String?
        var malformed = 0
    }

    private let channel: any Channel
    private let state = Mutex(State())
    private let onRequest: RequestHandler
    private let onNotification: NotificationHandler
    /// Called once when a line cannot be used, with what it was (for the step's events).
    private let onMalformed: @Sendable (String) -> Void

    private init(channel: any Channel, onRequest: @escaping RequestHandler, onNotification: @escaping NotificationHandler,
                 onMalformed: @escaping @Sendable (String) -> Void) {
        self.channel = channel
        self.onRequest = onRequest
        self.onNotification = onNotification
        self.onMalformed = onMalformed
    }

    /// Takes ownership of the two descriptors.
    static func connect(input: Int32, output: Int32, loop: any EventLoop, onRequest: @escaping RequestHandler,
                        onNotification: @escaping NotificationHandler,
                        onMalformed: @escaping @Sendable (String) -> Void) async throws -> LineRPC {
        let box = Mutex<LineRPC?>(nil)
        // Nothing is read until the connection is in place: a peer that exits
        // at once must not have its end of stream land before anyone hears it.
        let channel = try await NIOPipeBootstrap(group: loop)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder(limit: maxLine)))
                    try channel.pipeline.syncOperations.addHandler(Inbound { event in
                        box.withLock { $0 }?.receive(event)
                    })
                }
            }
            .takingOwnershipOfDescriptors(input: input, output: output).get()
        let rpc = LineRPC(channel: channel, onRequest: onRequest, onNotification: onNotification, onMalformed: onMalformed)
        box.withLock { $0 = rpc }
        try await channel.setOption(ChannelOptions.autoRead, value: true).get()
        return rpc
    }

    var isClosed: Bool { state.withLock { $0.closed != nil } }

    /// A request; the answer's `result`, or its `error` thrown as RemoteError.
    func call(_ method: String, _ params: JSONValue) async throws -> JSONValue {
        try await withCheckedThrowingContinuation { cont in
            let id: Int64? = state.withLock { s in
                if let why = s.closed {
                    cont.resume(throwing: Closed(description: why))
                    return nil
                }
                let id = s.nextId
                s.nextId += 1
                s.pending[id] = cont
                return id
            }
            guard let id else { return }
            write(["jsonrpc": "2.0", "id": .number(Double(id)), "method": .string(method), "params": params])
        }
    }

    func notify(_ method: String, _ params: JSONValue) {
        write(["jsonrpc": "2.0", "method": .string(method), "params": params])
    }

    func close() {
        fail(all: "the connection was closed")
        channel.close(promise: nil)
    }

    private func write(_ message: JSONValue) {
        var buffer = channel.allocator.buffer(capacity: 256)
        buffer.writeString(message.jsonText)
        buffer.writeInteger(UInt8(ascii: "\n"))
        channel.writeAndFlush(buffer, promise: nil)
    }

    private func fail(all why: String) {
        let pending = state.withLock { s -> [CheckedContinuation<JSONValue, any Error>] in
            if s.closed == nil { s.closed = why }
            defer { s.pending = [:] }
            return Array(s.pending.values)
        }
        for p in pending { p.resume(throwing: Closed(description: why)) }
    }

    // MARK: Inbound, in order, on the channel's event loop

    private func receive(_ event: Inbound.Event) {
        switch event {
        case let .line(text):
            handle(text)
        case let .closed(why):
            fail(all: why)
        }
    }

    private func handle(_ text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return }
        guard let message = JSONValue.parse(trimmed), case let .object(fields) = message, fields["jsonrpc"] == "2.0" else {
            malformed(trimmed)
            return
        }
        if case let .string(method)? = fields["method"] {
            let params = fields["params"] ?? .null
            guard let id = fields["id"] else {
                onNotification(method, params)
                return
            }
            // The peer's own request: answered when served, without holding up the lines after it.
            Task { [onRequest] in
                let reply = await onRequest(method, params)
                switch reply {
                case let .result(value):
                    write(["jsonrpc": "2.0", "id": id, "result": value])
                case let .error(code, message):
                    write(["jsonrpc": "2.0", "id": id, "error": ["code": .number(Double(code)), "message": .string(message)]])
                }
            }
            return
        }
        guard case let .number(n)? = fields["id"], let id = Int64(exactly: n) else {
            malformed(trimmed)
            return
        }
        let cont = state.withLock { $0.pending.removeValue(forKey: id) }
        guard let cont else { return }  // late, or for a call that already gave up
        if let error = fields["error"] {
            var code = -32603
            if case let .number(c)? = error["code"], let exact = Int(exactly: c) { code = exact }
            cont.resume(throwing: RemoteError(code: code, message: error["message"]?.stringValue ?? "error"))
        } else {
            cont.resume(returning: fields["result"] ?? .null)
        }
    }

    /// Skipped, as ACP peers skip such lines of ours: answering `-32700`
    /// with a null id would only add noise to a stream that has lost its place.
    private func malformed(_ text: String) {
        let count = state.withLock { s -> Int in
            s.malformed += 1
            return s.malformed
        }
        if count == 1 { onMalformed(String(text.prefix(200))) }
        if count > Self.maxMalformed {
            fail(all: "the peer sent more than \(Self.maxMalformed) lines that are not JSON-RPC")
            channel.close(promise: nil)
        }
    }
}

/// Splits the peer's stdout into lines, refusing one longer than `limit`.
private struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let limit: Int
    var scanned = 0

    init(limit: Int) { self.limit = limit }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        if let i = view.dropFirst(scanned).firstIndex(of: UInt8(ascii: "\n")) {
            let length = i - view.startIndex
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            scanned = 0
            context.fireChannelRead(wrapInboundOut(line))
            return .continue
        }
        scanned = view.count
        if view.count > limit { throw LineTooLong(limit: limit) }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A last line without its newline still counts.
        if buffer.readableBytes > 0, let rest = buffer.readSlice(length: buffer.readableBytes) {
            scanned = 0
            context.fireChannelRead(wrapInboundOut(rest))
        }
        return .needMoreData
    }

    struct LineTooLong: Error, CustomStringConvertible {
        let limit: Int
        var description: String { "the peer wrote a line longer than \(limit >> 20) MiB" }
    }
}

/// Lines and the end of the stream, handed to the connection in order.
private final class Inbound: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    enum Event { case line(String), closed(String) }
    let sink: @Sendable (Event) -> Void

    init(_ sink: @escaping @Sendable (Event) -> Void) { self.sink = sink }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        sink(.line(String(buffer: buffer)))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        sink(.closed("\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        sink(.closed("the peer closed its output"))
        context.fireChannelInactive()
    }
}
