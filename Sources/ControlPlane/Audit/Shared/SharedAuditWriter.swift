import Crypto
import Foundation
import Logging
import Synchronization

/// This gateway's appends to the audit chain that every gateway sharing one
/// PostgreSQL database writes: one chain, one `seq`, each entry naming the
/// gateway that wrote it.
///
/// An append is a READ COMMITTED transaction that locks the chain's one head
/// row (`audit_head`), so gateways take turns at the head and each continues
/// from the entry the last one committed. Appends that arrive while one is in
/// flight go together in the next transaction (group commit): one round of
/// lock, insert and synchronous commit per batch, not per entry. Every
/// `checkpointEvery` entries of its own, and at a clean stop, a gateway signs
/// the last entry it committed with its key, in the same transaction.
actor SharedAuditWriter {
    typealias Item = (actor: String, action: String, runId: String?, details: [String: String])

    let engine: PostgresEngine
    let gateway: String
    private let key: Curve25519.Signing.PrivateKey
    private let checkpointEvery: Int
    private let logger: Logger
    /// What the first append also records: this gateway's public key, and the
    /// head of the file chain it kept before it joined (if any).
    private var joining: [String: String]?

    private var pending: [(items: [Item], waiter: CheckedContinuation<[AuditEntry], any Error>)] = []
    private var flushing = false
    private var closed = false
    /// The last entry this gateway committed: what its checkpoints sign.
    private(set) var written: (seq: Int, hash: String) = (0, AuditEntry.genesis)
    private var lastCheckpointSeq = 0
    private var sinceCheckpoint = 0
    /// Until the gateway stops, appends wait for a database that is away; then
    /// only briefly, so a stop during an outage ends.
    private var patience = StorePatience.untilBack

    func stopping() { patience = .brief }

    init(engine: PostgresEngine, key: Curve25519.Signing.PrivateKey, checkpointEvery: Int,
         fileChainHead: (seq: Int, hash: String)?, logger: Logger) {
        self.engine = engine
        gateway = engine.member
        self.key = key
        self.checkpointEvery = max(1, checkpointEvery)
        self.logger = logger
        var joining = ["gateway": engine.member, "publicKey": key.publicKey.rawRepresentation.hex]
        if let head = fileChainHead, head.seq > 0 {
            joining["fileChainSeq"] = String(head.seq)
            joining["fileChainHash"] = head.hash
        }
        self.joining = joining
    }

    /// Appends `items` in order and returns them once committed.
    func append(_ items: [Item]) async throws -> [AuditEntry] {
        guard !closed else { throw AuditError.io("the audit log is closed") }
        return try await withCheckedThrowingContinuation { cont in
            pending.append((items, cont))
            if !flushing {
                flushing = true
                Task { await flushLoop() }
            }
        }
    }

    private func flushLoop() async {
        while !pending.isEmpty {
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            var items = batch.flatMap(\.items)
            let joining = self.joining
            if let joining { items.insert((actor: "gateway", action: "audit.key_added", runId: nil, details: joining), at: 0) }
            let sign = sinceCheckpoint + items.count >= checkpointEvery
            let result: Result<(entries: [AuditEntry], announced: Bool), any Error>
            do { result = .success(try await commit(items, joining: joining != nil, sign: sign)) } catch { result = .failure(error) }
            switch result {
            case let .success((entries, announced)):
                self.joining = nil
                var rest = announced ? entries.dropFirst() : entries[...]
                for (items, waiter) in batch {
                    waiter.resume(returning: Array(rest.prefix(items.count)))
                    rest = rest.dropFirst(items.count)
                }
                if let last = entries.last {
                    written = (last.seq, last.entryHash)
                    sinceCheckpoint = sign ? 0 : sinceCheckpoint + entries.count
                    if sign { lastCheckpointSeq = last.seq }
                }
                AuditMetrics.entries.increment(by: entries.count)
            case let .failure(error):
                for (_, waiter) in batch { waiter.resume(throwing: error) }
            }
        }
        flushing = false
    }

    /// What the last try of a commit wrote, had it committed.
    private final class Attempt: Sendable {
        let written = Mutex<(entries: [AuditEntry], announced: Bool)?>(nil)
    }

    /// The entries committed, once. A `COMMIT` whose answer was lost (the
    /// connection died with it, or stayed silent past the statement deadline)
    /// may have committed: the chain is read back at the seq of the last
    /// entry that try wrote. Its own line there means it committed, and it is
    /// reported so; anything else means it did not, and it is tried again.
    /// Never appended twice, so a run's end whose answer was lost leaves one
    /// `run.finished`, not one per try.
    private func commit(_ items: [Item], joining: Bool, sign: Bool) async throws -> (entries: [AuditEntry], announced: Bool) {
        while true {
            let attempt = Attempt()
            do {
                return try await commitOnce(items, joining: joining, sign: sign, attempt: attempt)
            } catch let error as CommitUnknown {
                guard let tried = attempt.written.withLock({ $0 }) else { throw error }
                guard let last = tried.entries.last else { continue }  // it wrote nothing that must be once
                let landed = try await engine.read(patience) { db in
                    try String.fetchOne(db, sql: "SELECT line FROM audit_entries WHERE seq = ?", arguments: [last.seq]) == last.line
                }
                if landed {
                    logger.notice("audit: a commit whose answer was lost had committed (entries \(tried.entries[0].seq)…\(last.seq)); not appended again")
                    return tried
                }
                logger.warning("audit: a commit whose answer was lost had not committed; appending again", metadata: ["error": "\(error)"])
            }
        }
    }

    /// One transaction: the head locked, the entries chained from it and
    /// inserted, the head moved, and (when due) a checkpoint of the last one.
    /// Pure apart from the database, so the engine may run it again after a
    /// connection lost before COMMIT. `announced`: the first entry is the
    /// joining one, made because this gateway's key was new to the chain.
    private func commitOnce(_ items: [Item], joining: Bool, sign: Bool, attempt: Attempt) async throws -> (entries: [AuditEntry], announced: Bool) {
        let (gateway, key) = (gateway, key)
        let publicKey = key.publicKey.rawRepresentation.hex
        // Waits for the database, as run progress does: an entry is never dropped
        // because the database was away for a while (until the gateway stops).
        return try await engine.writeLocking(patience) { db in
            guard let head = try StoreRow.fetchOne(db, sql: "SELECT seq, entry_hash FROM audit_head WHERE id = 1 FOR UPDATE") else {
                throw AuditError.io("the audit chain's head row is missing from the database")
            }
            var (seq, hash) = (head["seq"] as Int, head["entry_hash"] as String)
            let timestamp = AuditLog.now()
            if joining {
                try db.execute(sql: """
                    INSERT INTO audit_keys (gateway, public_key, added_at) VALUES (?, ?, ?)
                    ON CONFLICT (gateway, public_key) DO NOTHING
                    """, arguments: [gateway, publicKey, timestamp])
            }
            // A key already recorded for this gateway is not announced again.
            let announce = joining && db.changesCount > 0
            var entries: [AuditEntry] = []
            for (i, item) in items.enumerated() where i > 0 || !joining || announce {
                var entry = AuditEntry(seq: seq + 1, timestamp: timestamp, actor: item.actor, action: item.action, runId: item.runId,
                                       details: item.details, prevHash: hash, entryHash: "", gateway: gateway)
                entry.entryHash = entry.computedHash
                (seq, hash) = (entry.seq, entry.entryHash)
                entries.append(entry)
            }
            // Several rows per statement (far below PostgreSQL's 65,535 binds); the
            // columns queries filter on are computed from the line by the database.
            for chunk in stride(from: 0, to: entries.count, by: 1000).map({ entries[$0..<min($0 + 1000, entries.count)] }) {
                try db.execute(sql: "INSERT INTO audit_entries (seq, line) VALUES " + Array(repeating: "(?, ?)", count: chunk.count).joined(separator: ", "),
                               arguments: StoreArguments(values: chunk.flatMap { [.integer(Int64($0.seq)), .text($0.line)] }))
            }
            try db.execute(sql: "UPDATE audit_head SET seq = ?, entry_hash = ? WHERE id = 1", arguments: [seq, hash])
            if sign, !entries.isEmpty {
                try Self.insertCheckpoint(db, gateway: gateway, key: key, seq: seq, hash: hash)
            }
            attempt.written.withLock { $0 = (entries, announce) }
            return (entries, announce)
        }
    }

    static func insertCheckpoint(_ db: any StoreConnection, gateway: String, key: Curve25519.Signing.PrivateKey, seq: Int, hash: String) throws {
        let timestamp = AuditLog.now()
        let message = AuditCheckpoint.message(seq: seq, entryHash: hash, timestamp: timestamp, gateway: gateway)
        let signature = try key.signature(for: Data(message.utf8)).hex
        try db.execute(sql: "INSERT INTO audit_checkpoints (gateway, seq, entry_hash, timestamp, signature) VALUES (?, ?, ?, ?, ?)",
                       arguments: [gateway, seq, hash, timestamp, signature])
    }

    /// Signs the last entry this gateway committed, if no checkpoint covers it yet.
    func checkpoint() async throws {
        let signed = written
        guard signed.seq > lastCheckpointSeq else { return }
        let (gateway, key) = (gateway, key)
        try await engine.writeLocking(.brief) { db in
            try Self.insertCheckpoint(db, gateway: gateway, key: key, seq: signed.seq, hash: signed.hash)
        }
        // An append may have signed a later entry while this one waited.
        if signed.seq > lastCheckpointSeq {
            lastCheckpointSeq = signed.seq
            sinceCheckpoint = 0
        }
    }

    /// Waits (at most `patience`) for appends in flight, then signs a final checkpoint.
    func close(patience: Duration = .seconds(10)) async {
        let deadline = ContinuousClock.now + patience
        while flushing, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(2)) }
        if flushing { logger.error("audit entries still waiting for the database at stop; they are lost if it does not come back") }
        closed = true
        do { try await checkpoint() } catch { logger.error("final audit checkpoint failed", metadata: ["error": "\(error)"]) }
    }
}
