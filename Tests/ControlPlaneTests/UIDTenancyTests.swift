@testable import ControlPlane
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The kernel's record of a seccomp kill names a worker uid and a time; the
/// ledger names the job from them, also after the job has ended.
@Suite("Worker uid tenancy")
struct UIDTenancyTests {
    let t0 = Date(timeIntervalSince1970: 1_796_313_906)

    @Test("a record made during a job names it after the job and its worker have ended; one from before or after names nobody")
    func lateRecord() {
        let ledger = UIDTenancy { job in job == "job-a" ? (runId: "run_a", workflow: "wf") : nil }
        ledger.began(uid: 7, jobId: "job-a", at: t0)
        ledger.ended(uid: 7, at: t0 + 2)
        #expect(ledger.tenant(uid: 7, at: t0 + 1) == .init(jobId: "job-a", runId: "run_a", workflow: "wf"))
        // The kernel stamps from its coarse clock, up to a tick behind: a kill in
        // the job's first milliseconds may carry a stamp from just before its start.
        #expect(ledger.tenant(uid: 7, at: t0 - 0.0005)?.jobId == "job-a")
        #expect(ledger.tenant(uid: 7, at: t0 - 0.015)?.jobId == "job-a")
        #expect(ledger.tenant(uid: 7, at: t0 - 1) == nil)
        #expect(ledger.tenant(uid: 7, at: t0 + 3) == nil)
        #expect(ledger.tenant(uid: 8, at: t0 + 1) == nil)
    }

    @Test("a uid handed to a later job: each record names the job of its own time, not the uid's holder now")
    func reusedUID() {
        let ledger = UIDTenancy()
        ledger.began(uid: 7, jobId: "first", at: t0)
        ledger.ended(uid: 7, at: t0 + 1)
        ledger.began(uid: 7, jobId: "second", at: t0 + 5)
        #expect(ledger.tenant(uid: 7, at: t0 + 0.5)?.jobId == "first")
        #expect(ledger.tenant(uid: 7, at: t0 + 6)?.jobId == "second")
    }

    @Test("a stay whose worker's end was never reported is dropped when its uid's next job starts, not stretched over the gap")
    func missedEnd() {
        let ledger = UIDTenancy()
        ledger.began(uid: 7, jobId: "lost", at: t0)
        ledger.began(uid: 7, jobId: "next", at: t0 + 60)
        #expect(ledger.tenant(uid: 7, at: t0 + 1) == nil)
        #expect(ledger.tenant(uid: 7, at: t0 + 61)?.jobId == "next")
    }

    @Test("two stays that both match a record's stamp name nobody rather than the wrong job")
    func ambiguous() {
        let ledger = UIDTenancy()
        ledger.began(uid: 7, jobId: "first", at: t0)
        ledger.ended(uid: 7, at: t0 + 1)
        ledger.began(uid: 7, jobId: "second", at: t0 + 1.01)
        #expect(ledger.tenant(uid: 7, at: t0 + 1) == nil)
        #expect(ledger.tenant(uid: 7, at: t0 + 0.9)?.jobId == "first")
    }

    @Test("stays are forgotten once they ended longer ago than the retention")
    func retention() {
        let ledger = UIDTenancy(retention: 10)
        ledger.began(uid: 7, jobId: "old", at: t0)
        ledger.ended(uid: 7, at: t0 + 1)
        ledger.began(uid: 7, jobId: "new", at: t0 + 20)
        #expect(ledger.tenant(uid: 7, at: t0 + 0.5) == nil)
        #expect(ledger.tenant(uid: 7, at: t0 + 21)?.jobId == "new")
    }

    @Test("the kernel record's own time is read from its audit stamp")
    func recordTime() throws {
        let line = #"5,489,11022614785,-;audit: type=1326 audit(1796313906.041:140): auid=4294967295 uid=1900003813 gid=1900003813 ses=4294967295 pid=14858 comm="python3.11" exe="/usr/bin/python3.11" sig=31 arch=c000003e syscall=250 compat=0 ip=0x7ff04f7ef829 code=0x80000000"#
        let kill = try #require(SeccompKillWatcher.parse(line))
        #expect(kill.uid == 1_900_003_813)
        #expect(kill.syscall == 250)
        #expect(abs((kill.at?.timeIntervalSince1970 ?? 0) - 1_796_313_906.041) < 0.0005)
        #expect(SeccompKillWatcher.parse(line.replacingOccurrences(of: "audit(1796313906.041:140)", with: "audit(garbage)"))?.at == nil)
        // The same text written to /dev/kmsg from user space: facility user (12, 13), never the kernel's.
        #expect(SeccompKillWatcher.parse("12" + line.dropFirst()) == nil)
        #expect(SeccompKillWatcher.parse("13" + line.dropFirst()) == nil)
    }

    @Test("a kill record read after its job's worker has ended is audited against the job's run; one from no stay is audited with its uid alone; one from user space not at all")
    func watcherLateRecord() async throws {
        let dir = NSTemporaryDirectory() + "skelm-kills-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try AuditLog(stateDir: dir)
        let ledger = UIDTenancy { job in job == "job-x" ? (runId: "run_x", workflow: "wf") : nil }
        let uid: UInt32 = 1_900_000_007, now = Date()
        ledger.began(uid: uid, jobId: "job-x", at: now - 2)
        ledger.ended(uid: uid, at: now - 1)
        // Message boundaries kept, one record per read, as /dev/kmsg gives them.
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair) == 0)
        let watcher = SeccompKillWatcher(source: pair[0], audit: log, uidRange: 1_900_000_000..<1_900_050_000) { uid, at in
            at.flatMap { ledger.tenant(uid: uid, at: $0) }.map { .init(runId: $0.runId, workflow: $0.workflow, jobId: $0.jobId) }
        }
        func record(prio: Int, at time: Date, pid: Int) -> String {
            "\(prio),\(pid),0,-;audit: type=1326 audit(\(String(format: "%.3f", time.timeIntervalSince1970)):\(pid)): auid=4294967295 uid=\(uid) "
                + "gid=\(uid) ses=4294967295 pid=\(pid) comm=\"python3\" exe=\"/usr/bin/python3\" sig=31 arch=c000003e syscall=272 compat=0 ip=0x0 code=0x80000000\n"
        }
        for line in [record(prio: 5, at: now - 1.5, pid: 11), record(prio: 12, at: now - 1.5, pid: 12), record(prio: 5, at: now - 10, pid: 13)] {
            #expect(line.withCString { write(pair[1], $0, strlen($0)) } > 0)
        }
        var kills: [AuditEntry] = []
        for _ in 0..<250 where kills.count < 2 {
            kills = try AuditVerifier.query(stateDir: dir, action: "sandbox.seccomp_kill")
            if kills.count < 2 { try await Task.sleep(for: .milliseconds(20)) }
        }
        watcher.stop()
        close(pair[1])
        await log.close()
        let byPid = Dictionary(kills.map { ($0.details["pid"] ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byPid["11"]?.runId == "run_x")
        #expect(byPid["11"]?.details["job"] == "job-x")
        #expect(byPid["11"]?.details["workflow"] == "wf")
        #expect(byPid["13"] != nil && byPid["13"]?.runId == nil && byPid["13"]?.details["job"] == nil)
        #expect(byPid["12"] == nil, "a line from user space was audited as the kernel's")
        #expect(kills.count == 2)
    }
}
