import Wire

/// A sandbox layer could not be built. The process it was for must not run.
public enum SandboxError: Error, CustomStringConvertible, Sendable {
    case layer(SandboxLayer, String)
    case spawn(String)
    case seccompCompile(String)
    /// The worker template is gone (it exited, or its control socket broke).
    case templateGone(String)

    public var description: String {
        switch self {
        case let .layer(layer, why): "\(layer.rawValue): \(why)"
        case let .spawn(why): "worker spawn failed: \(why)"
        case let .seccompCompile(why): "seccomp filter: \(why)"
        case let .templateGone(why): "worker spawn failed: \(why)"
        }
    }
}
