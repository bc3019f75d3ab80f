import Wire

/// The privileged side's table of what a worker may ask, and when.
///
/// In the spirit of OpenSSH's monitor: a short enumerated list, each entry naming
/// the states it is allowed in. Anything else from a worker (an unknown method, a
/// method out of its state, a malformed frame, a flood) is a protocol violation,
/// and the worker is killed. Read this table top to bottom before adding to it.
enum WorkerMonitor {
    enum Phase: String, Sendable {
        /// Spawned, sandboxing itself; may only introduce itself.
        case handshaking
        /// Warm and waiting for a job; has nothing to ask.
        case idle
        /// Running its one job.
        case busy
        /// Result delivered; about to exit.
        case finishing
    }

    struct Entry {
        let phases: Set<Phase>
        let once: Bool
    }

    static let table: [String: Entry] = [
        WorkerHello.name: Entry(phases: [.handshaking], once: true),
        // `finishing` too: notifications are handled in order among themselves, but
        // the job's answer is not queued behind them, so the last events of a job
        // are often handled just after its result arrived. The per-job event budget
        // still bounds them, and the channel closes right after.
        EventEmit.name: Entry(phases: [.busy, .finishing], once: false),
        // Checked again by the run service: only a secret the asking step's env names.
        SecretResolve.name: Entry(phases: [.busy], once: false),
        // Checked again by the run service: only a running step of that kind,
        // only under its allowHosts.
        HTTPFetch.name: Entry(phases: [.busy], once: false),
        InferComplete.name: Entry(phases: [.busy], once: false),
        AgentPermission.name: Entry(phases: [.busy], once: false),
        // Checked again by the run service: only a running agent step whose agent names that provider.
        ProviderRelay.name: Entry(phases: [.busy], once: false),
        // A run's step asking for a resident agent's turn or a resident MCP
        // server's call (checked again by the run service); and a resident
        // peer's host asking for work and handing it back.
        AgentTurnRequest.name: Entry(phases: [.busy], once: false),
        MCPResidentRequest.name: Entry(phases: [.busy], once: false),
        ResidentNext.name: Entry(phases: [.busy], once: false),
        ResidentDone.name: Entry(phases: [.busy], once: false),
    ]

    /// Events one job may emit before it counts as a flood.
    static let maxEventsPerJob = 10_000
    /// For a segment with agent steps.
    static let maxEventsPerAgentJob = 100_000

    static func allows(_ method: String, in phase: Phase) -> Bool {
        table[method]?.phases.contains(phase) ?? false
    }
}
