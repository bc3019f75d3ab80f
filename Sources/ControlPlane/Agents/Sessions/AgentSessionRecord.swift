import Foundation
import GRDB

/// A resident agent's ACP session, by the key steps name it with. Durable: a
/// step after a gateway restart loads it into the agent's new process.
public struct AgentSessionRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public enum State: String, Codable, Sendable, CaseIterable {
        /// Steps with its key continue it.
        case open
        /// Closed by an operator or pruned: the next step with its key starts a new one.
        case closed
    }

    public static let databaseTableName = "agent_sessions"

    public var id: String
    public var agent: String
    public var key: String
    /// The agent's own id for the session (`session/new`'s answer).
    public var acpSessionId: String
    public var createdAt: Date
    public var lastUsedAt: Date
    public var state: State
    /// Turns taken in it, and the run that took the last.
    public var turns: Int
    public var lastRunId: String?

    public enum Columns {
        public static let agent = Column(CodingKeys.agent)
        public static let key = Column(CodingKeys.key)
        public static let state = Column(CodingKeys.state)
        public static let lastUsedAt = Column(CodingKeys.lastUsedAt)
    }

    static func createTable(_ db: Database) throws {
        try db.create(table: databaseTableName) { t in
            t.column("id", .text).primaryKey()
            t.column("agent", .text).notNull()
            t.column("key", .text).notNull()
            t.column("acpSessionId", .text).notNull()
            t.column("createdAt", .datetime).notNull()
            t.column("lastUsedAt", .datetime).notNull()
            t.column("state", .text).notNull()
            t.column("turns", .integer).notNull()
            t.column("lastRunId", .text)
        }
        // One open session per agent and key.
        try db.execute(sql: "CREATE UNIQUE INDEX agent_sessions_open ON agent_sessions(agent, key) WHERE state = 'open'")
        try db.execute(sql: "CREATE INDEX agent_sessions_used ON agent_sessions(lastUsedAt)")
    }
}

extension RunStore {
    /// The open session of `agent` for `key`.
    public func openSession(agent: String, key: String) async throws -> AgentSessionRecord? {
        try await db.read { db in
            try AgentSessionRecord.filter(AgentSessionRecord.Columns.agent == agent && AgentSessionRecord.Columns.key == key
                                          && AgentSessionRecord.Columns.state == AgentSessionRecord.State.open.rawValue).fetchOne(db)
        }
    }

    public func session(_ id: String) async throws -> AgentSessionRecord? {
        try await db.read { db in try AgentSessionRecord.fetchOne(db, key: id) }
    }

    public func sessions(agent: String? = nil, state: AgentSessionRecord.State? = nil, limit: Int = 100) async throws -> [AgentSessionRecord] {
        try await db.read { db in
            var q = AgentSessionRecord.all()
            if let agent { q = q.filter(AgentSessionRecord.Columns.agent == agent) }
            if let state { q = q.filter(AgentSessionRecord.Columns.state == state.rawValue) }
            return try q.order(AgentSessionRecord.Columns.lastUsedAt.desc).limit(limit).fetchAll(db)
        }
    }

    /// Records a turn: another turn of the session it continued (`continued`,
    /// only while that session is still open: a session closed during the turn
    /// stays closed), or a new session for the key. Of two first turns for one
    /// key at once, the first recorded wins and the other's session is not kept.
    public func recordTurn(agent: String, key: String, acpSessionId: String, runId: String,
                           continued: String?) async throws -> (AgentSessionRecord, created: Bool)? {
        try await db.write { db in
            let now = Date()
            if let id = continued {
                guard var open = try AgentSessionRecord.fetchOne(db, key: id), open.state == .open else { return nil }
                open.turns += 1
                open.lastUsedAt = now
                open.lastRunId = runId
                try open.update(db)
                return (open, false)
            }
            if try AgentSessionRecord.filter(AgentSessionRecord.Columns.agent == agent && AgentSessionRecord.Columns.key == key
                                             && AgentSessionRecord.Columns.state == AgentSessionRecord.State.open.rawValue).fetchCount(db) > 0 {
                return nil
            }
            let made = AgentSessionRecord(id: "ses_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""), agent: agent,
                                          key: key, acpSessionId: acpSessionId, createdAt: now, lastUsedAt: now, state: .open, turns: 1,
                                          lastRunId: runId)
            try made.insert(db)
            return (made, true)
        }
    }

    /// Closes one session; nil when there is none with that id, unchanged when already closed.
    public func closeSession(_ id: String) async throws -> (AgentSessionRecord, changed: Bool)? {
        try await db.write { db in
            guard var s = try AgentSessionRecord.fetchOne(db, key: id) else { return nil }
            guard s.state == .open else { return (s, false) }
            s.state = .closed
            try s.update(db)
            return (s, true)
        }
    }

    public enum Reopened: Sendable {
        case reopened(AgentSessionRecord)
        case alreadyOpen(AgentSessionRecord)
        /// Another open session holds its key now.
        case keyTaken(AgentSessionRecord)
        case notFound
    }

    /// Opens a closed session again, so steps with its key continue it.
    public func reopenSession(_ id: String) async throws -> Reopened {
        try await db.write { db in
            guard var s = try AgentSessionRecord.fetchOne(db, key: id) else { return .notFound }
            guard s.state == .closed else { return .alreadyOpen(s) }
            if let other = try AgentSessionRecord.filter(AgentSessionRecord.Columns.agent == s.agent && AgentSessionRecord.Columns.key == s.key
                                                         && AgentSessionRecord.Columns.state == AgentSessionRecord.State.open.rawValue).fetchOne(db) {
                return .keyTaken(other)
            }
            s.state = .open
            try s.update(db)
            return .reopened(s)
        }
    }

    /// Closes every open session not used since `before`.
    public func pruneSessions(before: Date) async throws -> [AgentSessionRecord] {
        try await db.write { db in
            let old = try AgentSessionRecord.filter(AgentSessionRecord.Columns.state == AgentSessionRecord.State.open.rawValue
                                                    && AgentSessionRecord.Columns.lastUsedAt < before).fetchAll(db)
            for var s in old {
                s.state = .closed
                try s.update(db)
            }
            return old.map { var c = $0; c.state = .closed; return c }
        }
    }
}
