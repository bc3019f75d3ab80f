import CSandbox

#if canImport(Glibc)
import Glibc
#endif

/// A Landlock ruleset: what the calling thread (and every process it forks) may touch.
public struct LandlockRuleset: Sendable {
    public var readPaths: [String]
    public var writePaths: [String]
    public var connectPorts: [UInt16]
    /// When set, nothing may be executed but these files: the paths above lose
    /// their execute right, and only these files get it.
    public var executables: [String]?
    /// TCP ports the thread may bind (the worker's egress forwarders).
    public var bindPorts: [UInt16] = []

    public init(readPaths: [String], writePaths: [String], connectPorts: [UInt16] = [], executables: [String]? = nil) {
        self.readPaths = readPaths
        self.writePaths = writePaths
        self.connectPorts = connectPorts
        self.executables = executables
    }

    /// A step's layer under a permission policy: system paths (but the program
    /// directories) and `fsRead` readable, its workspace, its home and
    /// `fsWrite` writable, and `executables` (plus the dynamic loader they
    /// need) the only files it may execute or read among the programs.
    public static func step(workspace: String, home: String? = nil, fsRead: [String], fsWrite: [String], executables: [String],
                            connectPorts: [UInt16] = []) -> LandlockRuleset {
        LandlockRuleset(readPaths: SystemPaths.policyReadable + fsRead,
                        writePaths: SystemPaths.readWrite + [workspace] + (home.map { [$0] } ?? []) + fsWrite,
                        connectPorts: connectPorts, executables: executables + SystemPaths.dynamicLoaders)
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
        var err = [CChar](repeating: 0, count: 256)
        let r = withCRules { rules in
            connectPorts.withUnsafeBufferPointer { pb in
                bindPorts.withUnsafeBufferPointer { bb in
                    sk_landlock_restrict_net(rules.baseAddress, rules.count, pb.baseAddress, pb.count, bb.baseAddress, bb.count, &err, err.count)
                }
            }
        }
        if r < 0 { throw SandboxError.layer(.landlock, String(cBuffer: err)) }
        return Int(r)
    }

    /// Builds the C rules `restrictSelf` passes to the kernel, without restricting
    /// anything: the worker template runs it so forked workers find it warm.
    public func warmUp() {
        _ = withCRules { $0.count }
    }

    /// The rules as `sk_landlock_rule_t`s, valid inside `body` only: for C code
    /// that applies them itself (the benchmark's floor applies them after a fork).
    public func withCRules<T>(_ body: (UnsafeMutableBufferPointer<sk_landlock_rule_t>) -> T) -> T {
        let paths: [(String, Int32)]
        if let executables {
            paths = readPaths.map { ($0, Int32(SK_LL_READ)) } + writePaths.map { ($0, Int32(SK_LL_WRITE_NOEXEC)) }
                + executables.map { ($0, Int32(SK_LL_READ_EXEC)) }
        } else {
            paths = readPaths.map { ($0, Int32(SK_LL_READ_EXEC)) } + writePaths.map { ($0, Int32(SK_LL_WRITE)) }
        }
        let cStrings = paths.map { strdup($0.0)! }
        defer { cStrings.forEach { free($0) } }
        var rules = zip(cStrings, paths).map { sk_landlock_rule_t(path: UnsafePointer($0.0), writable: $0.1.1) }
        return rules.withUnsafeMutableBufferPointer { body($0) }
    }
}
