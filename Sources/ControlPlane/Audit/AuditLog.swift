import Crypto
import Dispatch
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The audit chain's one writer: `stateDir/audit.jsonl`, one canonical JSON
/// entry per line, append-only. An append returns once its line is on disk
/// (fsync). Appends that arrive while a write is in flight are written and
/// fsynced together with the next one (group commit), so durability costs one
/// fsync per batch, not per entry.
public actor AuditLog {
    public let path: String
    public let checkpointPath: String
    let checkpointEvery: Int
    private let key: Curve25519.Signing.PrivateKey
    private let fd: Int32
    private let checkpointFD: Int32
    private let io = DispatchQueue(label: "skelm.audit.io")
    private let logger: Logger

    private var head: (seq: Int, hash: String)
    private var lastCheckpointSeq: Int
    private var buffer: [String] = []
    private var waiters: [CheckedContinuation<Void, any Error>] = []
    private var flushing = false
    private var closed = false
    /// `record` calls not yet appended; `close` waits for them.
    private nonisolated let pendingRecords = Mutex(0)

    public init(stateDir: String, checkpointEvery: Int = 1000, logger: Logger = Logger(label: "skelm.audit")) throws {
        path = stateDir + "/audit.jsonl"
        checkpointPath = stateDir + "/audit.checkpoints.jsonl"
        self.checkpointEvery = max(1, checkpointEvery)
        self.logger = logger
        key = try AuditKey.loadOrCreate(stateDir: stateDir)
        head = try Self.readHead(path)
        lastCheckpointSeq = (try? AuditVerifier.readCheckpoints(checkpointPath).last?.seq) ?? 0
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        checkpointFD = open(checkpointPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0, checkpointFD >= 0 else { throw AuditError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
    }

    /// The last entry written: a running gateway compares the file against it,
    /// so entries cut from the end since the last checkpoint are noticed too.
    public var lastEntry: (seq: Int, hash: String) { head }

    /// Appends one entry and returns it once it is durable.
    @discardableResult
    public func append(actor: String, action: String, runId: String? = nil, details: [String: String] = [:]) async throws -> AuditEntry {
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
        pendingRecords.withLock { $0 += 1 }
        Task {
            defer { pendingRecords.withLock { $0 -= 1 } }
            do { try await append(actor: actor, action: action, runId: runId, details: details) } catch {
                logger.error("audit append failed", metadata: ["action": "\(action)", "error": "\(error)"])
            }
        }
    }

    private func flushLoop() async {
        while !buffer.isEmpty {
            let lines = buffer.joined()
            let batch = waiters
            buffer.removeAll(keepingCapacity: true)
            waiters.removeAll(keepingCapacity: true)
            let fd = self.fd
            let result: Result<Void, any Error> = await withCheckedContinuation { cont in
                io.async { cont.resume(returning: Self.writeAll(fd, lines)) }
            }
            for w in batch { w.resume(with: result) }
            if head.seq - lastCheckpointSeq >= checkpointEvery { try? await checkpoint() }
        }
        flushing = false
    }

    /// Signs the current head into the checkpoint file (also done at shutdown).
    public func checkpoint() async throws {
        guard head.seq > lastCheckpointSeq else { return }
        let timestamp = Self.now()
        let message = AuditCheckpoint.message(seq: head.seq, entryHash: head.hash, timestamp: timestamp)
        let signature = try key.signature(for: Data(message.utf8)).hex
        let cp = AuditCheckpoint(seq: head.seq, entryHash: head.hash, timestamp: timestamp, signature: signature)
        let line = "{\"entryHash\":\"\(cp.entryHash)\",\"seq\":\(cp.seq),\"signature\":\"\(cp.signature)\",\"timestamp\":\"\(cp.timestamp)\"}\n"
        let fd = checkpointFD
        let result: Result<Void, any Error> = await withCheckedContinuation { cont in
            io.async { cont.resume(returning: Self.writeAll(fd, line)) }
        }
        try result.get()
        lastCheckpointSeq = cp.seq
    }

    /// Waits for pending appends, writes a final checkpoint and closes the files.
    public func close() async {
        for _ in 0..<1000 where pendingRecords.withLock({ $0 }) > 0 { try? await Task.sleep(for: .milliseconds(2)) }
        while flushing { try? await Task.sleep(for: .milliseconds(2)) }
        closed = true
        do { try await checkpoint() } catch { logger.error("final audit checkpoint failed", metadata: ["error": "\(error)"]) }
        Glibc.close(fd)
        Glibc.close(checkpointFD)
    }

    private static func writeAll(_ fd: Int32, _ text: String) -> Result<Void, any Error> {
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
        guard fsync(fd) == 0 else { return .failure(AuditError.io("audit fsync failed: \(String(cString: strerror(errno)))")) }
        return .success(())
    }

    static func now() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    /// The last complete entry of an existing log. A torn last line (a crash in
    /// the middle of a write) is cut off, and said so in the log.
    static func readHead(_ path: String) throws -> (seq: Int, hash: String) {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return (0, AuditEntry.genesis) }
        var end = data.count
        if data.last != UInt8(ascii: "\n") {
            end = (data.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? 0
            guard truncate(path, off_t(end)) == 0 else { throw AuditError.io("cannot repair the torn end of \(path)") }
        }
        guard end > 0 else { return (0, AuditEntry.genesis) }
        let body = data[..<(end - 1)]
        let start = body.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
        guard let last = try? JSONDecoder().decode(AuditEntry.self, from: data[start..<(end - 1)]) else {
            throw AuditError.io("the last entry of \(path) is not an audit entry; run `skelm audit verify`")
        }
        return (last.seq, last.entryHash)
    }
}
