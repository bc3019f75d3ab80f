import Foundation
import Wire
import Workflow

/// Runs, step checkpoints, the append-only event log and idempotency keys, in
/// SQLite (WAL) in the state directory. Every write is one transaction; a run
/// row exists before its run starts, so nothing in flight is invisible.
public final class RunStore: Sendable {
    public enum Durability: String, Codable, Sendable {
        /// fsync on every commit: a run reported done survives power loss.
        case full
        /// fsync at checkpoints only: survives a crash of the gateway, not of the host.
        case normal
    }

    /// Internal, not private: the store's parts live in the files beside this one.
    let db: any StoreEngine
    /// Where it is: the SQLite file's path, or the PostgreSQL address without its password.
    public var path: String { db.location }

    /// The writer's `synchronous` level as the engine reports it (2: every commit flushed, 1: not).
    public func synchronousLevel() async throws -> Int { try await db.synchronousLevel() }

    /// The gateway this store writes for: the owner of the runs it creates and claims.
    public var member: String { db.member }
    /// The owner a gateway alone on its SQLite file (or one that names none) writes as.
    public static let localMember = "local"

    /// The embedded store: SQLite at `path`.
    public init(path: String, durability: Durability = .full, member: String = RunStore.localMember) throws {
        let engine = try SQLiteEngine(path: path, durability: durability, member: member)
        try engine.migrate(Self.migrations)
        db = engine
    }

    /// A PostgreSQL store, migrated; throws at once (with the reason) when it cannot be reached.
    public init(postgres url: PostgresURL, poolSize: Int, durability: Durability = .full, member: String = RunStore.localMember,
                statementTimeout: Duration = .seconds(60)) throws {
        db = try PostgresEngine(url: url, poolSize: poolSize, durability: durability, migrations: Self.migrations, member: member,
                                statementTimeout: statementTimeout)
    }

    /// The PostgreSQL engine, when the store is one several gateways can share.
    var shared: PostgresEngine? { db as? PostgresEngine }

    public func close() async { await db.close() }

    /// The schema, in order; never edit one that shipped: add another.
    static let migrations: [StoreMigration] = {
        var m: [StoreMigration] = []
        m.append(StoreMigration(id: "1-runs") { _ in """
                CREATE TABLE runs (
                    id TEXT PRIMARY KEY,
                    workflow TEXT NOT NULL,
                    status TEXT NOT NULL,
                    input TEXT NOT NULL,
                    output TEXT,
                    error TEXT,
                    created_at REAL NOT NULL,
                    started_at REAL,
                    finished_at REAL,
                    idempotency_key TEXT,
                    last_seq INTEGER NOT NULL DEFAULT 0,
                    segments INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX runs_created ON runs(created_at);
                CREATE INDEX runs_status ON runs(status);
                CREATE TABLE steps (
                    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                    path TEXT NOT NULL,
                    status TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    output TEXT,
                    error TEXT,
                    started_at REAL,
                    finished_at REAL,
                    ordinal INTEGER NOT NULL,
                    PRIMARY KEY (run_id, path)
                ) WITHOUT ROWID;
                CREATE TABLE events (
                    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                    seq INTEGER NOT NULL,
                    type TEXT NOT NULL,
                    step TEXT,
                    message TEXT,
                    data TEXT,
                    at REAL NOT NULL,
                    PRIMARY KEY (run_id, seq)
                ) WITHOUT ROWID;
                CREATE TABLE idempotency_keys (
                    key TEXT PRIMARY KEY,
                    request_hash TEXT NOT NULL,
                    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                    created_at REAL NOT NULL
                );
                """
        })
        m.append(StoreMigration(id: "2-approvals") { _ in """
                CREATE TABLE approvals (
                    id TEXT PRIMARY KEY,
                    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                    workflow TEXT NOT NULL,
                    step TEXT NOT NULL,
                    message TEXT NOT NULL,
                    requester TEXT NOT NULL,
                    status TEXT NOT NULL,
                    on_timeout TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    expires_at REAL,
                    decided_at REAL,
                    decided_by TEXT,
                    reason TEXT
                );
                CREATE INDEX approvals_status ON approvals(status, expires_at);
                """
        })
        // Run lists filter by status or workflow and page by (created_at, id); the
        // dashboard counts by status and by time window. Without these, a filtered
        // page at 200,000 runs sorts every matching run (or, by workflow, scans
        // them all); with them it is one index range. They cover the
        // single-column indexes, which go.
        m.append(StoreMigration(id: "3-run-list-indexes") { _ in """
                CREATE INDEX runs_created_id ON runs(created_at, id);
                CREATE INDEX runs_status_created ON runs(status, created_at, id);
                CREATE INDEX runs_workflow_created ON runs(workflow, created_at, id);
                DROP INDEX runs_created;
                DROP INDEX runs_status;
                """
        })
        // Parks at any depth: a run waits on several steps at once (parallel
        // approvals, posted outputs, child runs), and a child run knows its parent.
        m.append(StoreMigration(id: "4-parks-and-children") { _ in """
                ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
                ALTER TABLE runs ADD COLUMN parent_step TEXT;
                ALTER TABLE runs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
                CREATE INDEX runs_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL;
                CREATE TABLE waits (
                    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                    step TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    child_run_id TEXT,
                    message TEXT,
                    status TEXT NOT NULL,
                    on_timeout TEXT,
                    expires_at REAL,
                    created_at REAL NOT NULL,
                    resolved_at REAL,
                    PRIMARY KEY (run_id, step)
                ) WITHOUT ROWID;
                CREATE INDEX waits_status ON waits(status, expires_at);
                CREATE INDEX approvals_run ON approvals(run_id, status);
                """
        })
        m.append(StoreMigration(id: "5-triggers") { _ in TriggerSchema.sql })
        // An agent's permission request can be an approval too: it ends no step.
        m.append(StoreMigration(id: "6-permission-approvals") { _ in "ALTER TABLE approvals ADD COLUMN kind TEXT NOT NULL DEFAULT 'step'" })
        m.append(StoreMigration(id: "7-agent-sessions") { _ in AgentSessionRecord.tableSQL })
        // Several gateways on one database: each run has the gateway that holds
        // it (NULL: none yet, as every run written before this had), each
        // gateway a lease it renews, and the fleet one pause.
        m.append(StoreMigration(id: "8-fleet") { _ in """
                ALTER TABLE runs ADD COLUMN owner TEXT;
                CREATE INDEX runs_status_owner ON runs(status, owner);
                CREATE TABLE gateways (
                    id TEXT PRIMARY KEY,
                    host TEXT NOT NULL,
                    address TEXT,
                    started_at REAL NOT NULL,
                    lease_until REAL NOT NULL,
                    leader INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE fleet_pause (
                    id INTEGER PRIMARY KEY,
                    reason TEXT NOT NULL,
                    paused_by TEXT NOT NULL,
                    since REAL NOT NULL
                );
                """
        })
        // The audit chain several gateways share (SharedAuditWriter): entries
        // appended under a lock on the one head row, checkpoints each signed by
        // the gateway that wrote it, and the public key of every gateway that
        // signs. A lone gateway keeps its chain in files and leaves these empty.
        // The columns a query filters on are computed from the stored line (on
        // PostgreSQL, the one engine that writes here), so they can never say
        // other than the hashed entry does.
        m.append(StoreMigration(id: "9-audit") { dialect in
            let fields: [(column: String, field: String)] = [("gateway", "gateway"), ("timestamp", "timestamp"), ("actor", "actor"),
                                                             ("action", "action"), ("run_id", "runId")]
            let columns: [String] = fields.map { f -> String in
                switch dialect {
                case .postgres: return f.column + " TEXT GENERATED ALWAYS AS (line::jsonb ->> '" + f.field + "') STORED"
                // Unused there (a lone gateway's chain is in files): plain columns.
                case .sqlite: return f.column + " TEXT"
                }
            }
            return """
                CREATE TABLE audit_entries (
                    seq INTEGER PRIMARY KEY,
                    line TEXT NOT NULL,
                    \(columns.joined(separator: ",\n"))
                );
                CREATE INDEX audit_entries_run ON audit_entries(run_id, seq);
                CREATE INDEX audit_entries_action ON audit_entries(action, seq);
                CREATE TABLE audit_head (
                    id INTEGER PRIMARY KEY,
                    seq INTEGER NOT NULL,
                    entry_hash TEXT NOT NULL
                );
                INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, 0, '\(AuditEntry.genesis)');
                CREATE TABLE audit_checkpoints (
                    gateway TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    entry_hash TEXT NOT NULL,
                    timestamp TEXT NOT NULL,
                    signature TEXT NOT NULL,
                    PRIMARY KEY (gateway, seq)
                );
                CREATE TABLE audit_keys (
                    gateway TEXT NOT NULL,
                    public_key TEXT NOT NULL,
                    added_at TEXT NOT NULL,
                    PRIMARY KEY (gateway, public_key)
                );
                """
        })
        return m
    }()

    // MARK: Creating runs

    public enum Created: Sendable {
        /// A new run; `started` when it was created already running (a free slot).
        case created(RunRecord, queued: RunEvent, started: RunEvent?)
        /// The same key with the same request: the run it made before.
        case existing(RunRecord)
        /// The same key with a different request.
        case conflict(runId: String)
    }

    /// With `start`, the run is created already running, with its `run.queued` and
    /// `run.started` events, in one transaction: the path of a run that finds a
    /// free slot, one commit (and fsync) shorter.
    /// A run a trigger fires carries its `origin`, whose own writes (the
    /// trigger's slot, a queue message taken, a delivery remembered) commit in
    /// the same transaction: a crash can neither lose the fire nor double it.
    ///
    /// `fleetCap`: runs holding a worker across every gateway sharing the
    /// store; a run that would pass it is created queued instead of started.
    public func create(id: String, workflow: String, input: JSONValue, idempotencyKey: String?, requestHash: String,
                       start: Bool = false, origin: RunOrigin? = nil, fleetCap: Int? = nil) async throws -> Created {
        let body: @Sendable (any StoreConnection) throws -> Created = { db in
            if let key = idempotencyKey,
               let row = try StoreRow.fetchOne(db, sql: "SELECT request_hash, run_id FROM idempotency_keys WHERE key = ?", arguments: [key]) {
                let runId: String = row["run_id"]
                guard (row["request_hash"] as String) == requestHash else { return .conflict(runId: runId) }
                return .existing(try Self.fetchRun(db, id: runId)!)
            }
            let now = Date().timeIntervalSince1970
            try db.cachedStatement(sql: """
                INSERT INTO runs (id, workflow, status, input, created_at, idempotency_key, trigger_id, scheduled_at, owner)
                VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [id, workflow, input.jsonText, now, idempotencyKey, origin?.triggerId,
                                         origin?.scheduledAt?.timeIntervalSince1970, db.member])
            try origin?.record(db, id)
            if let key = idempotencyKey {
                try db.execute(sql: "INSERT INTO idempotency_keys (key, request_hash, run_id, created_at) VALUES (?, ?, ?, ?)",
                               arguments: [key, requestHash, id, now])
            }
            let queued = try Self.append(db, runId: id, type: .runQueued, step: nil, message: workflow, data: nil)
            var started: RunEvent?
            if start, try Self.fleetHasRoom(db, cap: fleetCap) {
                try db.cachedStatement(sql: "UPDATE runs SET status = 'running', started_at = ?, segments = 1 WHERE id = ?")
                    .execute(arguments: [now, id])
                started = try Self.append(db, runId: id, type: .runStarted, step: nil, message: nil, data: nil)
            }
            return .created(try Self.fetchRun(db, id: id)!, queued: queued, started: started)
        }
        // A run of its own, with no count of the fleet's runs and no trigger's
        // rows to take: only the idempotency key's uniqueness can conflict
        // with another create, and a create that lost that race finds the
        // winner's run when it reads the key again.
        guard origin == nil, fleetCap == nil else { return try await db.write(body) }
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await db.writeNew(.brief, body)
            } catch is StoreConstraintError where idempotencyKey != nil && attempt < 3 {
                continue
            }
        }
    }

    // MARK: Events and checkpoints

    /// Appends an event (and updates the step's checkpoint row it concerns).
    public func append(runId: String, type: RunEventType, step: String? = nil, message: String? = nil, data: JSONValue? = nil) async throws -> RunEvent {
        try await db.write { db in try Self.append(db, runId: runId, type: type, step: step, message: message, data: data) }
    }

    /// An event a run's segment reports, written only while the run is still
    /// running and still this gateway's: a run cancelled meanwhile, or taken
    /// over by another gateway (this one's lease lapsed), refuses it with
    /// `NotHeld`, and its segment stops.
    public func appendSegment(runId: String, type: RunEventType, step: String? = nil, message: String? = nil, data: JSONValue? = nil) async throws -> RunEvent {
        try await db.write(.untilBack) { db in
            guard try String.fetchOne(db.cachedStatement(sql: "SELECT owner FROM runs WHERE id = ? AND status = 'running'"),
                                      arguments: [runId]) == db.member else { throw NotHeld(runId: runId) }
            return try Self.append(db, runId: runId, type: type, step: step, message: message, data: data)
        }
    }

    /// A run that is no longer running here: its segment's writes stop.
    public struct NotHeld: Error, CustomStringConvertible {
        public let runId: String
        public var description: String { "run \(runId) is no longer running on this gateway" }
    }

    /// The fleet already runs `server.fleetMaxConcurrentRuns` runs: this one waits.
    public struct FleetFull: Error, CustomStringConvertible {
        public let cap: Int
        public var description: String { "the fleet already runs \(cap) runs (server.fleetMaxConcurrentRuns)" }
    }

    /// Whether one more run may hold a worker in the fleet. Counted in the
    /// starting transaction: two gateways starting at once both count, both
    /// add one, and SERIALIZABLE makes one of them try again (with the other's
    /// run counted), so the cap holds without a lock or a counter to drift.
    static func fleetHasRoom(_ db: any StoreConnection, cap: Int?) throws -> Bool {
        guard let cap else { return true }
        return (try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM runs WHERE status = 'running'")) ?? 0) < cap
    }

    /// Moves a run to `running`, counting a new segment. Only the gateway that
    /// holds the run (or anyone, for a run nobody holds yet) starts it; nil when
    /// it is not (or no longer) this gateway's to start. Throws `FleetFull` when
    /// `fleetCap` runs already hold a worker across the fleet. With `expected`,
    /// only a run still exactly as it was read (its status and segment) starts:
    /// a segment queued from a read that went stale meanwhile does not.
    public func markStarted(runId: String, resumed: Bool, fleetCap: Int? = nil, expected: Expected? = nil) async throws -> RunEvent? {
        try await db.write(.untilBack) { db in
            if let cap = fleetCap {
                // A resumed segment of a run still marked running is one of those counted: it replaces itself.
                let status = try String.fetchOne(db.cachedStatement(sql: "SELECT status FROM runs WHERE id = ?"), arguments: [runId])
                if status == "queued", try !Self.fleetHasRoom(db, cap: cap) { throw FleetFull(cap: cap) }
            }
            var arguments: StoreArguments = [Date().timeIntervalSince1970, db.member, runId, db.member]
            var only = ""
            if let expected {
                only = " AND status = ? AND segments = ?"
                arguments.values += [expected.status.rawValue.storeValue, expected.segments.storeValue]
            }
            try db.cachedStatement(sql: """
                UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), segments = segments + 1, owner = ?
                WHERE id = ? AND status IN ('queued', 'running') AND (owner = ? OR owner IS NULL)\(only)
                """).execute(arguments: arguments)
            guard db.changesCount > 0 else { return nil }
            return try Self.append(db, runId: runId, type: resumed ? .runResumed : .runStarted, step: nil, message: nil, data: nil)
        }
    }

    /// How a run's end went, and what it did to its parent run, if it has one.
    public struct Finished: Sendable {
        public var event: RunEvent?
        public var parent: ParentOutcome?
        public var parentEvents: [RunEvent] = []
        /// Child runs still going when a run ended otherwise than succeeded: to cancel.
        public var children: [String] = []
        /// The trigger that fired the run, if one did, and the outcome recorded on it: its scheduler hears of the end.
        public var triggerId: String?
        public var triggerOutcome: (status: RunStatus, error: String?)?
        /// The ended run as `run(_:)` reads it, when asked for (`readBack`).
        public var record: RunRecord?
    }

    /// Ends a run, once: a run that already ended is left as it is (`event` nil).
    /// A child run's end resolves its parent's `invoke` step in the same
    /// transaction, so a crash cannot leave the parent waiting on a child that ended.
    ///
    /// A running run is ended only by the gateway that holds it, unless
    /// `anywhere` (a cancel, which may come from any gateway): a gateway whose
    /// lease lapsed cannot end a run another one has taken over.
    ///
    /// `readBack` reads the ended run in the same transaction, for a caller
    /// waiting to answer with it, instead of a read of its own after the commit.
    public func finish(runId: String, status: RunStatus, output: JSONValue?, error: StepFailure?, anywhere: Bool = false,
                       readBack: Bool = false) async throws -> Finished {
        // A run's own end waits out a lost database; a cancel asked over the API does not hang on it.
        try await db.write(anywhere ? .brief : .untilBack) { db in
            // A NUL in the message, escaped by JSON as \u0000, is one PostgreSQL's
            // jsonb refuses (the dashboard reads errors as jsonb): U+FFFD instead.
            let errorText = error.flatMap { try? String(decoding: JSONEncoder().encode($0), as: UTF8.self) }?
                .replacingOccurrences(of: "\\u0000", with: "\\ufffd")
            // RETURNING: no row when the run had already ended.
            guard let ended = try StoreRow.fetchOne(db.cachedStatement(sql: """
                UPDATE runs SET status = ?, output = ?, error = ?, finished_at = ?
                WHERE id = ? AND status IN ('queued', 'running', 'waiting') AND (? = 1 OR status <> 'running' OR owner = ? OR owner IS NULL)
                RETURNING trigger_id
                """), arguments: [status.rawValue, output?.jsonText, errorText, Date().timeIntervalSince1970, runId, anywhere ? 1 : 0, db.member]) else { return Finished() }
            let triggerId: String? = ended["trigger_id"]
            var data: [String: JSONValue] = [:]
            if let output { data["output"] = output }
            if let error { data["error"] = ["code": .string(error.code), "step": error.step.map(JSONValue.string) ?? .null, "message": .string(error.message)] }
            let type: RunEventType = status == .succeeded ? .runSucceeded : status == .cancelled ? .runCancelled : .runFailed
            var finished = Finished(event: try Self.append(db, runId: runId, type: type, step: error?.step,
                                                           message: error?.message, data: data.isEmpty ? nil : .object(data)))
            try Self.resolveParent(db, child: runId, status: status, output: output, error: error, into: &finished)
            if status != .succeeded { finished.children = try Self.closeParks(db, runId: runId) }
            if let triggerId {
                finished.triggerId = triggerId
                finished.triggerOutcome = (status, try TriggerSchema.runEnded(db, runId: runId, triggerId: triggerId, status: status, error: error))
            }
            if readBack { finished.record = try Self.fetchRun(db, id: runId, withSteps: true) }
            return finished
        }
    }

    static func append(_ db: any StoreConnection, runId: String, type: RunEventType, step: String?, message: String?, data: JSONValue?) throws -> RunEvent {
        // Statements on a run's hot path are compiled once (cachedStatement): each
        // compilation runs GRDB's authorizer over every column it touches.
        let seq = try Int.fetchOne(db.cachedStatement(sql: "UPDATE runs SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq"),
                                   arguments: [runId]) ?? 0
        let now = Date()
        try db.cachedStatement(sql: "INSERT INTO events (run_id, seq, type, step, message, data, at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .execute(arguments: [runId, seq, type.rawValue, step, message?.isEmpty == true ? nil : message, data?.jsonText, now.timeIntervalSince1970])
        if let step { try checkpoint(db, runId: runId, step: step, type: type, message: message, data: data, at: now.timeIntervalSince1970) }
        // Followers of the run on other gateways read it once this commits.
        try db.signal(.event(runId: runId, seq: seq))
        return RunEvent(runId: runId, seq: seq, type: type.rawValue, step: step, message: message?.isEmpty == true ? nil : message, data: data, at: now)
    }

    static func checkpoint(_ db: any StoreConnection, runId: String, step: String, type: RunEventType, message: String?, data: JSONValue?, at: Double) throws {
        // Checked by SegmentClaims for a start; bounded here whatever the event.
        var attempt = 1
        if case let .number(n)? = data?["attempt"], let exact = Int(exactly: n), (1...1_000_000).contains(exact) { attempt = exact }
        switch type {
        case .stepStarted:
            try db.cachedStatement(sql: """
                INSERT INTO steps (run_id, path, status, attempt, started_at, ordinal)
                VALUES (?, ?, 'running', ?, ?, (SELECT COUNT(*) FROM steps WHERE run_id = ?))
                ON CONFLICT (run_id, path) DO UPDATE SET status = 'running', attempt = excluded.attempt,
                    started_at = excluded.started_at, finished_at = NULL, error = NULL
                """).execute(arguments: [runId, step, attempt, at, runId])
        case .stepFinished:
            try db.cachedStatement(sql: "UPDATE steps SET status = 'succeeded', output = ?, finished_at = ? WHERE run_id = ? AND path = ?")
                .execute(arguments: [data?["output"]?.jsonText, at, runId, step])
        case .stepFailed:
            let retrying = data?["willRetry"] == .bool(true)
            try db.cachedStatement(sql: "UPDATE steps SET status = ?, error = ?, finished_at = ? WHERE run_id = ? AND path = ?")
                .execute(arguments: [retrying ? "retrying" : "failed", message, at, runId, step])
        case .stepSkipped:
            try db.execute(sql: """
                INSERT INTO steps (run_id, path, status, attempt, finished_at, ordinal)
                VALUES (?, ?, 'skipped', 0, ?, (SELECT COUNT(*) FROM steps WHERE run_id = ?))
                ON CONFLICT (run_id, path) DO UPDATE SET status = 'skipped'
                """, arguments: [runId, step, at, runId])
        case .stepParked:
            try db.cachedStatement(sql: "UPDATE steps SET status = 'waiting' WHERE run_id = ? AND path = ?").execute(arguments: [runId, step])
        case .runQueued, .runStarted, .runResumed, .runWaiting, .runSucceeded, .runFailed, .runCancelled, .stepBranch, .inferDelta, .childStarted,
             .agentMessage, .agentThought, .agentToolCall, .agentPlan, .agentRequest, .permissionDenied, .mcpCall:
            break
        }
    }

    // MARK: Reading

    public func run(_ id: String, withSteps: Bool = true) async throws -> RunRecord? {
        try await db.read { db in try Self.fetchRun(db, id: id, withSteps: withSteps) }
    }

    /// Events after `since`, oldest first.
    public func events(runId: String, since: Int = 0, limit: Int = 1000) async throws -> [RunEvent] {
        try await db.read { db in
            try StoreRow.fetchAll(db.cachedStatement(sql: "SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"),
                             arguments: [runId, since, limit]).map { row in
                RunEvent(runId: row["run_id"], seq: row["seq"], type: row["type"], step: row["step"], message: row["message"],
                         data: (row["data"] as String?).flatMap(JSONValue.parse),
                         at: Date(timeIntervalSince1970: row["at"]))
            }
        }
    }

    /// A `before` cursor naming no run: a page cannot be placed after it.
    public struct UnknownCursor: Error, Sendable {
        public let id: String
    }

    /// Newest first, ordered by (created_at, id) so runs created in the same
    /// instant still have one order; `before` is the last run id of the previous
    /// page, and the page holds what comes strictly after it in that order.
    /// `since`/`until` bound `createdAt` as [since, until).
    public func list(status: RunStatus? = nil, workflow: String? = nil, trigger: String? = nil, since: Date? = nil, until: Date? = nil,
                     limit: Int = 50, before: String? = nil) async throws -> [RunRecord] {
        try await db.read { db in
            var sql = "SELECT * FROM runs WHERE 1 = 1"
            var args: [any StoreValueConvertible] = []
            if let status { sql += " AND status = ?"; args.append(status.rawValue) }
            if let workflow { sql += " AND workflow = ?"; args.append(workflow) }
            if let trigger { sql += " AND trigger_id = ?"; args.append(trigger) }
            if let since { sql += " AND created_at >= ?"; args.append(since.timeIntervalSince1970) }
            if let until { sql += " AND created_at < ?"; args.append(until.timeIntervalSince1970) }
            if let before {
                guard let t = try Double.fetchOne(db, sql: "SELECT created_at FROM runs WHERE id = ?", arguments: [before]) else {
                    throw UnknownCursor(id: before)
                }
                // A row value, so the index on (created_at, id) serves it as one range.
                sql += " AND (created_at, id) < (?, ?)"
                args += [t, before]
            }
            sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
            args.append(limit)
            return try StoreRow.fetchAll(db, sql: sql, arguments: StoreArguments(args)).map(Self.run(from:))
        }
    }

    /// Runs that were queued or running when this gateway last stopped (and
    /// runs nobody holds). Runs other gateways hold are theirs; those of a
    /// gateway that died are taken over by a claim (`claimOrphans`).
    public func unfinished() async throws -> [RunRecord] {
        try await db.read { db in
            try StoreRow.fetchAll(db, sql: """
                SELECT * FROM runs WHERE status IN ('queued', 'running') AND (owner = ? OR owner IS NULL) ORDER BY created_at
                """, arguments: [db.member]).map(Self.run(from:))
        }
    }

    /// A run's state as a segment was queued for it: its start must find it unchanged.
    public struct Expected: Sendable, Equatable {
        public var status: RunStatus
        public var segments: Int
        /// A run just created, not yet started.
        public static let fresh = Expected(status: .queued, segments: 0)
    }

    /// A run this gateway holds as queued or running, as a sweep reads it.
    public struct Held: Sendable {
        public var id: String
        public var workflow: String
        public var state: Expected
    }

    /// Runs this gateway holds as queued or running (just what a sweep needs, not their inputs and outputs).
    public func heldHere() async throws -> [Held] {
        try await db.read { db in
            try StoreRow.fetchAll(db, sql: """
                SELECT id, workflow, status, segments FROM runs WHERE status IN ('queued', 'running') AND owner = ? ORDER BY created_at
                """, arguments: [db.member]).compactMap { row in
                RunStatus(rawValue: row["status"]).map { Held(id: row["id"], workflow: row["workflow"], state: Expected(status: $0, segments: row["segments"])) }
            }
        }
    }

    /// Outputs of the steps that completed, at any depth: the checkpoints a new segment starts from.
    public func checkpoints(runId: String) async throws -> [String: JSONValue] {
        try await db.read(.untilBack) { db in
            var out: [String: JSONValue] = [:]
            for row in try StoreRow.fetchAll(db, sql: "SELECT path, output FROM steps WHERE run_id = ? AND status = 'succeeded'",
                                        arguments: [runId]) {
                out[row["path"]] = (row["output"] as String?).flatMap(JSONValue.parse) ?? .null
            }
            return out
        }
    }

    /// Steps the last segment started and never ended (neither finished,
    /// failed nor parked), or left waiting for a retry, with the attempt each
    /// was on: what a crash interrupted.
    public func inFlight(runId: String) async throws -> [String: Int] {
        try await db.read(.untilBack) { db in
            var out: [String: Int] = [:]
            for row in try StoreRow.fetchAll(db, sql: "SELECT path, attempt FROM steps WHERE run_id = ? AND status IN ('running', 'retrying')",
                                        arguments: [runId]) {
                out[row["path"]] = row["attempt"]
            }
            return out
        }
    }

    static func fetchRun(_ db: any StoreConnection, id: String) throws -> RunRecord? {
        try StoreRow.fetchOne(db.cachedStatement(sql: "SELECT * FROM runs WHERE id = ?"), arguments: [id]).map(run(from:))
    }

    static func fetchRun(_ db: any StoreConnection, id: String, withSteps: Bool) throws -> RunRecord? {
        guard var run = try fetchRun(db, id: id) else { return nil }
        if withSteps {
            run.steps = try fetchSteps(db, runId: id)
            run.children = try fetchChildren(db, runId: id)
        }
        return run
    }

    static func fetchSteps(_ db: any StoreConnection, runId: String) throws -> [StepRecord] {
        try StoreRow.fetchAll(db.cachedStatement(sql: "SELECT * FROM steps WHERE run_id = ? ORDER BY ordinal"), arguments: [runId]).map { row in
            let started = (row["started_at"] as Double?).map(Date.init(timeIntervalSince1970:))
            let finished = (row["finished_at"] as Double?).map(Date.init(timeIntervalSince1970:))
            return StepRecord(path: row["path"], status: StepStatus(rawValue: row["status"]) ?? .failed, attempt: row["attempt"],
                              output: (row["output"] as String?).flatMap(JSONValue.parse), error: row["error"],
                              startedAt: started, finishedAt: finished,
                              durationMs: started.flatMap { s in finished.map { $0.timeIntervalSince(s) * 1000 } })
        }
    }

    static func run(from row: StoreRow) -> RunRecord {
        let started = (row["started_at"] as Double?).map(Date.init(timeIntervalSince1970:))
        let finished = (row["finished_at"] as Double?).map(Date.init(timeIntervalSince1970:))
        return RunRecord(
            id: row["id"], workflow: row["workflow"], status: RunStatus(rawValue: row["status"]) ?? .failed,
            input: JSONValue.parse(row["input"]) ?? .null,
            output: (row["output"] as String?).flatMap(JSONValue.parse),
            error: (row["error"] as String?).flatMap { try? JSONDecoder().decode(StepFailure.self, from: Data($0.utf8)) },
            createdAt: Date(timeIntervalSince1970: row["created_at"]), startedAt: started, finishedAt: finished,
            durationMs: started.flatMap { s in finished.map { $0.timeIntervalSince(s) * 1000 } },
            idempotencyKey: row["idempotency_key"], lastSeq: row["last_seq"], segments: row["segments"],
            parentRunId: row["parent_run_id"], parentStep: row["parent_step"], depth: row["depth"] ?? 0,
            trigger: row["trigger_id"], scheduledAt: (row["scheduled_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
            gateway: row["owner"], steps: nil)
    }
}
