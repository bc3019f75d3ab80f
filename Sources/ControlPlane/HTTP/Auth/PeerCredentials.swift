import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Who is at the other end of a Unix socket, in the kernel's word
/// (SO_PEERCRED: the process that connected, whatever it did since). The API's
/// socket and the egress proxy both decide by it.
///
/// The layout is Linux's `struct ucred` (pid_t, uid_t, gid_t: three 32-bit
/// fields, no padding), which Glibc's Swift module does not export:
/// `getsockopt` fills it by size, so the layout is all that must match.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0

    /// nil when the channel is not a socket NIO can ask.
    static func of(_ channel: any Channel) -> EventLoopFuture<PeerCredentials>? {
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        return provider.unsafeGetSocketOption(level: .socket, name: .init(rawValue: SO_PEERCRED))
    }
}
