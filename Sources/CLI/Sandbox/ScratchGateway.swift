import ControlPlane
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A gateway of its own for the diagnostics (`skelm doctor`, `skelm sandbox
/// exec`): a fresh state dir under /tmp, a worker uid range derived from it, its
/// workspaces and egress socket inside it. It never opens, writes or unlinks
/// anything in the configured state dir, so running a diagnostic next to a live
/// gateway cannot disturb that gateway's egress socket, audit chain or database.
struct ScratchGateway {
    let gateway: Gateway
    let dir: String

    init(_ loaded: ConfigLoader.Loaded, logger: Logger, adjust: (inout GatewayConfig) -> Void) throws {
        var template = Array("/tmp/skelm-scratch-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw CLIFailure("cannot make a scratch state dir in /tmp: \(String(cString: strerror(errno)))")
        }
        dir = String(cString: made)
        var config = loaded.config
        config.workers.uidBase = nil
        config.workers.workspaceRoot = nil
        // Its runs are throwaway: they never reach a shared PostgreSQL store.
        config.storage = .init()
        adjust(&config)
        do {
            gateway = try Gateway(loaded: .init(config: config, path: loaded.path, stateDir: dir), logger: logger)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    /// Stops the gateway; removes its state unless `keep` (a kept workspace lives there).
    func finish(keep: Bool = false) async {
        await gateway.stop(drain: .seconds(1))
        if !keep { try? FileManager.default.removeItem(atPath: dir) }
    }
}
