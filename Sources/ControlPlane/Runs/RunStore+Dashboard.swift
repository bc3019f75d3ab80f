import Foundation

/// What `GET /v1/dashboard/*` answers. Every number is an SQL aggregate: the
/// store may hold hundreds of thousands of runs, and none of them is loaded
/// to compute one.
public enum Dashboard {
    /// Runs created in `[since, until)`.
    public struct Window: Sendable {
        public var since: Date
        public var until: Date
        public init(since: Date, until: Date) { (self.since, self.until) = (since, until) }
        /// The store keeps epoch seconds.
        var bounds: [any StoreValueConvertible] { [since.timeIntervalSince1970, until.timeIntervalSince1970] }
    }

    public struct StatusCounts: Codable, Sendable, StoreFetchable {
        public var total, queued, running, waiting, succeeded, failed, cancelled: Int
    }

    /// Of runs that have both started and finished. Percentiles are nearest-rank.
    public struct Durations: Codable, Sendable {
        public var count: Int
        public var mean, p50, p95: Double?
    }

    public struct Overview: Encodable, Sendable {
        public struct InWindow: Encodable, Sendable {
            public var since, until: Date
            public var counts: StatusCounts
            /// succeeded / (succeeded + failed + cancelled); absent when none ended.
            public var successRate: Double?
            public var durationMs: Durations
            public var workflows: Int
        }
        /// Every run in the store.
        public var totals: StatusCounts
        public var last24h: Int
        public var pendingApprovals: Int
        public var window: InWindow
    }

    public struct WorkflowStats: Encodable, Sendable {
        public var workflow: String
        public var runs, succeeded, failed, cancelled: Int
        public var successRate: Double?
        public var durationMs: Durations
        public var lastRunAt: Date
    }

    public struct RecentRun: Codable, Sendable, StoreFetchable {
        public var id, workflow, status: String
        public var createdAt: Date
        public var durationMs: Double?
        public var errorCode: String?
    }

    public enum Bucket: String, Sendable, CaseIterable {
        case hour, day
        public var seconds: Double { self == .hour ? 3600 : 86400 }
    }

    public struct BucketStats: Encodable, Sendable {
        public var start: Date
        public var counts: StatusCounts
        public var avgDurationMs: Double?
    }

    public struct ErrorGroup: Encodable, Sendable {
        public struct Example: Encodable, Sendable {
            public var runId, workflow: String
            public var step: String?
            public var message: String?
        }
        /// Absent in the groups by code alone.
        public var workflow: String?
        public var code: String
        public var count: Int
        public var lastSeen: Date
        /// The most recent run of the group.
        public var example: Example
    }

    public struct Errors: Encodable, Sendable {
        public var since, until: Date
        public var total: Int
        public var byCode: [ErrorGroup]
        public var byWorkflow: [ErrorGroup]
    }

    public struct Approvals: Encodable, Sendable {
        public struct Counts: Codable, Sendable, StoreFetchable {
            public var total, pending, approved, denied, expired, cancelled: Int
        }
        public var counts: Counts
        public var oldestPendingAgeSeconds: Double?
        /// From request to an approve or deny: expiry and cancellation are not decisions.
        public var meanTimeToDecisionSeconds: Double?
    }
}

extension RunStore {
    /// `COUNT(*)` per status as the columns of `StatusCounts`.
    static let statusCountColumns = "COUNT(*) AS total, " + RunStatus.allCases
        .map { "COUNT(*) FILTER (WHERE status = '\($0.rawValue)') AS \($0.rawValue)" }.joined(separator: ", ")

    /// A run's wall time in ms, NULL until it has both started and finished.
    static let durationColumn = "CASE WHEN finished_at IS NOT NULL AND started_at IS NOT NULL THEN (finished_at - started_at) * 1000.0 END"

    /// Nearest-rank percentile `p` (percent) of `ms`, given each row's rank `rn`
    /// among the non-NULL `ms` of its group (ascending) and their count `n`:
    /// the smallest `ms` whose rank reaches ceil(p·n/100), in integer arithmetic
    /// because SQLite's math functions are a compile-time option.
    static func percentile(_ p: Int) -> String {
        "MIN(CASE WHEN rn >= (n * \(p) + 99) / 100 THEN ms END)"
    }

    private struct WindowRow: Decodable, StoreFetchable {
        var total, queued, running, waiting, succeeded, failed, cancelled: Int
        var workflows, finished: Int
        var meanMs, p50Ms, p95Ms: Double?
        var counts: Dashboard.StatusCounts {
            .init(total: total, queued: queued, running: running, waiting: waiting, succeeded: succeeded, failed: failed, cancelled: cancelled)
        }
    }

    private struct StatusCount: Decodable, StoreFetchable {
        var status: String
        var count: Int
    }

    static func successRate(succeeded: Int, failed: Int, cancelled: Int) -> Double? {
        let ended = succeeded + failed + cancelled
        return ended == 0 ? nil : Double(succeeded) / Double(ended)
    }

    public func overview(_ window: Dashboard.Window, now: Date = Date()) async throws -> Dashboard.Overview {
        try await db.read { db in
            // Per status through the status index, without reading a single row.
            var totals = Dashboard.StatusCounts(total: 0, queued: 0, running: 0, waiting: 0, succeeded: 0, failed: 0, cancelled: 0)
            for row in try StatusCount.fetchAll(db, sql: "SELECT status, COUNT(*) AS count FROM runs GROUP BY status") {
                totals.total += row.count
                switch RunStatus(rawValue: row.status) {
                case .queued: totals.queued += row.count
                case .running: totals.running += row.count
                case .waiting: totals.waiting += row.count
                case .succeeded: totals.succeeded += row.count
                case .failed: totals.failed += row.count
                case .cancelled: totals.cancelled += row.count
                case nil: break
                }
            }
            let last24h = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM runs WHERE created_at >= ?",
                                           arguments: [now.timeIntervalSince1970 - 86400]) ?? 0
            let pending = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM approvals WHERE status = 'pending'") ?? 0
            let w = try WindowRow.fetchOne(db, sql: """
                WITH d AS (
                    SELECT workflow, status, \(Self.durationColumn) AS ms FROM runs WHERE created_at >= ? AND created_at < ?
                ), r AS (
                    SELECT *, ROW_NUMBER() OVER (PARTITION BY ms IS NULL ORDER BY ms) AS rn, COUNT(ms) OVER () AS n FROM d
                )
                SELECT \(Self.statusCountColumns), COUNT(DISTINCT workflow) AS workflows, COUNT(ms) AS finished,
                       AVG(ms) AS meanMs, \(Self.percentile(50)) AS p50Ms, \(Self.percentile(95)) AS p95Ms
                FROM r
                """, arguments: StoreArguments(window.bounds))!
            return Dashboard.Overview(
                totals: totals, last24h: last24h, pendingApprovals: pending,
                window: .init(since: window.since, until: window.until, counts: w.counts,
                              successRate: Self.successRate(succeeded: w.succeeded, failed: w.failed, cancelled: w.cancelled),
                              durationMs: .init(count: w.finished, mean: w.meanMs, p50: w.p50Ms, p95: w.p95Ms),
                              workflows: w.workflows))
        }
    }

    private struct WorkflowRow: Decodable, StoreFetchable {
        var workflow: String
        var runs, succeeded, failed, cancelled, finished: Int
        var meanMs, p50Ms, p95Ms: Double?
        var lastRunAt: Date
    }

    /// Busiest first.
    public func workflowStats(_ window: Dashboard.Window) async throws -> [Dashboard.WorkflowStats] {
        try await db.read { db in
            try WorkflowRow.fetchAll(db, sql: """
                WITH d AS (
                    SELECT workflow, status, created_at, \(Self.durationColumn) AS ms FROM runs WHERE created_at >= ? AND created_at < ?
                ), r AS (
                    SELECT *, ROW_NUMBER() OVER (PARTITION BY workflow, ms IS NULL ORDER BY ms) AS rn,
                           COUNT(ms) OVER (PARTITION BY workflow) AS n FROM d
                )
                SELECT workflow, COUNT(*) AS runs, COUNT(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                       COUNT(*) FILTER (WHERE status = 'failed') AS failed, COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                       COUNT(ms) AS finished, AVG(ms) AS meanMs, \(Self.percentile(50)) AS p50Ms, \(Self.percentile(95)) AS p95Ms,
                       MAX(created_at) AS lastRunAt
                FROM r GROUP BY workflow ORDER BY runs DESC, workflow
                """, arguments: StoreArguments(window.bounds)).map { w in
                Dashboard.WorkflowStats(
                    workflow: w.workflow, runs: w.runs, succeeded: w.succeeded, failed: w.failed, cancelled: w.cancelled,
                    successRate: Self.successRate(succeeded: w.succeeded, failed: w.failed, cancelled: w.cancelled),
                    durationMs: .init(count: w.finished, mean: w.meanMs, p50: w.p50Ms, p95: w.p95Ms), lastRunAt: w.lastRunAt)
            }
        }
    }

    /// Newest first, without input, output or steps.
    public func recentRuns(status: RunStatus?, workflow: String?, limit: Int) async throws -> [Dashboard.RecentRun] {
        try await db.read { db in
            var sql = """
                SELECT id, workflow, status, created_at AS createdAt, \(Self.durationColumn) AS durationMs,
                       \(db.dialect.jsonField("error", "code")) AS errorCode
                FROM runs WHERE 1 = 1
                """
            var args: [any StoreValueConvertible] = []
            if let status { sql += " AND status = ?"; args.append(status.rawValue) }
            if let workflow { sql += " AND workflow = ?"; args.append(workflow) }
            sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
            args.append(limit)
            return try Dashboard.RecentRun.fetchAll(db, sql: sql, arguments: StoreArguments(args))
        }
    }

    private struct BucketRow: Decodable, StoreFetchable {
        var bucket: Int
        var total, queued, running, waiting, succeeded, failed, cancelled: Int
        var meanMs: Double?
    }

    /// Every bucket from the one holding `since` to the one holding the
    /// instant before `until`, empty ones included, so a chart needs no gap logic.
    /// Buckets are aligned on UTC hours or days.
    public func timeSeries(_ window: Dashboard.Window, bucket: Dashboard.Bucket, workflow: String?) async throws -> [Dashboard.BucketStats] {
        let size = bucket.seconds
        let origin = (window.since.timeIntervalSince1970 / size).rounded(.down) * size
        let count = Self.bucketCount(window, bucket: bucket)
        let rows = try await db.read { db in
            var sql = """
                SELECT \(db.dialect.truncate("(created_at - ?) / ?")) AS bucket, \(Self.statusCountColumns), AVG(\(Self.durationColumn)) AS meanMs
                FROM runs WHERE created_at >= ? AND created_at < ?
                """
            var args: [any StoreValueConvertible] = [origin, size]
            args += window.bounds
            if let workflow { sql += " AND workflow = ?"; args.append(workflow) }
            sql += " GROUP BY bucket"
            return try BucketRow.fetchAll(db, sql: sql, arguments: StoreArguments(args))
        }
        let byIndex = Dictionary(rows.map { ($0.bucket, $0) }, uniquingKeysWith: { a, _ in a })
        return (0..<count).map { i in
            let r = byIndex[i]
            return Dashboard.BucketStats(
                start: Date(timeIntervalSince1970: origin + Double(i) * size),
                counts: .init(total: r?.total ?? 0, queued: r?.queued ?? 0, running: r?.running ?? 0, waiting: r?.waiting ?? 0,
                              succeeded: r?.succeeded ?? 0, failed: r?.failed ?? 0, cancelled: r?.cancelled ?? 0),
                avgDurationMs: r?.meanMs)
        }
    }

    public static func bucketCount(_ window: Dashboard.Window, bucket: Dashboard.Bucket) -> Int {
        let origin = (window.since.timeIntervalSince1970 / bucket.seconds).rounded(.down) * bucket.seconds
        return max(1, Int(((window.until.timeIntervalSince1970 - origin) / bucket.seconds).rounded(.up)))
    }

    private struct ErrorRow: Decodable, StoreFetchable {
        var workflow: String?
        var code: String
        var count: Int
        var lastSeen: Date
        var runId, runWorkflow: String
        var step, message: String?
        var group: Dashboard.ErrorGroup {
            .init(workflow: workflow, code: code, count: count, lastSeen: lastSeen,
                  example: .init(runId: runId, workflow: runWorkflow, step: step, message: message))
        }
    }

    /// Failed runs of the window, by error code and by workflow and code; most frequent first.
    public func errors(_ window: Dashboard.Window) async throws -> Dashboard.Errors {
        try await db.read { db in
            // The example is the group's most recent run: the first of its rows by
            // time, newest first (ties broken by id, so both engines pick the same).
            func groups(by workflow: Bool) throws -> [Dashboard.ErrorGroup] {
                let partition = workflow ? "workflow, code" : "code"
                return try ErrorRow.fetchAll(db, sql: """
                    WITH f AS (
                        SELECT workflow, COALESCE(\(db.dialect.jsonField("error", "code")), 'unknown') AS code,
                               COALESCE(finished_at, created_at) AS seen, id,
                               \(db.dialect.jsonField("error", "step")) AS step, \(db.dialect.jsonField("error", "message")) AS message
                        FROM runs WHERE status = 'failed' AND created_at >= ? AND created_at < ?
                    ), r AS (
                        SELECT *, ROW_NUMBER() OVER (PARTITION BY \(partition) ORDER BY seen DESC, id DESC) AS rk,
                               COUNT(*) OVER (PARTITION BY \(partition)) AS n
                        FROM f
                    )
                    SELECT \(workflow ? "workflow" : "CAST(NULL AS TEXT)") AS workflow, code, n AS count, seen AS lastSeen,
                           id AS runId, workflow AS runWorkflow, step, message
                    FROM r WHERE rk = 1 ORDER BY n DESC, \(workflow ? "r.workflow, " : "")code
                    """, arguments: StoreArguments(window.bounds)).map(\.group)
            }
            let byCode = try groups(by: false)
            return Dashboard.Errors(since: window.since, until: window.until, total: byCode.reduce(0) { $0 + $1.count },
                                    byCode: byCode, byWorkflow: try groups(by: true))
        }
    }

    private struct ApprovalTimes: Decodable, StoreFetchable {
        var oldestPending: Double?
        var meanDecision: Double?
    }

    public func approvalStats(now: Date = Date()) async throws -> Dashboard.Approvals {
        try await db.read { db in
            let counts = try Dashboard.Approvals.Counts.fetchOne(db, sql: "SELECT COUNT(*) AS total, " + ApprovalRecord.Status.allCases
                .map { "COUNT(*) FILTER (WHERE status = '\($0.rawValue)') AS \($0.rawValue)" }.joined(separator: ", ") + " FROM approvals")!
            let times = try ApprovalTimes.fetchOne(db, sql: """
                SELECT MIN(created_at) FILTER (WHERE status = 'pending') AS oldestPending,
                       AVG(decided_at - created_at) FILTER (WHERE status IN ('approved', 'denied') AND decided_at IS NOT NULL) AS meanDecision
                FROM approvals
                """)!
            return Dashboard.Approvals(counts: counts, oldestPendingAgeSeconds: times.oldestPending.map { now.timeIntervalSince1970 - $0 },
                                       meanTimeToDecisionSeconds: times.meanDecision)
        }
    }
}
