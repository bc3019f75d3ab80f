import Hummingbird
import NIOCore

/// The request context of every route: Hummingbird's core storage, the channel
/// the request came on (the authenticator asks a Unix socket for its peer's
/// credentials), and the caller once the authenticator has decided.
struct GatewayContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    /// Set by `AuthMiddleware` before any route runs.
    var principal: Principal?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The caller; only routes behind `AuthMiddleware` ask, so it is always set.
    var caller: Principal {
        principal ?? Principal(via: .loopback, scope: .viewer, name: "unknown")
    }
}
