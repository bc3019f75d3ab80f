import Foundation
import NIOCore
import NIOHTTP1
import Wire
import Workflow

/// An agent's door to its model provider: plain HTTP on the worker's loopback
/// (the agent's `OPENAI_BASE_URL`), each request handed to the control plane,
/// which sends it to the provider config names with the provider's key. The
/// key never enters the sandbox; the agent holds a placeholder.
final class ProviderRelayServer: Sendable {
    let port: UInt16
    private let channel: any Channel

    /// Request and answer bodies are held whole, up to this.
    static let maxBody = 16 << 20
    /// What the agent's key variable holds: SDKs want one, the relay ignores it.
    static let placeholderKey = "skelm-relay-holds-the-key"

    static func start(loop: any EventLoop, send: @escaping @Sendable (ProviderRelay.Params) async throws -> HTTPFetch.Result,
                      params: @escaping @Sendable (String, String, [Header], String?) -> ProviderRelay.Params) async throws -> ProviderRelayServer {
        let port = try EgressForwarder.reservePort()
        do {
            let channel = try await LoopbackHTTP.bind(port: port, loop: loop, maxBody: maxBody) { head, body in
                // Only what describes the body is passed on: never the agent's Authorization.
                let headers = head.headers.filter { ["content-type", "accept"].contains($0.name.lowercased()) }.map { Header($0.name, $0.value) }
                let encoded = body.flatMap { $0.readableBytes > 0 ? Data($0.readableBytesView).base64EncodedString() : nil }
                do {
                    let result = try await send(params(head.method.rawValue, head.uri, headers, encoded))
                    let kept = result.headers.filter { ["content-type"].contains($0.name.lowercased()) }.map { ($0.name, $0.value) }
                    return .init(HTTPResponseStatus(statusCode: result.status), headers: kept, body: Array(Data(base64Encoded: result.body) ?? Data()))
                } catch let e as RPCError {
                    let status: HTTPResponseStatus = e.code == RPCError.notAllowed ? .forbidden : .badGateway
                    return .init(status, json: ["error": ["message": .string(e.message), "type": "skelm_relay"]])
                } catch {
                    return .init(.badGateway, json: ["error": ["message": .string("\(error)"), "type": "skelm_relay"]])
                }
            }
            return ProviderRelayServer(port: port, channel: channel)
        } catch {
            EgressForwarder.releasePort(port)
            throw error
        }
    }

    private init(port: UInt16, channel: any Channel) {
        self.port = port
        self.channel = channel
    }

    func stop() {
        channel.close(promise: nil)
        EgressForwarder.releasePort(port)
    }
}
