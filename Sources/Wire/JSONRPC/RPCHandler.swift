import Foundation

/// A request or notification as it arrived: its method, id, and the raw frame its
/// params are decoded from once the handler knows their type.
public struct RPCIncoming: Sendable {
    public let method: String
    /// Nil for a notification.
    public let id: RPCID?
    let frame: Data

    /// Decodes `params` as `P`; a missing `params` decodes as `{}`.
    /// Throws an `invalidParams` error that names what did not fit.
    public func params<P: Decodable>(as type: P.Type) throws(RPCError) -> P {
        do {
            return try JSONDecoder().decode(ParamsOf<P>.self, from: frame).params
        } catch let DecodingError.keyNotFound(key, ctx) where key.stringValue == "params" && ctx.codingPath.isEmpty {
            if let empty = try? JSONDecoder().decode(P.self, from: Data("{}".utf8)) { return empty }
            throw RPCError(code: RPCError.invalidParams, message: "\(method): params are required")
        } catch {
            throw RPCError(code: RPCError.invalidParams, message: "\(method): \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        func path(_ p: [any CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        switch error {
        case let DecodingError.keyNotFound(key, ctx): return "missing \(path(ctx.codingPath + [key]))"
        case let DecodingError.typeMismatch(type, ctx): return "\(path(ctx.codingPath)) is not a \(type)"
        case let DecodingError.valueNotFound(type, ctx): return "\(path(ctx.codingPath)) must be a \(type), not null"
        case let DecodingError.dataCorrupted(ctx): return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        default: return "\(error)"
        }
    }
}

/// What a request handler answers: a result to encode, or an error.
public enum RPCReply: Sendable {
    case result(any Encodable & Sendable)
    case error(RPCError)
}

/// The meaning side of a connection. The peer handles framing and envelopes and
/// hands over well-formed messages; what they mean is up to the conformer.
public protocol RPCHandler: Sendable {
    /// Called on the connection's event loop as a request's frame is read,
    /// before it is handed to `handle(request:)`, which runs later on a task of
    /// its own: a reply here answers the request at once, and it is never
    /// handled. What is judged here is judged in the order the frames came,
    /// not in the order their tasks happen to run. Must not block.
    func admit(request: RPCIncoming, from peer: RPCPeer) -> RPCReply?
    func handle(request: RPCIncoming, from peer: RPCPeer) async -> RPCReply
    /// Notifications are delivered one at a time, in the order they arrived.
    func handle(notification: RPCIncoming, from peer: RPCPeer) async
    /// A malformed message or a transport failure. The peer has already answered
    /// (or closed, for transport failures); a stricter side may close it.
    func protocolError(_ error: any Error, from peer: RPCPeer)
}

extension RPCHandler {
    public func admit(request: RPCIncoming, from peer: RPCPeer) -> RPCReply? { nil }
    public func protocolError(_ error: any Error, from peer: RPCPeer) {}
}

/// Maps method names to typed closures; anything unregistered answers -32601.
public struct RPCRouter: RPCHandler {
    public typealias RequestBody = @Sendable (RPCIncoming, RPCPeer) async -> RPCReply
    public typealias NotificationBody = @Sendable (RPCIncoming, RPCPeer) async -> Void

    private var requests: [String: RequestBody] = [:]
    private var notifications: [String: NotificationBody] = [:]
    private var onProtocolError: (@Sendable (any Error, RPCPeer) -> Void)?

    public init() {}

    public mutating func on<M: RPCMethod>(_ method: M.Type, _ body: @escaping @Sendable (M.Params, RPCPeer) async throws -> M.Result) {
        requests[M.name] = { incoming, peer in
            do {
                let params = try incoming.params(as: M.Params.self)
                return .result(try await body(params, peer))
            } catch let error as RPCError {
                return .error(error)
            } catch {
                return .error(RPCError(code: RPCError.internalError, message: "\(error)"))
            }
        }
    }

    public mutating func on<N: RPCNotificationMethod>(_ method: N.Type, _ body: @escaping @Sendable (N.Params, RPCPeer) async -> Void) {
        notifications[N.name] = { incoming, peer in
            guard let params = try? incoming.params(as: N.Params.self) else { return }
            await body(params, peer)
        }
    }

    public mutating func onProtocolError(_ body: @escaping @Sendable (any Error, RPCPeer) -> Void) {
        onProtocolError = body
    }

    public func handle(request: RPCIncoming, from peer: RPCPeer) async -> RPCReply {
        guard let body = requests[request.method] else {
            return .error(RPCError(code: RPCError.methodNotFound, message: "unknown method \(request.method)"))
        }
        return await body(request, peer)
    }

    public func handle(notification: RPCIncoming, from peer: RPCPeer) async {
        await notifications[notification.method]?(notification, peer)
    }

    public func protocolError(_ error: any Error, from peer: RPCPeer) {
        onProtocolError?(error, peer)
    }
}
