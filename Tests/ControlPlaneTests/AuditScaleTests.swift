@testable import ControlPlane
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An audit log that runs for months: start-up and queries read the ends of the
/// files, not all of them; the live log is sealed into segments that one chain
/// runs through.
@Suite("Audit at scale: tail open, segments, paging")
struct AuditScaleTests {
    func tempDir() -> String {
        let dir = "/tmp/skelm-audit-scale-\(UUID().uuidString.prefix(8).lowercased())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Bytes this process has read through read(2) and friends so far.
    func processBytesRead() -> Int {
        let io = (try? String(contentsOfFile: "/proc/self/io", encoding: .utf8)) ?? ""
        let line = io.split(separator: "\n").first { $0.hasPrefix("rchar:") }
        return line.flatMap { Int($0.dropFirst(6).trimmingCharacters(in: .whitespaces)) } ?? 0
    }

    /// 35 entries appended one at a time with a segment every 10: segments 1-10,
    /// 11-20, 21-30 and a live log of 31-35. Every third is `run.finished` of run_a.
    func segmentedLog(_ dir: String, entries: Int = 35) async throws {
        let log = try AuditLog(stateDir: dir, checkpointEvery: 1000, archive: .init(maxSegmentEntries: 10))
        for i in 1...entries {
            try await log.append(actor: i % 2 == 0 ? "even" : "odd", action: i % 3 == 0 ? "run.finished" : "thing.done",
                                 runId: i % 3 == 0 ? "run_a" : nil, details: ["i": "\(i)"])
        }
        await log.close()
    }

    @Test("opening a 1,000,000-entry log reads its end only, and continues its chain")
    func tailOpen() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AuditLog.synthesize(stateDir: dir, entries: 1_000_000)
        let size = Int((try FileManager.default.attributesOfItem(atPath: dir + "/audit.jsonl")[.size] as? NSNumber)?.intValue ?? 0)
        #expect(size > 200_000_000)
        let before = processBytesRead()
        let log = try AuditLog(stateDir: dir)
        // Whatever reads the whole file (read(2) or a count kept here) fails one of these.
        #expect(processBytesRead() - before < size / 10, "opening read most of the log")
        #expect(log.bytesReadAtOpen < 1 << 20, "opening read \(log.bytesReadAtOpen) bytes")
        let head = await log.lastEntry()
        #expect(head.seq == 1_000_000)
        let next = try await log.append(actor: "t", action: "after.open")
        #expect(next.seq == 1_000_001)
        #expect(next.prevHash == head.hash)
        await log.close()

        let layout = AuditLayout(stateDir: dir)
        let page = AuditQuery.newestFirst(layout, AuditFilter(), limit: 10)
        #expect(page.entries.map(\.seq) == Array((999_992...1_000_001).reversed()))
        #expect(page.bytesRead < 1 << 20)
        let middle = AuditQuery.newestFirst(layout, AuditFilter(before: 500_000), limit: 3)
        #expect(middle.entries.map(\.seq) == [499_999, 499_998, 499_997])
        #expect(middle.bytesRead < 1 << 20, "the cursor is found by bisecting, not by reading up to it")
    }

    @Test("a synthesized chain verifies, in Swift and in Python, and a gateway continues it")
    func synthesized() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AuditLog.synthesize(stateDir: dir, entries: 2500)
        let report = AuditVerifier.verify(stateDir: dir, checkpointEvery: 1000)
        #expect(report.ok, "\(String(describing: report.firstBreak))")
        #expect(report.entries == 2500 && report.checkpoints == 3)
        let log = try AuditLog(stateDir: dir)
        #expect(try await log.append(actor: "t", action: "a").seq == 2501)
        await log.close()
        #expect(AuditVerifier.verify(stateDir: dir).ok)
        #expect(try python(dir).status == 0)
        #expect(throws: AuditError.self) { try AuditLog.synthesize(stateDir: dir, entries: 1) }
    }

    @Test("rotation seals read-only segments that end signed, and the one chain runs on through them")
    func rotation() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await segmentedLog(dir)
        let layout = AuditLayout(stateDir: dir)
        #expect(layout.segments().map(\.name) == ["segments/000001.jsonl", "segments/000002.jsonl", "segments/000003.jsonl"])
        for (n, file) in layout.segments().enumerated() {
            let entries = try lines(file.path).map { try JSONDecoder().decode(AuditEntry.self, from: Data($0.utf8)) }
            #expect(entries.map(\.seq) == Array((n * 10 + 1)...(n * 10 + 10)))
            let last = try JSONDecoder().decode(AuditCheckpoint.self, from: Data(lines(file.checkpoints).last!.utf8))
            #expect(last.seq == n * 10 + 10 && last.entryHash == entries.last?.entryHash)
            #expect(AuditLayout.isReadOnly(file.path) && AuditLayout.isReadOnly(file.checkpoints))
        }
        let sealedLast = try JSONDecoder().decode(AuditEntry.self, from: Data(lines(layout.segment(3).path).last!.utf8))
        let liveFirst = try JSONDecoder().decode(AuditEntry.self, from: Data(lines(dir + "/audit.jsonl").first!.utf8))
        #expect(liveFirst.seq == 31 && liveFirst.prevHash == sealedLast.entryHash)

        let report = AuditVerifier.verify(stateDir: dir, checkpointEvery: 1000)
        #expect(report.ok, "\(String(describing: report.firstBreak))")
        #expect(report.entries == 35 && report.lastSeq == 35)
        #expect(report.segments.map(\.file) == ["segments/000001.jsonl", "segments/000002.jsonl", "segments/000003.jsonl", "audit.jsonl"])
        #expect(report.segments.map(\.sealed) == [true, true, true, false])
        #expect(report.segments.map(\.firstSeq) == [1, 11, 21, 31])
        let py = try python(dir)
        #expect(py.status == 0 && py.out.contains("ok: 35 entries"), "\(py.out)")

        // Reopened, it continues from the live log; with the live log just sealed, from the last segment.
        let again = try AuditLog(stateDir: dir, checkpointEvery: 1000, archive: .init(maxSegmentEntries: 10))
        for i in 36...40 { #expect(try await again.append(actor: "t", action: "a", details: ["i": "\(i)"]).seq == i) }
        await again.close()
        #expect(layout.segments().count == 4)
        #expect(lines(dir + "/audit.jsonl").isEmpty)
        let third = try AuditLog(stateDir: dir, checkpointEvery: 1000, archive: .init(maxSegmentEntries: 10))
        let next = try await third.append(actor: "t", action: "a")
        #expect(next.seq == 41)
        await third.close()
        #expect(AuditVerifier.verify(stateDir: dir).ok)
    }

    @Test("a size limit rotates too, at a checkpoint")
    func rotationBySize() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try AuditLog(stateDir: dir, checkpointEvery: 1000, archive: .init(maxSegmentMB: 1))
        let blob = String(repeating: "x", count: 40_000)
        for i in 1...60 { try await log.append(actor: "t", action: "big", details: ["i": "\(i)", "blob": blob]) }
        await log.close()
        let segments = AuditLayout(stateDir: dir).segments()
        #expect(segments.count == 2)
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(report.ok && report.entries == 60, "\(String(describing: report.firstBreak))")
    }

    @Test("queries page backwards across segments, with filters and the before cursor; export runs oldest first")
    func pagingAcrossSegments() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await segmentedLog(dir)
        #expect(try AuditVerifier.query(stateDir: dir, limit: 5).map(\.seq) == [35, 34, 33, 32, 31])
        #expect(try AuditVerifier.query(stateDir: dir, before: 23, limit: 5).map(\.seq) == [22, 21, 20, 19, 18])
        func all(limit: Int, action: String? = nil, runId: String? = nil, actor: String? = nil) throws -> [Int] {
            var out: [Int] = []
            var before: Int?
            while true {
                let page = try AuditVerifier.query(stateDir: dir, runId: runId, actor: actor, action: action, before: before, limit: limit)
                out += page.map(\.seq)
                guard page.count == limit, let last = page.last?.seq else { return out }
                before = last
            }
        }
        #expect(try all(limit: 4) == Array((1...35).reversed()))
        #expect(try all(limit: 3, action: "run.*") == stride(from: 33, through: 3, by: -3).map { $0 })
        #expect(try all(limit: 2, runId: "run_a", actor: "even") == [30, 24, 18, 12, 6])
        #expect(try all(limit: 7, action: "thing.done", actor: "odd").count == 12)
        #expect(try AuditVerifier.query(stateDir: dir, action: "nothing.such").isEmpty)
        var exported: [Int] = []
        AuditVerifier.export(stateDir: dir, filter: AuditFilter()) { exported += $0.map(\.seq) }
        #expect(exported == Array(1...35))
        var finished: [Int] = []
        AuditVerifier.export(stateDir: dir, filter: AuditFilter(action: "run.finished")) { finished += $0.map(\.seq) }
        #expect(finished == stride(from: 3, through: 33, by: 3).map { $0 })
    }

    @Test("an edit, a cut or a removal in a sealed segment is caught and names the segment")
    func sealedTampering() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await segmentedLog(dir)
        let layout = AuditLayout(stateDir: dir)
        let seg2 = layout.segment(2)
        let original = lines(seg2.path)
        func put(_ l: [String]) throws {
            chmod(seg2.path, 0o600)
            try (l.joined(separator: "\n") + (l.isEmpty ? "" : "\n")).write(toFile: seg2.path, atomically: false, encoding: .utf8)
        }
        var edited = original
        edited[4] = edited[4].replacingOccurrences(of: "\"i\":\"15\"", with: "\"i\":\"51\"")
        try put(edited)
        var report = AuditVerifier.verify(stateDir: dir)
        #expect(report.firstBreak?.kind == "bad_hash" && report.firstBreak?.seq == 15)
        #expect(report.firstBreak?.file == "segments/000002.jsonl")
        #expect(report.firstBreak?.message.contains("segments/000002.jsonl") == true)
        #expect(report.segments.map(\.ok) == [true, false])
        let py = try python(dir)
        #expect(py.status == 1 && py.out.contains("segments/000002.jsonl"), "\(py.out)")

        try put(Array(original.dropLast(2)))
        report = AuditVerifier.verify(stateDir: dir)
        #expect(report.firstBreak?.kind == "truncated" && report.firstBreak?.file == "segments/000002.jsonl", "\(report)")

        try put(original)
        let checkpoints = try String(contentsOfFile: seg2.checkpoints, encoding: .utf8)
        try FileManager.default.removeItem(atPath: seg2.checkpoints)
        report = AuditVerifier.verify(stateDir: dir)
        #expect(report.firstBreak?.kind == "missing_checkpoint" && report.firstBreak?.file == "segments/000002.jsonl", "\(report)")
        try checkpoints.write(toFile: seg2.checkpoints, atomically: false, encoding: .utf8)
        #expect(AuditVerifier.verify(stateDir: dir).ok)

        try FileManager.default.moveItem(atPath: seg2.path, toPath: dir + "/moved.jsonl")
        try FileManager.default.moveItem(atPath: seg2.checkpoints, toPath: dir + "/moved.checkpoints.jsonl")
        report = AuditVerifier.verify(stateDir: dir)
        #expect(report.firstBreak?.kind == "seq_gap" && report.firstBreak?.file == "segments/000003.jsonl", "\(report)")
        #expect(try python(dir).status == 1)
    }

    @Test("a torn last line is cut, kept aside and recorded; a whole last entry missing its newline is kept; a corrupt one stops the start")
    func tornTail() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await segmentedLog(dir, entries: 13)
        let path = dir + "/audit.jsonl"
        let handle = FileHandle(forWritingAtPath: path)!
        handle.seekToEndOfFile()
        handle.write(Data("{\"action\":\"half".utf8))
        try handle.close()
        let log = try AuditLog(stateDir: dir, archive: .init(maxSegmentEntries: 10))
        #expect(await log.lastEntry().seq == 14)
        await log.close()
        let repaired = try JSONDecoder().decode(AuditEntry.self, from: Data(lines(path).last!.utf8))
        #expect(repaired.action == "audit.repaired" && repaired.seq == 14 && repaired.details["droppedBytes"] == "15")
        #expect(try String(contentsOfFile: dir + "/audit.torn", encoding: .utf8) == "{\"action\":\"half\n")
        #expect(AuditVerifier.verify(stateDir: dir).ok)

        // The writer's last line, whole but for its newline: nothing to drop.
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text.removeLast()
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        let kept = try AuditLog(stateDir: dir)
        #expect(try await kept.append(actor: "t", action: "a").seq == 15)
        await kept.close()
        #expect(AuditVerifier.verify(stateDir: dir).ok)

        var l = lines(path)
        l[l.count - 1] = l[l.count - 1].replacingOccurrences(of: "\"actor\":\"t\"", with: "\"actor\":\"x\"")
        try (l.joined(separator: "\n") + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: AuditError.self) { try AuditLog(stateDir: dir) }
    }

    @Test("a rotation cut off between its two renames is finished at the next start")
    func interruptedRotation() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await segmentedLog(dir, entries: 25)
        // The state a crash leaves after the checkpoints moved but before the log did.
        let layout = AuditLayout(stateDir: dir)
        let log = try AuditLog(stateDir: dir)
        await log.close()
        try FileManager.default.moveItem(atPath: dir + "/audit.checkpoints.jsonl", toPath: layout.segment(3).checkpoints)
        let reopened = try AuditLog(stateDir: dir)
        #expect(try await reopened.append(actor: "t", action: "a").seq == 26)
        await reopened.close()
        #expect(layout.segments().count == 3)
        let report = AuditVerifier.verify(stateDir: dir)
        #expect(report.ok, "\(String(describing: report.firstBreak))")
        #expect(report.segments.map(\.firstSeq) == [1, 11, 21, 26])
    }

    @Test("audit.archive decodes and is validated")
    func archiveConfig() throws {
        let audit = try JSONDecoder().decode(GatewayConfig.Audit.self, from: Data(#"{"archive": {"maxSegmentMB": 256}}"#.utf8))
        #expect(audit.archive?.maxSegmentMB == 256 && audit.archive?.maxSegmentEntries == nil && audit.checkpointEvery == 1000)
        try audit.validate(file: "c")
        let empty = try JSONDecoder().decode(GatewayConfig.Audit.self, from: Data(#"{"archive": {}}"#.utf8))
        #expect(throws: ConfigError.self) { try empty.validate(file: "c") }
        let zero = try JSONDecoder().decode(GatewayConfig.Audit.self, from: Data(#"{"archive": {"maxSegmentEntries": 0}}"#.utf8))
        #expect(throws: ConfigError.self) { try zero.validate(file: "c") }
    }

    func python(_ dir: String) throws -> (status: Int32, out: String) {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../scripts/audit-verify.py").standardized.path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, dir]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
