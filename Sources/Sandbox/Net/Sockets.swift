import CSandbox
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Small blocking socket helpers for the worker's egress forwarder: a
/// connection or two per step, on threads of their own inside the sandbox,
/// where starting an event loop per step would cost more than it saves.
public enum Sockets {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ what: String) { description = "\(what): \(String(cString: strerror(errno)))" }
        public init(description: String) { self.description = description }
    }

    /// Copies both ways until both sides are done.
    @discardableResult
    public static func relay(_ a: Int32, _ b: Int32, idleTimeoutMs: Int32 = 300_000) -> Int64 {
        sk_relay(a, b, idleTimeoutMs)
    }

    /// A listening TCP socket on 127.0.0.1:`port`.
    public static func listenLoopback(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0, listen(fd, 64) == 0 else {
            let f = Failure("bind 127.0.0.1:\(port)")
            close(fd)
            throw f
        }
        return fd
    }

    public static func connectUnix(path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        var addr = try unixAddress(path)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0 else {
            let f = Failure("connect \(path)")
            close(fd)
            throw f
        }
        return fd
    }

    static func unixAddress(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw Failure("socket path too long") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return addr
    }

    public static func writeAll(_ fd: Int32, _ data: [UInt8]) -> Bool {
        var off = 0
        while off < data.count {
            let n = data.withUnsafeBytes { write(fd, $0.baseAddress! + off, data.count - off) }
            if n < 0 { if errno == EINTR { continue }; return false }
            off += n
        }
        return true
    }
}
