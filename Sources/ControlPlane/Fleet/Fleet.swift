import Foundation
import Logging
import PostgresNIO
import Wire

/// This gateway's part in a fleet of gateways sharing one PostgreSQL database.
///
/// Every second it renews its lease (a row in `gateways`, timed by the
/// database's clock), takes over the runs of gateways whose lease lapsed, and
/// tries to become the trigger leader if nobody is. On a connection of its own
/// (not the pool's) it holds the leader's advisory lock, which PostgreSQL
/// releases the moment that session ends (a gateway killed, its host gone),
/// and listens for the others' signals: events of runs its SSE clients follow,
/// cancels of runs it executes, the fleet's pause.
actor Fleet {
    /// A gateway that has not renewed its lease for this long has stopped; its runs are taken over.
    static let leaseSeconds: Double = 10
    static let tick: Duration = .seconds(1)
    /// The trigger leader's advisory lock (any constant the gateway uses nowhere else).
    static let leaderLock: Int64 = 0x736b_656c_6d03

    let store: RunStore
    let engine: PostgresEngine
    let runs: RunService
    let hub: RunEventHub
    let admission: Admission
    let role: FleetRole
    let logger: Logger
    let host: String
    private var address: String?
    private var link: PostgresConnection?
    private var listening: Task<Void, Never>?
    private var ticking: Task<Void, Never>?
    private var leading = false
    private var stopped = false
    /// Since when the lease has been renewed without a miss. After a miss (the
    /// database was away, so every gateway's lease may have lapsed meanwhile),
    /// nothing is taken over until a whole lease has passed: the others have
    /// had time to renew theirs, and only the runs of gateways that are really
    /// gone are taken.
    private var renewedSince: ContinuousClock.Instant?

    init(store: RunStore, engine: PostgresEngine, runs: RunService, hub: RunEventHub, admission: Admission, role: FleetRole, logger: Logger) {
        self.store = store
        self.engine = engine
        self.runs = runs
        self.hub = hub
        self.admission = admission
        self.role = role
        self.logger = logger
        self.host = ProcessInfo.processInfo.hostName
    }

    /// Joins (the lease first, so no other gateway takes this one's runs
    /// while it resumes them), then opens the link and starts the loop.
    func start(address: String?) async throws {
        self.address = address
        admission.setFleet(try await store.renewLease(seconds: Self.leaseSeconds, host: host, address: address, leader: false, joining: true))
        renewedSince = .now - .seconds(Self.leaseSeconds)
        await connect()
        await beat()
        ticking = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.tick)
                await self?.beat()
            }
        }
    }

    /// Leaves: the lease ends now and the leader's lock is let go, so the
    /// fleet takes over what this gateway leaves at once rather than after its lease.
    func stop() async {
        stopped = true
        ticking?.cancel()
        listening?.cancel()
        // Each step bounded: with the database away, a query on the link (or its
        // close) may never answer, and a stop must end. What is not done here
        // the database does itself: a closed session's locks go with it, and a
        // lease not ended lapses after its 10 s.
        if let link {
            let logger = logger
            _ = await FirstOf.within(.seconds(2)) {
                _ = try? await link.query("SELECT pg_advisory_unlock_all()", logger: logger)
                try? await link.close()
            }
        }
        link = nil
        role.set(false)
        let store = store
        _ = await FirstOf.within(.seconds(5)) { try? await store.leaveFleet() }
    }

    /// One beat: the link checked (or made again), the leader's lock tried,
    /// the lease renewed with the fleet's pause read back, orphans taken.
    func beat() async {
        guard !stopped else { return }
        if let link {
            let answered = await FirstOf.within(.seconds(5)) { [logger] in
                (try? await link.query("SELECT 1", logger: logger)) != nil
            }
            if answered != true { await drop(link, why: "it stopped answering") }
        }
        if link == nil { await connect() }
        if let link, !leading {
            let took = await FirstOf.within(.seconds(5)) { [logger] in
                do {
                    let rows = try await link.query("SELECT pg_try_advisory_lock(\(Self.leaderLock)) AS held", logger: logger)
                    for try await held in rows.decode(Bool.self) { return held }
                } catch {}
                return false
            }
            if took == true {
                leading = true
                logger.notice("fleet: this gateway now leads (fires the time-based triggers)")
                role.set(true)
            }
        }
        do {
            admission.setFleet(try await store.renewLease(seconds: Self.leaseSeconds, host: host, address: address, leader: leading, joining: false))
            if renewedSince == nil { renewedSince = .now }
        } catch {
            renewedSince = nil
            logger.error("fleet: cannot renew this gateway's lease: \(PostgresEngine.describe(error))")
        }
        guard let since = renewedSince, ContinuousClock.now - since >= .seconds(Self.leaseSeconds) else { return }
        let room = await runs.roomToAdopt
        guard room > 0 else { return }
        do {
            let claimed = try await store.claimOrphans(limit: room)
            guard !claimed.isEmpty else { return }
            logger.notice("fleet: taking over \(claimed.count) run(s) of gateways that stopped")
            await runs.adopt(claimed, cause: "the gateway running it stopped")
        } catch {
            logger.error("fleet: cannot take over runs: \(PostgresEngine.describe(error))")
        }
    }

    /// Opens the link: its own session, listening on the fleet's channel.
    /// Followed runs are read again (what was signalled while there was no
    /// link would otherwise reach their SSE clients only at the next event).
    private func connect() async {
        guard !stopped else { return }
        let connection: PostgresConnection
        do {
            var config = try engine.url.connectionConfiguration()
            config.options.connectTimeout = .seconds(5)
            connection = try await PostgresConnection.connect(configuration: config, id: 1, logger: logger)
        } catch {
            logger.error("fleet: cannot open the link to \(engine.location): \(PostgresEngine.describe(error))")
            // The store's calls hear it too: an API call then gives up sooner than it would on a merely slow pool.
            if PostgresEngine.lostConnection(error) { engine.outage.lost(engine.location, PostgresEngine.describe(error), logger: logger) }
            return
        }
        link = connection
        let ready = AsyncStream<Void>.makeStream()
        listening = Task { [weak self, logger] in
            do {
                try await connection.listen(on: FleetSignal.channel) { signals in
                    ready.continuation.yield()
                    for try await signal in signals { await self?.received(signal.payload) }
                }
            } catch {
                logger.debug("fleet: the link stopped listening: \(error)")
            }
            ready.continuation.finish()
            await self?.drop(connection, why: "it closed")
        }
        for await _ in ready.stream { break }
        for runId in hub.followedRuns { await relay(runId, after: nil) }
    }

    /// The link is gone: so is the leader's lock it held (the session ended).
    private func drop(_ connection: PostgresConnection, why: String) async {
        guard link === connection else { return }
        link = nil
        listening?.cancel()
        Task { try? await connection.close() }
        if leading {
            leading = false
            role.set(false)
        }
        if !stopped { logger.error("fleet: the link to \(engine.location) is gone (\(why)); opening it again") }
    }

    private func received(_ payload: String) async {
        guard let (sender, signal) = FleetSignal.parse(payload), sender != store.member else { return }
        switch signal {
        case let .event(runId, seq):
            if hub.follows(runId) { await relay(runId, after: seq - 1) }
        case let .cancel(runId):
            await runs.stopCancelled(runId)
        case .admission:
            if let pause = try? await store.fleetPause() { admission.setFleet(pause) }
        }
    }

    /// Publishes a run's events from the table to its followers here. Without
    /// `after`, only its latest: a follower that finds a gap reads the rest itself.
    private func relay(_ runId: String, after: Int?) async {
        var since = after
        if since == nil {
            guard let run = try? await store.run(runId, withSteps: false) else { return }
            since = max(0, run.lastSeq - 1)
        }
        guard let events = try? await store.events(runId: runId, since: since ?? 0, limit: 500) else { return }
        events.forEach(hub.relay)
    }
}
