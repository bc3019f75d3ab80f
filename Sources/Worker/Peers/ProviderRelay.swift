import Foundation
import Synchronization
import NIOCore
import NIOHTTP1
import Wire
import Workflow

/// An agent's door to its model provider: plain HTTP on the worker's loopback
/// (the agent's `OPENAI_BASE_URL`), each request handed to the control plane,
/// which sends it to the provider config names with the provider's key. The
/// key never enters the sandbox: the agent holds a token of this step's that
/// opens the relay and nothing else.
final class ProviderRelayServer: Sendable {
    let port: UInt16
    /// What the agent holds as its key: it opens the relay, and nothing else.
    let token: String
    private let server: LoopbackHTTP.Server
    private let stopped = Mutex(false)

    /// Request and answer bodies are held whole, up to this.
    static let maxBody = 16 << 20

    static func start(loop: any EventLoop, send: @escaping @Sendable (ProviderRelay.Params) async throws -> HTTPFetch.Result,
                      params: @escaping @Sendable (String, String, [Header], String?) -> ProviderRelay.Params) async throws -> ProviderRelayServer {
        let port = try EgressForwarder.reservePort()
        let token = LoopbackHTTP.newToken()
        do {
            let server = try await LoopbackHTTP.bind(port: port, loop: loop, maxBody: maxBody, token: token) { head, body in
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
            return ProviderRelayServer(port: port, token: token, server: server)
        } catch {
            EgressForwarder.releasePort(port)
            throw error
        }
    }

    private init(port: UInt16, token: String, server: LoopbackHTTP.Server) {
        self.port = port
        self.token = token
        self.server = server
    }

    /// Idempotent.
    func stop() {
        guard stopped.withLock({ s -> Bool in defer { s = true }; return !s }) else { return }
        server.stop()
        EgressForwarder.releasePort(port)
    }
}
