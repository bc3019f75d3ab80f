@testable import ControlPlane
import Testing

/// The start-up check that no live process holds one of the gateway's worker
/// uids skips processes that are already dying.
@Suite("Worker uid range")
struct UidRangeTests {
    @Test("a status line with SIGKILL pending, for the thread or the process, marks a dying process; other masks do not")
    func killPending() {
        #expect(Gateway.killPending("SigPnd:\t0000000000000100"))
        #expect(Gateway.killPending("ShdPnd:\t0000000000000100"))
        #expect(Gateway.killPending("ShdPnd:\t0000000000004102"))
        #expect(!Gateway.killPending("ShdPnd:\t0000000000004002"))
        #expect(!Gateway.killPending("SigBlk:\t0000000000000100"))
        #expect(!Gateway.killPending("SigPnd:\tnot-hex"))
    }
}
