/// A JSON-RPC 2.0 error object. Standard codes are the spec's; ours start at -32000.
public struct RPCError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var message: String

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    public static let parseError = -32700
    public static let invalidRequest = -32600
    public static let methodNotFound = -32601
    public static let invalidParams = -32602
    public static let internalError = -32603
    /// The method exists but is not allowed in the peer's current state.
    public static let notAllowed = -32001
    /// The thing asked for (a secret) does not exist.
    public static let notFound = -32004
    /// A step could not be started (missing program, permission denied by the kernel).
    public static let execFailed = -32010
    /// The job was refused before it ran (bad workspace, sandbox layer could not be built).
    public static let jobRefused = -32011
    /// The job was cancelled.
    public static let cancelled = -32012
    /// A request the control plane made for a step (http, infer) failed.
    public static let requestFailed = -32013

    public var description: String { "\(message) (\(code))" }
}
