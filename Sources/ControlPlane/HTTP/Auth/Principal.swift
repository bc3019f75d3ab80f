/// Who made a request, as the gateway established it (never as the request
/// says): recorded as the actor of what the request does in the audit chain.
public struct Principal: Sendable, Equatable {
    public enum Via: Sendable, Equatable {
        /// `stateDir/gateway.sock`, admitted by the peer's credentials.
        case unixSocket(uid: UInt32)
        /// TCP with a bearer token of config.
        case token(name: String)
        /// TCP on a loopback host with authentication off.
        case loopback
    }

    public let via: Via
    public let scope: Scope
    /// `unix:<user>`, `token:<name>` or `loopback`.
    public let name: String
}
