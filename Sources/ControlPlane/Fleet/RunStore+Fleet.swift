import Foundation
import Wire

/// The store's side of several gateways sharing one PostgreSQL database: each
/// gateway's lease, runs taken over from a gateway whose lease lapsed, and the
/// fleet's pause. Times are the database's clock, never a gateway's, so
/// gateways whose clocks disagree still agree on whose lease has lapsed.
extension RunStore {
    /// A gateway of the fleet, as `GET /gateway/fleet` lists it.
    public struct Member: Codable, Sendable, Equatable {
        public var id: String
        public var host: String
        public var address: String?
        public var startedAt: Date
        public var leaseUntil: Date
        /// It fires the time-based triggers.
        public var leader: Bool
        /// Its lease has not lapsed.
        public var alive: Bool
    }

    static let dbNow = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"

    /// Joins the fleet, or renews this gateway's lease (and says whether it
    /// leads). Returns the fleet's pause, read in the same round trip.
    func renewLease(seconds: Double, host: String, address: String?, leader: Bool, joining: Bool) async throws -> Admission.Pause? {
        try await db.write { db in
            try db.execute(sql: """
                INSERT INTO gateways (id, host, address, started_at, lease_until, leader)
                VALUES (?, ?, ?, \(Self.dbNow), \(Self.dbNow) + ?, ?)
                ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until, leader = excluded.leader, host = excluded.host,
                    address = excluded.address\(joining ? ", started_at = excluded.started_at" : "")
                """, arguments: [db.member, host, address, seconds, leader ? 1 : 0])
            return try Self.fleetPause(db)
        }
    }

    /// Leaves the fleet: the lease ends now, so the others take over at once
    /// what this gateway leaves queued or unfinished.
    func leaveFleet() async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE gateways SET lease_until = 0, leader = 0 WHERE id = ?", arguments: [db.member])
        }
    }

    /// Takes over up to `limit` queued or running runs whose gateway's lease
    /// lapsed (or that nobody holds), oldest first. Rows another gateway is
    /// claiming at the same moment are skipped, not waited for, so gateways
    /// sweeping together split the work rather than queue behind each other.
    func claimOrphans(limit: Int) async throws -> [RunRecord] {
        guard limit > 0 else { return [] }
        return try await db.write { db in
            try StoreRow.fetchAll(db, sql: """
                UPDATE runs SET owner = ? WHERE id IN (
                    SELECT r.id FROM runs r
                    WHERE r.status IN ('queued', 'running') AND r.owner IS DISTINCT FROM ?
                      AND NOT EXISTS (SELECT 1 FROM gateways g WHERE g.id = r.owner AND g.lease_until > \(Self.dbNow))
                    ORDER BY r.created_at LIMIT ? FOR UPDATE SKIP LOCKED)
                RETURNING *
                """, arguments: [db.member, db.member, limit]).map(Self.run(from:)).sorted { $0.createdAt < $1.createdAt }
        }
    }

    public func members() async throws -> [Member] {
        try await db.read { db in
            let now = try Double.fetchOne(db, sql: "SELECT \(Self.dbNow)") ?? Date().timeIntervalSince1970
            return try StoreRow.fetchAll(db, sql: "SELECT * FROM gateways ORDER BY id").map { row in
                let until: Double = row["lease_until"]
                return Member(id: row["id"], host: row["host"], address: row["address"],
                              startedAt: Date(timeIntervalSince1970: row["started_at"]), leaseUntil: Date(timeIntervalSince1970: until),
                              leader: (row["leader"] as Int) == 1 && until > now, alive: until > now)
            }
        }
    }

    static func fleetPause(_ db: any StoreConnection) throws -> Admission.Pause? {
        try StoreRow.fetchOne(db, sql: "SELECT reason, paused_by, since FROM fleet_pause WHERE id = 1").map {
            Admission.Pause(reason: $0["reason"], by: $0["paused_by"], since: Date(timeIntervalSince1970: $0["since"]))
        }
    }

    /// Pauses every gateway of the fleet (or lifts it, with nil); each hears at once.
    func setFleetPause(_ pause: Admission.Pause?) async throws -> Admission.Pause? {
        try await db.write { db in
            let was = try Self.fleetPause(db)
            if let pause {
                try db.execute(sql: """
                    INSERT INTO fleet_pause (id, reason, paused_by, since) VALUES (1, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, paused_by = excluded.paused_by
                    """, arguments: [pause.reason, pause.by, (was?.since ?? pause.since).timeIntervalSince1970])
            } else {
                try db.execute(sql: "DELETE FROM fleet_pause WHERE id = 1")
            }
            try db.signal(.admission)
            return was
        }
    }

    public func signal(_ signal: FleetSignal) async throws {
        try await db.write { db in try db.signal(signal) }
    }
}

extension RunStore {
    /// The fleet's pause as the database holds it (nil: not paused).
    func fleetPause() async throws -> Admission.Pause? {
        try await db.read { db in try Self.fleetPause(db) }
    }
}
