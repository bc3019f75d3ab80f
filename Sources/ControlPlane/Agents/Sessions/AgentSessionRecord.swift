import Foundation

/// A resident agent's ACP session, by the key steps name it with. Durable: a
/// step after a gateway restart loads it into the agent's new process.
public struct AgentSessionRecord: Codable, Sendable, Equatable, StoreRecord {
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

    /// Dates are text as GRDB wrote them (see `StoreDate`); the migration
    /// that made this table spells its columns as they already are.
    static let tableSQL = """
        CREATE TABLE agent_sessions (
            id TEXT PRIMARY KEY NOT NULL,
            agent TEXT NOT NULL,
            key TEXT NOT NULL,
            acpSessionId TEXT NOT NULL,
            createdAt TEXT NOT NULL,
            lastUsedAt TEXT NOT NULL,
            state TEXT NOT NULL,
            turns INTEGER NOT NULL,
            lastRunId TEXT
        );
        CREATE UNIQUE INDEX agent_sessions_open ON agent_sessions(agent, key) WHERE state = 'open';
        CREATE INDEX agent_sessions_used ON agent_sessions(lastUsedAt)
        """
}

extension RunStore {
    /// The open session of `agent` for `key`.
    public func openSession(agent: String, key: String) async throws -> AgentSessionRecord? {
        try await db.read { db in
            try AgentSessionRecord.fetchOne(db, sql: "SELECT * FROM agent_sessions WHERE agent = ? AND key = ? AND state = 'open'",
                                            arguments: [agent, key])
        }
    }

    public func session(_ id: String) async throws -> AgentSessionRecord? {
        try await db.read { db in try AgentSessionRecord.fetchOne(db, key: id) }
    }

    public func sessions(agent: String? = nil, state: AgentSessionRecord.State? = nil, limit: Int = 100) async throws -> [AgentSessionRecord] {
        try await db.read { db in
            var sql = "SELECT * FROM agent_sessions WHERE 1 = 1"
            var args: [any StoreValueConvertible] = []
            if let agent { sql += " AND agent = ?"; args.append(agent) }
            if let state { sql += " AND state = ?"; args.append(state.rawValue) }
            sql += " ORDER BY lastUsedAt DESC, id DESC LIMIT ?"
            args.append(limit)
            return try AgentSessionRecord.fetchAll(db, sql: sql, arguments: StoreArguments(args))
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
            if try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM agent_sessions WHERE agent = ? AND key = ? AND state = 'open'",
                                arguments: [agent, key]) ?? 0 > 0 {
                return nil
            }
            let made = AgentSessionRecord(id: RandomID.hex("ses_"), agent: agent,
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
            if let other = try AgentSessionRecord.fetchOne(db, sql: "SELECT * FROM agent_sessions WHERE agent = ? AND key = ? AND state = 'open'",
                                                           arguments: [s.agent, s.key]) {
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
            let old = try AgentSessionRecord.fetchAll(db, sql: "SELECT * FROM agent_sessions WHERE state = 'open' AND lastUsedAt < ?",
                                                      arguments: [StoreDate.text(before)])
            for var s in old {
                s.state = .closed
                try s.update(db)
            }
            return old.map { var c = $0; c.state = .closed; return c }
        }
    }
}
