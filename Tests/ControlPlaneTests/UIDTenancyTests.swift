@testable import ControlPlane
import Foundation
import Testing

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
        // The kernel cuts its stamp to the millisecond: a kill in the job's first
        // millisecond may carry a stamp just before the job's start.
        #expect(ledger.tenant(uid: 7, at: t0 - 0.0005)?.jobId == "job-a")
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
        #expect(ledger.tenant(uid: 7, at: nil)?.jobId == "second", "without a time: the stay still open")
        // A worker that serves one job after another: the next job ends the stay of the one before.
        ledger.began(uid: 7, jobId: "third", at: t0 + 8)
        #expect(ledger.tenant(uid: 7, at: t0 + 7)?.jobId == "second")
        #expect(ledger.tenant(uid: 7, at: t0 + 9)?.jobId == "third")
    }

    @Test("two stays that both match a record's millisecond name nobody rather than the wrong job")
    func ambiguous() {
        let ledger = UIDTenancy()
        ledger.began(uid: 7, jobId: "first", at: t0)
        ledger.ended(uid: 7, at: t0 + 1)
        ledger.began(uid: 7, jobId: "second", at: t0 + 1.0004)
        #expect(ledger.tenant(uid: 7, at: t0 + 1) == nil)
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
    }
}
