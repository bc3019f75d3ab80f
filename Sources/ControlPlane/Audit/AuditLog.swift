import Crypto
import Dispatch
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The audit chain's one writer: `stateDir/audit.jsonl`, one canonical JSON
/// entry per line, append-only; with `audit.archive`, sealed into segments as it
/// grows (AuditLayout). An append returns once its line is on disk
/// (fsync). Appends that arrive while a write is in flight are written and
/// fsynced together with the next one (group commit), so durability costs one
/// fsync per batch, not per entry.
///
/// A gateway on a PostgreSQL store several gateways may share writes to the
/// chain in the database instead (`shared`): the same entries and API, with
/// the files left as they were.
public actor AuditLog {
    public let path: String
    public let checkpointPath: String
    let checkpointEvery: Int
    let archive: GatewayConfig.Audit.Archive?
    private let layout: AuditLayout
    private let key: Curve25519.Signing.PrivateKey
    /// -1 after a rotation could not open the new live log: appends then fail
    /// (and retry the open) rather than land in a sealed segment.
    private var fd: Int32
    private var checkpointFD: Int32
    private let io = DispatchQueue(label: "skelm.audit.io")
    private let logger: Logger

    /// The last entry handed out (possibly still in the buffer).
    private var head: (seq: Int, hash: String)
    /// The last entry on disk: what checkpoints sign and a running verify
    /// compares with. Set by the io thread as it resumes the entry's callers,
    /// so a caller that asks next already sees its own entry here.
    private nonisolated let durable: Mutex<(seq: Int, hash: String)>
    private var written: (seq: Int, hash: String) { durable.withLock { $0 } }
    private var lastCheckpointSeq: Int
    private var liveFirstSeq: Int
    private var liveBytes: Int
    private var lastSegment: Int
    /// After a failed rotation, the next try waits for this seq.
    private var rotationRetryAt = 0
    private var buffer: [String] = []
    private var waiters: [CheckedContinuation<Void, any Error>] = []
    private var flushing = false
    private var closed = false
    /// `record` calls not yet appended: `close` waits for them, and so does a
    /// reader of the chain (`settled`).
    private nonisolated let pendingRecords = PendingRecords()
    /// What opening read of the existing chain: its ends only, never all of it.
    nonisolated let bytesReadAtOpen: Int
    /// The chain in the database, when this gateway writes there (nil: the files).
    nonisolated let shared: SharedAuditWriter?

    /// - Parameter archive: when to seal the live log into a segment (nil: never).
    public init(stateDir: String, checkpointEvery: Int = 1000, archive: GatewayConfig.Audit.Archive? = nil,
                logger: Logger = Logger(label: "skelm.audit")) throws {
        let layout = AuditLayout(stateDir: stateDir)
        self.layout = layout
        path = layout.live.path
        checkpointPath = layout.live.checkpoints
        self.checkpointEvery = max(1, checkpointEvery)
        self.archive = archive
        self.logger = logger
        key = try AuditKey.loadOrCreate(stateDir: stateDir)
        shared = nil
        let tail = try AuditTail.read(layout, logger: logger)
        bytesReadAtOpen = tail.bytesRead
        lastCheckpointSeq = tail.lastCheckpointSeq
        liveFirstSeq = tail.liveFirstSeq
        lastSegment = tail.lastSegment
        var liveBytes = tail.liveBytes
        var head = tail.head
        let (fd, checkpointFD) = try layout.openLive()
        self.fd = fd
        self.checkpointFD = checkpointFD
        if let repair = tail.repair {
            // Said in the chain itself, not only in a log line that may be rotated away.
            var entry = AuditEntry(seq: head.seq + 1, timestamp: AuditLog.now(), actor: "gateway", action: "audit.repaired", runId: nil,
                                   details: repair, prevHash: head.hash, entryHash: "")
            entry.entryHash = entry.computedHash
            let line = entry.line + "\n"
            try AuditLog.writeAll(fd, line).get()
            AuditMetrics.entries.increment()
            head = (entry.seq, entry.entryHash)
            liveBytes += line.utf8.count
        }
        self.head = head
        durable = Mutex(head)
        self.liveBytes = liveBytes
    }

    /// Appends to the chain in `store`'s database, signed with this gateway's
    /// key from `stateDir` (`audit.key`, created if need be). A file chain
    /// already in `stateDir` stays there, no longer written; the first entry this
    /// gateway writes to the shared chain (`audit.key_added`) names its head.
    public init(sharing store: RunStore, stateDir: String, checkpointEvery: Int = 1000,
                logger: Logger = Logger(label: "skelm.audit")) throws {
        guard let engine = store.shared else { throw AuditError.io("a shared audit chain needs a PostgreSQL store") }
        // A local, not self.layout: the `||` below would capture self before it is initialized.
        let layout = AuditLayout(stateDir: stateDir)
        self.layout = layout
        path = layout.live.path
        checkpointPath = layout.live.checkpoints
        self.checkpointEvery = max(1, checkpointEvery)
        archive = nil
        self.logger = logger
        key = try AuditKey.loadOrCreate(stateDir: stateDir)
        let fileHead = FileManager.default.fileExists(atPath: layout.live.path) || !layout.segments().isEmpty
            ? try AuditTail.read(layout, logger: logger).head : nil
        shared = SharedAuditWriter(engine: engine, key: key, checkpointEvery: checkpointEvery, fileChainHead: fileHead, logger: logger)
        // The file chain's state, unused: every entry goes to the database.
        fd = -1
        checkpointFD = -1
        head = (0, AuditEntry.genesis)
        durable = Mutex((0, AuditEntry.genesis))
        lastCheckpointSeq = 0
        liveFirstSeq = 1
        liveBytes = 0
        lastSegment = 0
        bytesReadAtOpen = 0
    }

    /// The last entry written (by this gateway, in a shared chain): a running
    /// gateway compares the chain against it, so entries cut from the end
    /// since the last checkpoint are noticed too.
    public func lastEntry() async -> (seq: Int, hash: String) {
        if let shared { return await shared.written }
        return written
    }

    /// Returns once what `record` was given before this call is in the chain
    /// (or failed), or after `limit`: the chain's readers call it first, so
    /// they see what was recorded before they asked.
    public nonisolated func settled(within limit: Duration = .seconds(5)) async {
        await pendingRecords.settled(within: limit)
    }

    /// Appends one entry and returns it once it is durable.
    @discardableResult
    public func append(actor: String, action: String, runId: String? = nil, details: [String: String] = [:]) async throws -> AuditEntry {
        if let shared { return try await shared.append([(actor, action, runId, details)])[0] }
        guard !closed else { throw AuditError.io("the audit log is closed") }
        var entry = AuditEntry(seq: head.seq + 1, timestamp: Self.now(), actor: actor, action: action, runId: runId,
                               details: details, prevHash: head.hash, entryHash: "")
        entry.entryHash = entry.computedHash
        head = (entry.seq, entry.entryHash)
        buffer.append(entry.line + "\n")
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
            waiters.append(cont)
            if !flushing { flushing = true; Task { await self.flushLoop() } }
        }
        return entry
    }

    /// Appends several entries, in this order, and returns once all are durable
    /// (one write and one fsync for all of them).
    @discardableResult
    public func appendAll(_ items: [(actor: String, action: String, runId: String?, details: [String: String])]) async throws -> [AuditEntry] {
        if let shared { return try await shared.append(items) }
        guard !closed else { throw AuditError.io("the audit log is closed") }
        var entries: [AuditEntry] = []
        for item in items {
            var entry = AuditEntry(seq: head.seq + 1, timestamp: Self.now(), actor: item.actor, action: item.action, runId: item.runId,
                                   details: item.details, prevHash: head.hash, entryHash: "")
            entry.entryHash = entry.computedHash
            head = (entry.seq, entry.entryHash)
            buffer.append(entry.line + "\n")
            entries.append(entry)
        }
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
            waiters.append(cont)
            if !flushing { flushing = true; Task { await self.flushLoop() } }
        }
        return entries
    }

    /// Appends without waiting, for records of things that already happened and
    /// that nothing waits on (a worker's exit); a failure is logged.
    public nonisolated func record(actor: String, action: String, runId: String? = nil, details: [String: String] = [:]) {
        let ticket = pendingRecords.issue()
        Task {
            defer { pendingRecords.done(ticket) }
            do { try await append(actor: actor, action: action, runId: runId, details: details) } catch {
                logger.error("audit append failed", metadata: ["action": "\(action)", "error": "\(error)"])
            }
        }
    }

    private func flushLoop() async {
        while !buffer.isEmpty {
            let lines = buffer.joined()
            let count = buffer.count
            let last = head
            let batch = waiters
            buffer.removeAll(keepingCapacity: true)
            waiters.removeAll(keepingCapacity: true)
            if fd < 0 { reopen() }
            let fd = self.fd
            // The callers are resumed by the io thread once their lines are
            // synced, not after a hop back to this actor: every awaited append
            // (a run's start and end among them) answers one thread hop sooner.
            let result: Result<Void, any Error> = await withCheckedContinuation { cont in
                io.async {
                    let result = fd < 0 ? .failure(AuditError.io("the audit log is not open")) : Self.writeAll(fd, lines)
                    if case .success = result {
                        self.durable.withLock { $0 = last }
                        // Counted before the callers go on, so a scrape after an append sees it.
                        AuditMetrics.entries.increment(by: count)
                    }
                    for w in batch { w.resume(with: result) }
                    cont.resume(returning: result)
                }
            }
            if case .success = result { liveBytes += lines.utf8.count }
            if rotationDue {
                try? await checkpoint()
                await rotate()
            } else if written.seq - lastCheckpointSeq >= checkpointEvery {
                try? await checkpoint()
            }
        }
        flushing = false
    }

    /// Signs the last entry on disk into the checkpoint file (also done at
    /// shutdown). Never an entry still in the buffer: a crash would leave a
    /// checkpoint beyond the end of the log.
    public func checkpoint() async throws {
        if let shared { return try await shared.checkpoint() }
        let signed = written
        guard signed.seq > lastCheckpointSeq else { return }
        let timestamp = Self.now()
        let message = AuditCheckpoint.message(seq: signed.seq, entryHash: signed.hash, timestamp: timestamp)
        let signature = try key.signature(for: Data(message.utf8)).hex
        let line = "{\"entryHash\":\"\(signed.hash)\",\"seq\":\(signed.seq),\"signature\":\"\(signature)\",\"timestamp\":\"\(timestamp)\"}\n"
        let fd = checkpointFD
        let result: Result<Void, any Error> = await withCheckedContinuation { cont in
            io.async { cont.resume(returning: fd < 0 ? .failure(AuditError.io("the audit checkpoints are not open")) : Self.writeAll(fd, line)) }
        }
        try result.get()
        lastCheckpointSeq = max(lastCheckpointSeq, signed.seq)
    }

    /// The live log has passed `audit.archive`'s limit.
    private var rotationDue: Bool {
        guard let archive, fd >= 0, written.seq >= liveFirstSeq, written.seq >= rotationRetryAt else { return false }
        if let mb = archive.maxSegmentMB, liveBytes >= mb << 20 { return true }
        if let n = archive.maxSegmentEntries, written.seq - liveFirstSeq + 1 >= n { return true }
        return false
    }

    /// Seals the live log, which ends with a checkpoint of its last entry, into
    /// the next segment, and continues the same chain in a fresh live log.
    /// Only the flush loop calls this, so no write is in flight.
    private func rotate() async {
        guard lastCheckpointSeq == written.seq else { return }
        let n = lastSegment + 1
        let (layout, logFD, cpFD) = (layout, fd, checkpointFD)
        let sealed: Result<Void, any Error> = await withCheckedContinuation { cont in
            io.async { cont.resume(returning: Result { try layout.seal(into: n, logFD: logFD, checkpointFD: cpFD) }) }
        }
        if case let .failure(error) = sealed {
            rotationRetryAt = written.seq + checkpointEvery
            logger.error("cannot seal the audit log into a segment; it keeps growing", metadata: ["error": "\(error)"])
            return
        }
        Glibc.close(fd)
        Glibc.close(checkpointFD)
        fd = -1
        checkpointFD = -1
        lastSegment = n
        liveFirstSeq = written.seq + 1
        liveBytes = 0
        reopen()
        logger.info("sealed an audit segment", metadata: ["segment": "\(layout.segment(n).name)", "lastSeq": "\(written.seq)"])
    }

    private func reopen() {
        do { (fd, checkpointFD) = try layout.openLive() } catch {
            logger.critical("cannot open the live audit log; appends fail until it can be", metadata: ["error": "\(error)"])
        }
    }

    /// The gateway is stopping: appends to a shared chain no longer wait for a
    /// database that is away (they fail after a few seconds instead).
    public func stopping() async {
        await shared?.stopping()
    }

    /// Waits for pending appends, writes a final checkpoint and closes the files.
    public func close() async {
        await pendingRecords.settled(within: .seconds(2))
        if let shared {
            closed = true
            return await shared.close()
        }
        while flushing { try? await Task.sleep(for: .milliseconds(2)) }
        closed = true
        do { try await checkpoint() } catch { logger.error("final audit checkpoint failed", metadata: ["error": "\(error)"]) }
        if fd >= 0 { Glibc.close(fd) }
        if checkpointFD >= 0 { Glibc.close(checkpointFD) }
        fd = -1
        checkpointFD = -1
    }

    static func writeAll(_ fd: Int32, _ text: String) -> Result<Void, any Error> {
        var bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(AuditError.io("audit write failed: \(String(cString: strerror(errno)))"))
            }
            off += n
        }
        let started = DispatchTime.now().uptimeNanoseconds
        let synced = fsync(fd) == 0
        AuditMetrics.fsync.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started))
        guard synced else { return .failure(AuditError.io("audit fsync failed: \(String(cString: strerror(errno)))")) }
        return .success(())
    }

    static func now() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}
