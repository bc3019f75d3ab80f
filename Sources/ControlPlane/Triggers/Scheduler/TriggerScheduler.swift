import Foundation
import Logging
import Wire
import Workflow

/// Arms every trigger (declared in workflow files, or added by operators),
/// fires them as their time or their event comes, and keeps what a restart
/// needs in the run store. One loop: it sleeps until the earliest fire time
/// (at most `clock.maxSleep`), or until something wakes it (a run a trigger
/// fired ended, a queue message arrived, a reload).
public actor TriggerScheduler {
    /// A trigger the scheduler knows: its row as last written, and what it runs on.
    struct Armed: Sendable {
        var row: TriggerRow
        var trigger: Trigger
        var schedule: TimeSchedule?
        /// Neither disarmed nor paused by an operator.
        var live: Bool { row.disarmedReason == nil && !row.paused }
    }

    let store: RunStore
    let runs: RunService
    let registry: WorkflowRegistry
    let audit: AuditLog
    let admission: Admission
    /// Time-based triggers, buffers, queues and probes fire on the fleet's leader only.
    let role: FleetRole
    /// Whether this gateway led at its last look: one that starts leading reads the triggers' state again first.
    var led = false
    let clock: TriggerClock
    let logger: Logger
    let signal = WakeSignal()
    /// Settles who may call a webhook without a token.
    let onHooksChanged: @Sendable (Set<String>) -> Void

    var armed: [String: Armed] = [:]
    /// Runs each trigger fired that have not ended.
    var inflight: [String: Set<String>] = [:]
    /// Fires between their overlap check and their run's creation: counted as
    /// running, so fires that arrive together cannot all pass the check.
    var starting: [String: Int] = [:]
    /// Runs that ended before their fire had recorded them (a very short run).
    var endedEarly: Set<String> = []
    /// Bumped by each rebuild: one that finds a newer one started meanwhile gives way.
    var generation = 0
    /// Per trigger and action: what a flood (of deliveries, file events, failing probes) may write to the audit chain.
    var throttles: [String: AuditThrottle] = [:]
    var buffered: [String: Int] = [:]
    /// `METHOD path` → trigger id.
    var hooks: [String: String] = [:]
    var watchers: [String: DirectoryWatcher] = [:]
    var watchTasks: [String: Task<Void, Never>] = [:]
    var pollTasks: [String: Task<Void, Never>] = [:]
    private var loopTask: Task<Void, Never>?
    private var endingsTask: Task<Void, Never>?
    var stopped = false
    /// A reload changed workflows or config: the loop re-syncs before its next look.
    var syncRequested = false

    nonisolated func requestSync() {
        Task { await self.markSync() }
    }

    private func markSync() {
        syncRequested = true
        signal.wake()
    }

    init(store: RunStore, runs: RunService, registry: WorkflowRegistry, audit: AuditLog, admission: Admission, role: FleetRole = FleetRole(leads: true),
         clock: TriggerClock = TriggerClock(), logger: Logger, onHooksChanged: @escaping @Sendable (Set<String>) -> Void) {
        self.role = role
        self.store = store
        self.runs = runs
        self.registry = registry
        self.audit = audit
        self.admission = admission
        self.clock = clock
        self.logger = logger
        self.onHooksChanged = onHooksChanged
    }

    /// Arms what the store and the registry say, catches up on what was missed
    /// while the gateway was down, then starts the loop.
    func start() async throws {
        inflight = try await store.inflightByTrigger()
        buffered = try await store.bufferDepths()
        try await sync(actor: "gateway")
        led = role.leads
        // What came due while the gateway was down goes through the catch-up policies.
        if led { await fireDue(now: clock.now()) }
        let signal = self.signal
        role.onChange { _ in signal.wake() }
        let endings = runs.endings.stream
        endingsTask = Task { [weak self] in
            for await ending in endings {
                await self?.ended(ending)
            }
        }
        loopTask = Task { [weak self] in await self?.loop() }
    }

    func stop() async {
        stopped = true
        loopTask?.cancel()
        endingsTask?.cancel()
        for task in Array(watchTasks.values) + Array(pollTasks.values) { task.cancel() }
        for w in watchers.values { w.stop() }
        watchers.removeAll()
        signal.wake()
        // Bounded: with a database that is away the loop may be inside store calls
        // that each wait seconds before failing; it ends after them, unawaited.
        if let loopTask { _ = await FirstOf.within(.seconds(5)) { await loopTask.value } }
    }

    private func loop() async {
        var lastPurge = Date.distantPast
        var lastInflightRead = Date.distantPast
        while !Task.isCancelled, !stopped {
            if syncRequested {
                syncRequested = false
                do { try await sync(actor: "gateway") } catch {
                    logger.error("cannot re-sync triggers", metadata: ["error": "\(error)"])
                }
            }
            let leads = role.leads
            if leads, !led {
                // Another gateway led until now: what it fired and accounted for is in the store.
                do {
                    inflight = try await store.inflightByTrigger()
                    try await rebuild()
                    logger.notice("leading the fleet's triggers")
                } catch {
                    logger.error("cannot take over the fleet's triggers yet", metadata: ["error": "\(error)"])
                    await signal.wait(timeout: clock.maxSleep)
                    continue
                }
            }
            led = leads
            if leads, store.shared != nil, clock.now().timeIntervalSince(lastInflightRead) > 2 {
                // Runs this gateway's triggers fired may end on another gateway (one that took them over).
                lastInflightRead = clock.now()
                if let fresh = try? await store.inflightByTrigger() { inflight = fresh }
            }
            let now = clock.now()
            // While the gateway is paused nothing fires; slots that pass meanwhile
            // are caught up at its resume as after a restart (catchUp policies).
            if admission.paused == nil, leads {
                await fireDue(now: now)
                await drainBuffers()
                await dispatchQueues(now: now)
            }
            if now.timeIntervalSince(lastPurge) > 3600 {
                lastPurge = now
                try? await store.purgeDone(before: now.addingTimeInterval(-86_400))
            }
            await signal.wait(timeout: sleepTime(now: clock.now()))
        }
    }

    /// Until the earliest fire time, bounded by the clock's longest sleep.
    private func sleepTime(now: Date) -> Duration {
        var d = clock.maxSleep
        // Paused: nothing fires, whatever is due; look again at the longest sleep.
        if admission.paused != nil { return d }
        let earliest = armed.values.compactMap { $0.live ? $0.row.nextFireAt : nil }.min()
        if let earliest {
            let ms = max(0, (earliest - now.timeIntervalSince1970) * 1000)
            // At least a few milliseconds: a fire time that stays in the past must not make the loop spin.
            if ms < Double(d.components.seconds * 1000) + Double(d.components.attoseconds) / 1e15 { d = .milliseconds(max(5, Int64(ms.rounded(.up)))) }
        }
        return d
    }

    /// A run a trigger fired ended: what waited for it (a buffered fire, a queue message) may start.
    /// The outcome is the one the run's end wrote to the trigger's row, in its transaction.
    private func ended(_ e: RunService.Endings.Ending) {
        let trigger = e.trigger
        if inflight[trigger]?.remove(e.run) == nil, starting[trigger, default: 0] > 0 { endedEarly.insert(e.run) }
        if inflight[trigger]?.isEmpty == true { inflight[trigger] = nil }
        if let a = armed[trigger] {
            armed[trigger]?.row.lastOutcome = e.status.rawValue
            armed[trigger]?.row.lastError = e.error
            if case .queue = a.trigger.kind { signal.wake() }
        }
        if (buffered[trigger] ?? 0) > 0 { signal.wake() }
    }

    func record(_ action: TriggerAuditAction, _ id: String, runId: String? = nil, _ details: [String: String] = [:]) {
        // Counted before the audit's throttle: the metric sees every one.
        if let kind = armed[id]?.row.kind {
            switch action {
            case .fired: GatewayMetrics.trigger(kind, "fired")
            case .buffered: GatewayMetrics.trigger(kind, "buffered")
            case .skipped: GatewayMetrics.trigger(kind, "skipped", count: details["slots"].flatMap { Int($0) } ?? 1)
            case .dropped: GatewayMetrics.trigger(kind, "dropped", count: details["count"].flatMap { Int($0) } ?? 1)
            case .error: GatewayMetrics.trigger(kind, "error")
            default: break
            }
        }
        if action == .webhookRejected { GatewayMetrics.webhookRejected() }
        var d = details.filter { !$0.value.isEmpty }
        if [.skipped, .dropped, .buffered, .error, .webhookRejected].contains(action) {
            // Counted on the trigger whatever happens here; the chain gets at most 10 a second of
            // each per trigger, and of refused deliveries 10 a second in all (a forger can send many).
            let key = action == .webhookRejected ? action.rawValue : action.rawValue + " " + id
            var throttle = throttles[key] ?? AuditThrottle(perSecond: 10, burst: 50)
            let admitted = throttle.admit()
            throttles[key] = throttle
            guard let suppressed = admitted else { return }
            if suppressed > 0 { d["suppressed"] = "\(suppressed)" }
        }
        d["trigger"] = id
        if let a = armed[id] { d["workflow"] = a.row.workflow }
        audit.record(actor: "trigger:\(id)", action: action.rawValue, runId: runId, details: d)
    }
}

/// What the scheduler writes to the audit chain.
enum TriggerAuditAction: String {
    case fired = "trigger.fired"
    case skipped = "trigger.skipped"
    case dropped = "trigger.dropped"
    case buffered = "trigger.buffered"
    case error = "trigger.error"
    case armed = "trigger.armed"
    case disarmed = "trigger.disarmed"
    case paused = "trigger.paused"
    case unpaused = "trigger.unpaused"
    case scheduleAdded = "schedule.added"
    case scheduleRemoved = "schedule.removed"
    case backfill = "schedule.backfill"
    case webhookRejected = "webhook.rejected"
    case queueRedrive = "queue.redrive"
}
