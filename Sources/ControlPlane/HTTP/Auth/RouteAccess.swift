import HTTPTypes

/// The scope each route needs: one table, read top to bottom. Health checks are
/// public (load balancers and service managers probe them without a token);
/// every other read needs `viewer`; what changes state needs `operator`, and
/// what changes the gateway itself needs `admin`.
enum RouteAccess {
    static let publicPaths: Set<String> = ["/health", "/healthz", "/readyz", "/openapi.yaml"]
    /// Changes to the gateway itself: its config, and the code it runs.
    static let adminPaths: Set<String> = ["/registry/reload", "/gateway/reload", "/v1/config"]

    /// nil: public.
    static func required(_ method: HTTPRequest.Method, _ raw: String) -> Scope? {
        let path = canonical(raw)
        let reads = method == .get || method == .head
        if reads, publicPaths.contains(path) { return nil }
        // A webhook fires a run whatever its method (public ones never get here).
        if path.hasPrefix("/hooks/") { return .operator }
        if reads { return .viewer }
        if adminPaths.contains(path) { return .admin }
        // Registering, replacing or removing a workflow puts code in front of the workers.
        if path.hasPrefix("/v1/workflows/"), path != "/v1/workflows/validate" { return .admin }
        return .operator
    }

    /// The path as the router matches it: the router skips empty segments, so
    /// `/v1/config/` and `//gateway/reload` reach the same handlers as their
    /// plain spellings, and must need the same scope.
    static func canonical(_ path: String) -> String {
        "/" + path.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
    }

    /// Whether a request of this method changes state (and so must prove it is
    /// not a browser's cross-site form post).
    static func changesState(_ method: HTTPRequest.Method) -> Bool {
        !(method == .get || method == .head || method == .options)
    }
}
