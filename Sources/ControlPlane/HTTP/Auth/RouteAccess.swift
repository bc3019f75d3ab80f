import HTTPTypes

/// The scope each route needs: one table, read top to bottom. Health checks are
/// public (load balancers and service managers probe them without a token);
/// every other read needs `viewer`; what changes state needs `operator`, and
/// what changes the gateway itself needs `admin`.
enum RouteAccess {
    static let publicPaths: Set<String> = ["/health", "/healthz", "/readyz"]
    static let adminPaths: Set<String> = ["/registry/reload", "/gateway/reload"]

    /// nil: public.
    static func required(_ method: HTTPRequest.Method, _ path: String) -> Scope? {
        let reads = method == .get || method == .head
        if reads, publicPaths.contains(path) { return nil }
        if reads { return .viewer }
        if adminPaths.contains(path) { return .admin }
        return .operator
    }

    /// Whether a request of this method changes state (and so must prove it is
    /// not a browser's cross-site form post).
    static func changesState(_ method: HTTPRequest.Method) -> Bool {
        !(method == .get || method == .head || method == .options)
    }
}
