import Metrics
import Workflow

/// The gateway's instruments, made once against `MetricsBootstrap.registry`.
///
/// Every label takes its values from a fixed set, and every series of that set
/// is made up front: memory cannot grow with what workers or clients send, and
/// a scrape shows a counter at 0 before its first event (so `rate()` and
/// before/after comparisons work from the start).
public final class GatewayMetrics: Sendable {
    public static let shared = GatewayMetrics()

    enum Name {
        static let stepDuration = "skelm_step_duration_seconds"
        static let spawnDuration = "skelm_worker_spawn_seconds"
        static let dispatchDuration = "skelm_worker_dispatch_seconds"
    }

    static let runStatuses = ["succeeded", "failed", "cancelled"]
    static let stepKinds = StepKind.Name.allCases.map(\.rawValue) + ["unknown"]
    static let stepOutcomes = ["succeeded", "failed"]
    static let triggerKinds = TriggerKind.Name.allCases.map(\.rawValue)
    static let triggerOutcomes = ["fired", "buffered", "skipped", "dropped", "error"]
    /// The dimensions of docs/permissions.md; whatever else a worker names is `other`.
    static let permissionDimensions = ["allowedExecutables", "fsRead", "fsWrite", "networkEgress", "secrets", "unrestricted",
                                       "allowedMcpServers", "allowedTools", "allowedSkills", "allowedAgents", "other"]

    let runsStarted: Counter
    let runsResumed: Counter
    let runsFinished: [String: Counter]
    /// By kind, then outcome.
    let stepDurations: [String: [String: Metrics.Timer]]

    let runsQueued: Gauge
    let runsRunning: Gauge
    let approvalsPending: Gauge
    let workersLive: Gauge
    let workersIdle: Gauge
    let workersBusy: Gauge

    let workersSpawned: Counter
    let workerSpawnFailures: Counter
    let workersExited: [WorkerExitCause: Counter]
    let workersDrained: Counter
    let spawnDuration: Metrics.Timer
    let dispatchDuration: Metrics.Timer

    let egressAllowed: Counter
    let egressDenied: Counter
    let permissionDenials: [String: Counter]
    let inferPromptTokens: Counter
    let inferCompletionTokens: Counter
    /// kind → outcome (`triggerOutcomes`).
    let triggerFires: [String: [String: Counter]]
    let webhookRejections: Counter
    let httpConnections: [HTTPListener: Gauge]
    let httpListenerFull: [HTTPListener: Counter]

    private init() {
        let f = MetricsBootstrap.factory
        func counter(_ name: String, _ labels: [(String, String)] = []) -> Counter {
            Counter(label: name, dimensions: labels, factory: f)
        }
        func gauge(_ name: String) -> Gauge { Gauge(label: name, factory: f) }
        func by<K: Hashable>(_ keys: [K], _ make: (K) -> Counter) -> [K: Counter] {
            Dictionary(uniqueKeysWithValues: keys.map { ($0, make($0)) })
        }
        runsStarted = counter("skelm_runs_started_total")
        runsResumed = counter("skelm_runs_resumed_total")
        runsFinished = by(Self.runStatuses) { counter("skelm_runs_finished_total", [("status", $0)]) }
        stepDurations = Dictionary(uniqueKeysWithValues: Self.stepKinds.map { kind in
            (kind, Dictionary(uniqueKeysWithValues: Self.stepOutcomes.map { outcome in
                (outcome, Metrics.Timer(label: Name.stepDuration, dimensions: [("kind", kind), ("outcome", outcome)], factory: f))
            }))
        })
        runsQueued = gauge("skelm_runs_queued")
        runsRunning = gauge("skelm_runs_running")
        approvalsPending = gauge("skelm_approvals_pending")
        workersLive = gauge("skelm_workers_live")
        workersIdle = gauge("skelm_workers_idle")
        workersBusy = gauge("skelm_workers_busy")
        workersSpawned = counter("skelm_workers_spawned_total")
        workerSpawnFailures = counter("skelm_worker_spawn_failures_total")
        workersExited = by(WorkerExitCause.allCases) { counter("skelm_workers_exited_total", [("cause", $0.rawValue)]) }
        workersDrained = counter("skelm_workers_drained_total")
        spawnDuration = Metrics.Timer(label: Name.spawnDuration, factory: f)
        dispatchDuration = Metrics.Timer(label: Name.dispatchDuration, factory: f)
        egressAllowed = counter("skelm_egress_decisions_total", [("decision", "allowed")])
        egressDenied = counter("skelm_egress_decisions_total", [("decision", "denied")])
        permissionDenials = by(Self.permissionDimensions) { counter("skelm_permission_denials_total", [("dimension", $0)]) }
        inferPromptTokens = counter("skelm_infer_tokens_total", [("type", "prompt")])
        inferCompletionTokens = counter("skelm_infer_tokens_total", [("type", "completion")])
        triggerFires = Dictionary(uniqueKeysWithValues: Self.triggerKinds.map { kind in
            (kind, by(Self.triggerOutcomes) { counter("skelm_trigger_fires_total", [("kind", kind), ("outcome", $0)]) })
        })
        webhookRejections = counter("skelm_webhook_rejections_total")
        httpConnections = Dictionary(uniqueKeysWithValues: HTTPListener.allCases.map {
            ($0, Gauge(label: "skelm_http_connections", dimensions: [("listener", $0.rawValue)], factory: f))
        })
        httpListenerFull = by(HTTPListener.allCases) { counter("skelm_http_listener_full_total", [("listener", $0.rawValue)]) }
    }

    /// What became of a trigger's fire (or of `count` slots at once, for a catch-up that skipped them).
    static func trigger(_ kind: TriggerKind.Name, _ outcome: String, count: Int = 1) {
        shared.triggerFires[kind.rawValue]?[outcome]?.increment(by: max(0, count))
    }

    static func webhookRejected() { shared.webhookRejections.increment() }

    static func httpConnections(_ listener: HTTPListener, open: Int) { shared.httpConnections[listener]?.record(open) }

    static func httpListenerFull(_ listener: HTTPListener) { shared.httpListenerFull[listener]?.increment() }

    // MARK: What the rest of the gateway reports

    /// A `permission.denied` was audited. `dimension` may come from a worker:
    /// anything outside the documented set counts as `other`.
    public static func permissionDenied(dimension: String) {
        (shared.permissionDenials[dimension] ?? shared.permissionDenials["other"])?.increment()
    }

    /// The egress proxy relayed a connection (`allowed`) or refused one.
    /// Tokens an `infer` step's provider reported using, by type only: a label
    /// per provider is not worth its series.
    static func inferTokens(prompt: Int, completion: Int) {
        shared.inferPromptTokens.increment(by: max(0, prompt))
        shared.inferCompletionTokens.increment(by: max(0, completion))
    }

    static func egress(allowed: Bool) {
        (allowed ? shared.egressAllowed : shared.egressDenied).increment()
    }

    /// A worker finished its handshake, `ms` after its spawn began.
    static func workerSpawned(ms: Double) {
        shared.workersSpawned.increment()
        shared.spawnDuration.recordMilliseconds(ms)
    }

    static func workerSpawnFailed() { shared.workerSpawnFailures.increment() }

    static func workerExited(_ cause: WorkerExitCause) { shared.workersExited[cause]?.increment() }

    static func workerDrained() { shared.workersDrained.increment() }

    static func dispatched(ms: Double) { shared.dispatchDuration.recordMilliseconds(ms) }

    /// The values only the gateway's state knows, read at scrape time.
    func setState(runsQueued q: Int, runsRunning r: Int, approvalsPending a: Int, workers: (live: Int, idle: Int, busy: Int)) {
        runsQueued.record(q)
        runsRunning.record(r)
        approvalsPending.record(a)
        workersLive.record(workers.live)
        workersIdle.record(workers.idle)
        workersBusy.record(workers.busy)
    }
}
