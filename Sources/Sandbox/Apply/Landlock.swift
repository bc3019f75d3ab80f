import CSandbox

#if canImport(Glibc)
import Glibc
#endif

/// A Landlock ruleset: what the calling thread (and every process it forks) may touch.
public struct LandlockRuleset: Sendable {
    public var readPaths: [String]
    public var writePaths: [String]
    public var connectPorts: [UInt16]

    public init(readPaths: [String], writePaths: [String], connectPorts: [UInt16] = []) {
        self.readPaths = readPaths
        self.writePaths = writePaths
        self.connectPorts = connectPorts
    }

    /// System paths read-only, `writable` read-write, nothing else.
    public static func confined(writable: [String], readable: [String] = [], connectPorts: [UInt16] = []) -> LandlockRuleset {
        LandlockRuleset(readPaths: SystemPaths.readOnly + readable,
                        writePaths: SystemPaths.readWrite + writable, connectPorts: connectPorts)
    }

    public static var kernelABI: Int { Int(sk_landlock_abi()) }

    /// Restricts the calling thread. Landlock binds one thread: call it before any
    /// other thread exists, or on the thread that will fork the confined process.
    /// Returns the ABI applied.
    public func restrictSelf() throws(SandboxError) -> Int {
        let paths = readPaths.map { ($0, Int32(0)) } + writePaths.map { ($0, Int32(1)) }
        let cStrings = paths.map { strdup($0.0)! }
        defer { cStrings.forEach { free($0) } }
        var rules = zip(cStrings, paths).map { sk_landlock_rule_t(path: UnsafePointer($0.0), writable: $0.1.1) }
        var err = [CChar](repeating: 0, count: 256)
        let r = rules.withUnsafeMutableBufferPointer { rb in
            connectPorts.withUnsafeBufferPointer { pb in
                sk_landlock_restrict(rb.baseAddress, rb.count, pb.baseAddress, pb.count, &err, err.count)
            }
        }
        if r < 0 { throw SandboxError.layer(.landlock, String(cBuffer: err)) }
        return Int(r)
    }
}
