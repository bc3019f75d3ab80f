import Foundation
import Sandbox

#if canImport(Glibc)
import Glibc
#endif

extension Gateway {
    /// `GET /gateway/status` and `skelm gateway status`: what an operator
    /// checks first. Unlike `/health` it needs a caller: it names paths and pids.
    public struct Status: Encodable, Sendable {
        public enum State: String, Encodable, Sendable { case starting, running, paused, draining }
        let state: State
        /// This gateway's pause, else the fleet's.
        let pause: Admission.Pause?
        /// Its id among gateways sharing a database (`storage.gatewayId`).
        let gateway: String
        /// Whether it fires the time-based triggers (always, alone on SQLite).
        let leader: Bool
        let pid: Int32
        let version: String
        let url: String?
        let socket: String
        let startedAt: Date
        let uptimeSeconds: Double
        let configPath: String?
        let stateDir: String
        let workers: Workers
        let runs: Runs
        let sandbox: SandboxInfo

        struct Workers: Encodable, Sendable {
            let live: Int, idle: Int, busy: Int, minSpare: Int, max: Int
        }
        struct Runs: Encodable, Sendable {
            let queued: Int, running: Int, maxConcurrent: Int
        }
        struct SandboxInfo: Encodable, Sendable {
            /// Layers every worker must have (else it is refused).
            let required: [String]
            /// Layers the live workers report having now.
            let active: [String]
        }
    }

    public func status() async -> Status {
        let state: Status.State = switch readiness.current {
        case .starting: .starting
        case .draining: .draining
        case .ready: admission.paused == nil ? .running : .paused
        }
        let w = await pool.counts
        let r = await runs.counts
        let host = config.server.host
        let url = port.map { "http://\(host.contains(":") ? "[\(host)]" : host):\($0)" }
        return Status(state: state, pause: admission.paused, gateway: store.member, leader: role.leads, pid: getpid(), version: SkelmVersion.string, url: url,
                      socket: socketPath, startedAt: startedAt, uptimeSeconds: Date().timeIntervalSince(startedAt).rounded(),
                      configPath: configPath.map { URL(fileURLWithPath: $0).standardizedFileURL.path }, stateDir: stateDir,
                      workers: .init(live: w.live, idle: w.idle, busy: w.busy, minSpare: pool.tunables.minSpare,
                                     max: pool.tunables.max),
                      runs: .init(queued: r.queued, running: r.running, maxConcurrent: runs.maxConcurrent),
                      sandbox: .init(required: pool.configuration.require.map(\.rawValue).sorted(),
                                     active: Set(await pool.snapshot().flatMap(\.layers)).sorted()))
    }
}
