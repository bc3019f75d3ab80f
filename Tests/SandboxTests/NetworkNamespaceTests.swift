import ControlPlane
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Prints the cookie of the job's network namespace: unique for the namespace's
/// life and never recycled (an inode number may be, once a namespace is gone).
private let printCookie = """
import socket, struct
s = socket.socket(socket.AF_UNIX)
print(struct.unpack('Q', s.getsockopt(socket.SOL_SOCKET, 71, 8))[0])  # SO_NETNS_COOKIE
s.close()
"""

/// Also sends itself datagrams over loopback (TCP on loopback is closed to steps by
/// Landlock where the kernel has its network rules; UDP is not), then says so.
private let talkOnLoopback = printCookie + "\n" + """
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
u.sendto(b'secret of this run', u.getsockname()); u.recv(64)
print('sent')
"""

@Suite("Network namespaces of workers forked from the template",
       .enabled(if: geteuid() == 0, "only a root gateway forks workers from a template"))
struct NetworkNamespaceTests {
    func cookie(_ outcome: JobOutcome) -> UInt64? {
        outcome.result?.stdout.split(separator: "\n").first.flatMap { UInt64($0) }
    }

    @Test("a namespace left as it was made goes to a later worker, never to two live ones at once")
    func reusedOnlyWhenFree() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 4, template: true)
        try await pool.pool.start()
        var sequential: [UInt64] = []
        for _ in 0..<12 {
            let outcome = await pool.python(printCookie)
            sequential.append(try #require(cookie(outcome), "\(outcome.failure ?? "")"))
        }
        // Each worker exits after its job, and its namespace comes back unchanged.
        #expect(Set(sequential).count < sequential.count, "no namespace was reused: \(sequential)")

        // Four at once, each alive until all four have printed: four namespaces.
        let outcomes = await withTaskGroup(of: JobOutcome.self) { group in
            for _ in 0..<4 {
                group.addTask { await pool.python(printCookie + "\nimport time; time.sleep(1.5)") }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let live = outcomes.compactMap(cookie)
        #expect(live.count == 4 && Set(live).count == 4, "live workers shared a namespace: \(live)")
        await pool.cleanup()
    }

    @Test("a namespace a job sent traffic in is never given to a later job")
    func trafficDiscards() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 4, template: true)
        try await pool.pool.start()
        var later: [UInt64] = []
        for _ in 0..<3 {
            let talk = await pool.python(talkOnLoopback)
            let talked = try #require(cookie(talk), "\(talk.failure ?? "")")
            #expect(talk.succeeded && talk.result?.stdout.hasSuffix("sent\n") == true, "\(talk.failure ?? "") \(talk.result?.stderr ?? "")")
            var after: [UInt64] = []
            for _ in 0..<5 {
                let outcome = await pool.python(printCookie)
                after.append(try #require(cookie(outcome), "\(outcome.failure ?? "")"))
            }
            #expect(!after.contains(talked), "the namespace of a job that sent traffic was reused: \(talked) in \(after)")
            later += after
        }
        // The quiet jobs in between did reuse theirs, so the check above could have failed.
        #expect(Set(later).count < later.count, "no namespace was reused: \(later)")
        await pool.cleanup()
    }

    @Test("a worker without a pid namespace of its own gets a network namespace used once: its processes could outlive it")
    func onlyWithPidNamespace() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 4, template: true, namespaces: [.net, .mount]) {
            $0.require.subtract([.pidNamespace, .memfd])
        }
        try await pool.pool.start()
        var cookies: [UInt64] = []
        for _ in 0..<10 {
            let outcome = await pool.python(printCookie)
            cookies.append(try #require(cookie(outcome), "\(outcome.failure ?? "")"))
        }
        #expect(Set(cookies).count == cookies.count, "a namespace was reused without a pid namespace: \(cookies)")
        await pool.cleanup()
    }
}
