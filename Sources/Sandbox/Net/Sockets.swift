import CSandbox
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Small blocking socket helpers for the egress path (the worker's forwarder and
/// the control plane's proxy). Blocking on threads of their own, on purpose:
/// see relay.c.
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

    public static func peerCredentials(_ fd: Int32) -> (pid: Int32, uid: UInt32)? {
        var pid: pid_t = 0
        var uid: uid_t = 0
        return sk_peercred(fd, &pid, &uid) == 0 ? (pid, uid) : nil
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

    /// A listening Unix socket at `path` (replacing a stale one), with `mode`.
    public static func listenUnix(path: String, mode: mode_t) throws -> Int32 {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        var addr = try unixAddress(path)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0, chmod(path, mode) == 0, listen(fd, 128) == 0 else {
            let f = Failure("bind \(path)")
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

    /// Reads until `terminator` (included) or `max` bytes; nil on EOF/error/overflow.
    public static func readUntil(_ fd: Int32, _ terminator: [UInt8], max: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var byte: UInt8 = 0
        while out.count < max {
            let n = read(fd, &byte, 1)
            if n < 0, errno == EINTR { continue }
            guard n == 1 else { return nil }
            out.append(byte)
            if out.count >= terminator.count, Array(out.suffix(terminator.count)) == terminator { return out }
        }
        return nil
    }
}
