import ControlPlane
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Audit chain")
struct AuditTests {
    func tempDir() -> String {
        let dir = "/tmp/skelm-audit-\(UUID().uuidString.prefix(8).lowercased())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func lines(_ dir: String) -> [String] {
        ((try? String(contentsOfFile: dir + "/audit.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func write(_ dir: String, _ lines: [String]) throws {
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/audit.jsonl", atomically: true, encoding: .utf8)
    }

    /// A closed log of `n` entries with a checkpoint every `every`.
    func makeLog(_ n: Int, every: Int = 1000) async throws -> String {
        let dir = tempDir()
        let log = try AuditLog(stateDir: dir, checkpointEvery: every)
        for i in 1...n {
            try await log.append(actor: "test", action: "thing.done", runId: i % 2 == 0 ? "run_\(i)" : nil,
                                 details: ["i": "\(i)", "text": "quote \" slash / newline \n tab \t ünïcødé"])
        }
        await log.close()
        return dir
    }

    @Test("entries chain from 64 zeros, each hash covers the canonical entry, and the key file is 0600")
    func chain() async throws {
        let dir = try await makeLog(5)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try JSONDecoder().decode(AuditEntry.self, from: Data(lines(dir)[0].utf8))
        #expect(first.seq == 1)
        #expect(first.prevHash == String(repeating: "0", count: 64))
        #expect(first.entryHash == first.computedHash)
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(report.ok, "\(String(describing: report.firstBreak))")
        #expect(report.entries == 5)
        #expect(report.checkpoints == 1, "a checkpoint is written at close")
        var st = stat()
        #expect(stat(dir + "/audit.key", &st) == 0 && st.st_mode & 0o777 == 0o600)
    }

    @Test("details that look like the entry's own fields neither fool verify nor hide an edit")
    func trickyDetails() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try AuditLog(stateDir: dir)
        try await log.append(actor: "t", action: "a", details: ["entryHash": String(repeating: "0", count: 64),
                                                               "note": #"","entryHash":"x","prevHash":""#, "seq": "999"])
        try await log.append(actor: "t", action: "b", runId: #"","seq":5"#)
        await log.close()
        #expect(AuditVerifier.verify(stateDir: dir).ok)
        var l = lines(dir)
        l[0] = l[0].replacingOccurrences(of: "\"seq\":\"999\"", with: "\"seq\":\"998\"")
        try write(dir, l)
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(report.firstBreak?.kind == "bad_hash")
        #expect(report.firstBreak?.seq == 1)
    }

    @Test("concurrent appends are all durable, in order, with no gaps (group commit)")
    func concurrentAppends() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try AuditLog(stateDir: dir, checkpointEvery: 100)
        let seqs = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<500 { group.addTask { try await log.append(actor: "t", action: "a", details: ["i": "\(i)"]).seq } }
            var all: [Int] = []
            for try await s in group { all.append(s) }
            return all
        }
        #expect(Set(seqs) == Set(1...500))
        await log.close()
        let report = AuditVerifier.verify(stateDir: dir, checkpointEvery: 100)
        #expect(report.ok, "\(String(describing: report.firstBreak))")
        #expect(report.checkpoints >= 1, "a checkpoint once 100 entries are written")
    }

    @Test("an edited entry is named by verify")
    func edited() async throws {
        let dir = try await makeLog(20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var l = lines(dir)
        l[11] = l[11].replacingOccurrences(of: "\"i\":\"12\"", with: "\"i\":\"99\"")
        try write(dir, l)
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(!report.ok)
        #expect(report.firstBreak?.kind == "bad_hash")
        #expect(report.firstBreak?.seq == 12)
    }

    @Test("a seq edited into a number too large for an Int is a break verify names, not a crash")
    func hugeSeq() async throws {
        let dir = try await makeLog(20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var l = lines(dir)
        l[5] = l[5].replacingOccurrences(of: "\"seq\":6,", with: "\"seq\":123456789012345678901234567890,")
        #expect(l[5].contains("123456789012345678901234567890"), "\(l[5])")
        try write(dir, l)
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(!report.ok)
        #expect(report.firstBreak != nil)
    }

    @Test("an entry rehashed after editing breaks the next link")
    func rehashed() async throws {
        let dir = try await makeLog(20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var l = lines(dir)
        var e = try JSONDecoder().decode(AuditEntry.self, from: Data(l[4].utf8))
        e.action = "nothing.happened"
        e.entryHash = e.computedHash
        l[4] = e.line
        try write(dir, l)
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(report.firstBreak?.kind == "broken_link")
        #expect(report.firstBreak?.seq == 6)
    }

    @Test("an edit, a rehashed edit or a removal is named at every line, wherever verify splits the log across cores")
    func everyLine() async throws {
        let dir = try await makeLog(60)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let original = lines(dir)
        #expect(AuditVerifier.verify(stateDir: dir).ok)
        for k in 0..<original.count {
            var edited = original
            edited[k] = edited[k].replacingOccurrences(of: "\"i\":\"\(k + 1)\"", with: "\"i\":\"x\"")
            try write(dir, edited)
            let report = AuditVerifier.verify(stateDir: dir)
            #expect(report.firstBreak?.kind == "bad_hash" && report.firstBreak?.seq == k + 1, "edit at line \(k + 1): \(report)")
            guard k < original.count - 1 else { continue }
            var rehashed = original
            var e = try JSONDecoder().decode(AuditEntry.self, from: Data(rehashed[k].utf8))
            e.action = "nothing.happened"
            e.entryHash = e.computedHash
            rehashed[k] = e.line
            try write(dir, rehashed)
            let link = AuditVerifier.verify(stateDir: dir)
            #expect(link.firstBreak?.kind == "broken_link" && link.firstBreak?.seq == k + 2, "rehash at line \(k + 1): \(link)")
            var removed = original
            removed.remove(at: k)
            try write(dir, removed)
            let gap = AuditVerifier.verify(stateDir: dir)
            #expect(gap.firstBreak?.kind == "seq_gap" && gap.firstBreak?.line == k + 1, "removal at line \(k + 1): \(gap)")
        }
    }

    @Test("a removed entry in the middle is a gap in seq")
    func gap() async throws {
        let dir = try await makeLog(20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var l = lines(dir)
        l.remove(at: 7)
        try write(dir, l)
        #expect(AuditVerifier.verify(stateDir: dir).firstBreak?.kind == "seq_gap")
    }

    @Test("deleting the last 10 entries is reported as truncation after the checkpoint")
    func truncated() async throws {
        let dir = try await makeLog(30)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try write(dir, Array(lines(dir).dropLast(10)))
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(report.firstBreak?.kind == "truncated")
        #expect(report.firstBreak?.message.contains("ends at seq 20") == true)
    }

    @Test("a running writer notices entries cut after its last checkpoint")
    func truncatedWhileRunning() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try AuditLog(stateDir: dir, checkpointEvery: 1000)
        for i in 1...15 { try await log.append(actor: "t", action: "a", details: ["i": "\(i)"]) }
        try write(dir, Array(lines(dir).dropLast(10)))
        let head = await log.lastEntry()
        let report = AuditVerifier.verify(stateDir: dir, head: head)
        #expect(report.firstBreak?.kind == "truncated")
        await log.close()
    }

    @Test("a log rewritten from the start, consistently, fails against the signed checkpoint")
    func rewrittenFromStart() async throws {
        let dir = try await makeLog(10)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var prev = String(repeating: "0", count: 64)
        var rewritten: [String] = []
        for line in lines(dir) {
            var e = try JSONDecoder().decode(AuditEntry.self, from: Data(line.utf8))
            e.actor = "someone-else"
            e.prevHash = prev
            e.entryHash = e.computedHash
            prev = e.entryHash
            rewritten.append(e.line)
        }
        try write(dir, rewritten)
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(report.firstBreak?.kind == "checkpoint_mismatch")
    }

    @Test("a forged checkpoint fails its signature; a deleted checkpoint file is noticed")
    func checkpoints() async throws {
        let dir = try await makeLog(12, every: 5)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/audit.checkpoints.jsonl"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        try original.replacingOccurrences(of: "\"seq\":5", with: "\"seq\":4").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(AuditVerifier.verify(stateDir: dir).firstBreak?.kind == "bad_signature")
        try FileManager.default.removeItem(atPath: path)
        #expect(AuditVerifier.verify(stateDir: dir, checkpointEvery: 5).firstBreak?.kind == "missing_checkpoint")
    }

    @Test("a torn last line (a crash mid-write) is cut off, said so in the chain, and the chain continues")
    func tornWrite() async throws {
        let dir = try await makeLog(3)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let handle = FileHandle(forWritingAtPath: dir + "/audit.jsonl")!
        handle.seekToEndOfFile()
        handle.write(Data("{\"action\":\"half".utf8))
        try handle.close()
        let log = try AuditLog(stateDir: dir)
        let next = try await log.append(actor: "t", action: "after.crash")
        #expect(next.seq == 5)
        #expect(lines(dir)[3].contains("\"action\":\"audit.repaired\""))
        await log.close()
        #expect(AuditVerifier.verify(stateDir: dir).ok)
    }

    @Test("a group- or world-readable key is refused")
    func insecureKey() async throws {
        let dir = try await makeLog(1)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir + "/audit.key", 0o644)
        #expect(throws: AuditError.self) { try AuditLog(stateDir: dir) }
    }

    @Test("query filters and orders newest first; CSV quotes what needs quoting")
    func queryAndExport() async throws {
        let dir = try await makeLog(10)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runs = try AuditVerifier.query(stateDir: dir, runId: "run_4")
        #expect(runs.map(\.seq) == [4])
        let recent = try AuditVerifier.query(stateDir: dir, limit: 3)
        #expect(recent.map(\.seq) == [10, 9, 8])
        let page = try AuditVerifier.query(stateDir: dir, before: 8, limit: 2)
        #expect(page.map(\.seq) == [7, 6])
        let csv = AuditExport.csv(try AuditVerifier.query(stateDir: dir, limit: 2).reversed())
        #expect(csv.hasPrefix(AuditExport.header + "\n9,"))
        #expect(csv.contains("\"{\"\"i\"\":\"\"9\"\""))
    }
}
