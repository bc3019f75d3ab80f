import Hummingbird

/// Runs before every route: establishes the caller (`Authenticator`) and puts
/// it in the context, or answers 401/403/415 without reaching the route.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let authenticator: Authenticator

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        var context = context
        context.principal = try await authenticator.authenticate(request, channel: context.channel)
        return try await next(request, context)
    }
}
