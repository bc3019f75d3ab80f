import ControlPlane
import Foundation
import Testing
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// One escape attempt, run as a step in a real sandboxed worker.
struct Attack: CustomTestStringConvertible, Sendable {
    enum Expected: Sendable {
        /// The process dies with SIGSYS; the control plane sees a sandbox violation.
        case killedBySeccomp
        /// The call fails with an error the script prints after "BLOCKED:".
        case blocked
    }

    let name: String
    let script: String
    let expected: Expected
    var testDescription: String { name }
}

private let prelude = """
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def blocked(what):
    print("BLOCKED:", what); sys.exit(3)
"""

/// Every attack here must fail. Each row: what a step tries, and the safe outcome.
let attacks: [Attack] = [
    Attack(name: "TCP to an address outside the worker", script: """
        try: socket.create_connection(("1.1.1.1", 80), timeout=3); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .blocked),
    // The worker may listen on its egress forwarders' ports; a step, on none.
    Attack(name: "listening on TCP, on a forwarder's port or another", script: """
        for port in (3130, 8080):
            try: s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen(1); print("ESCAPED", port); sys.exit(0)
            except OSError as e: last = e
        blocked(last)
        """, expected: .blocked),
    Attack(name: "UDP to a public resolver", script: """
        try: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53)); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .blocked),
    Attack(name: "a netlink socket (to reconfigure the network)", script: """
        try: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .blocked),
    Attack(name: "a packet socket", script: """
        try: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .blocked),
    // Kernel state that outlives the socket, in a network namespace a later
    // worker may be given: each would be a channel from one run to the next.
    Attack(name: "an IPv6 flow label, which lingers after its socket", script: """
        import struct
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        # struct in6_flowlabel_req: dst, label, action GET, share ANY, flags CREATE, expires, linger
        req = socket.inet_pton(socket.AF_INET6, "::1") + struct.pack("!I", 0x12345) + struct.pack("=BBHHHI", 0, 255, 1, 150, 150, 0)
        try: s.setsockopt(41, 32, req); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .killedBySeccomp),
    Attack(name: "joining an IPv4 multicast group on loopback", script: """
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try: s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("239.1.2.3") + socket.inet_aton("127.0.0.1")); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .killedBySeccomp),
    Attack(name: "joining an IPv6 multicast group on loopback", script: """
        import struct
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try: s.setsockopt(41, 20, socket.inet_pton(socket.AF_INET6, "ff02::1234") + struct.pack("=I", 1)); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .killedBySeccomp),
    Attack(name: "writing outside the workspace", script: """
        try: open("/tmp/skelm-escape-marker", "w").write("x"); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .blocked),
    Attack(name: "writing into /etc", script: """
        try: open("/etc/skelm-escape-marker", "w").write("x"); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .blocked),
    Attack(name: "reading root's home (~/.ssh lives there)", script: """
        try: print(os.listdir("/root")); print("ESCAPED")
        except OSError as e: blocked(e)
        """, expected: .blocked),
    Attack(name: "ptrace of the parent (the worker)", script: """
        r = libc.ptrace(16, os.getppid(), 0, 0)
        print("ptrace returned", r, ctypes.get_errno()); print("ESCAPED" if r == 0 else "BLOCKED")
        """, expected: .killedBySeccomp),
    Attack(name: "mount a tmpfs", script: """
        r = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None); print("ESCAPED" if r == 0 else "BLOCKED")
        """, expected: .killedBySeccomp),
    Attack(name: "creating a user namespace with unshare", script: """
        r = libc.unshare(0x10000000); print("ESCAPED" if r == 0 else "BLOCKED")
        """, expected: .killedBySeccomp),
    Attack(name: "creating a user namespace with clone", script: """
        r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)
        if r == 0: os._exit(0)
        print("ESCAPED" if r > 0 else "BLOCKED")
        """, expected: .killedBySeccomp),
    Attack(name: "joining another namespace with setns", script: """
        fd = os.open("/proc/self/ns/net", os.O_RDONLY); r = libc.setns(fd, 0); print("ESCAPED" if r == 0 else "BLOCKED")
        """, expected: .killedBySeccomp),
    Attack(name: "loading a BPF program", script: """
        r = libc.syscall(321, 5, 0, 0); print("BLOCKED", r)
        """, expected: .killedBySeccomp),
    Attack(name: "disabling ASLR with personality", script: """
        r = libc.personality(0x0040000); print("ESCAPED")
        """, expected: .killedBySeccomp),
    Attack(name: "reading the kernel keyring", script: """
        r = libc.syscall(250, 0, 0, 0, 0, 0); print("BLOCKED", r)
        """, expected: .killedBySeccomp),
    Attack(name: "perf_event_open", script: """
        r = libc.syscall(298, 0, 0, -1, -1, 0); print("BLOCKED", r)
        """, expected: .killedBySeccomp),
    Attack(name: "io_uring (which bypasses syscall filtering)", script: """
        r = libc.syscall(425, 8, 0); e = ctypes.get_errno()
        if r < 0: blocked(os.strerror(e))
        print("ESCAPED")
        """, expected: .blocked),
    Attack(name: "seeing host processes in /proc", script: """
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        if len(pids) > 20: print("ESCAPED", len(pids))
        else: blocked(f"only {len(pids)} processes visible")
        """, expected: .blocked),
]

@Suite("Sandbox holds against a hostile step", .serialized)
struct AttackTests {
    @Test("the attack fails and the control plane sees why", arguments: attacks)
    func attack(_ attack: Attack) async throws {
        try await check(attack, in: TestPool.make())
    }

    @Test("the attack fails the same way in a worker forked from the template", arguments: attacks)
    func attackForked(_ attack: Attack) async throws {
        let pool = try TestPool.make(template: geteuid() == 0)
        if geteuid() == 0 { #expect(pool.pool.spawnInfo.mode == "template") }
        try await check(attack, in: pool)
    }

    func check(_ attack: Attack, in pool: TestPool) async throws {
        let outcome = await pool.python(prelude + "\n" + attack.script)
        await pool.cleanup()
        let result = try #require(outcome.result, "no result: \(outcome.failure ?? "")")
        #expect(!result.stdout.contains("ESCAPED"), "stdout: \(result.stdout)")
        switch attack.expected {
        case .killedBySeccomp:
            #expect(result.signal == SIGSYS, "stdout: \(result.stdout) stderr: \(result.stderr)")
            #expect(outcome.violation)
            #expect(outcome.failure?.contains("seccomp") == true)
        case .blocked:
            #expect(result.stdout.contains("BLOCKED"), "stdout: \(result.stdout) stderr: \(result.stderr)")
            #expect(outcome.failure == "exited with status 3")
        }
    }

    @Test("a step cannot reach a service on the host's loopback")
    func hostLoopback() async throws {
        // A real listener on the host; the step tries to connect to it.
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(server, 4)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(server, $0, &len) } }
        let port = UInt16(bigEndian: addr.sin_port)
        defer { close(server) }

        let pool = try TestPool.make()
        let outcome = await pool.python(prelude + """

            try: socket.create_connection(("127.0.0.1", \(port)), timeout=3); print("ESCAPED")
            except OSError as e: blocked(e)
            """)
        await pool.cleanup()
        let result = try #require(outcome.result)
        #expect(result.stdout.contains("BLOCKED"), "\(result.stdout) \(result.stderr)")
    }

    @Test("nothing written outside the workspace reaches the host")
    func noHostFile() async throws {
        let marker = "/tmp/skelm-escape-\(UUID().uuidString)"
        let pool = try TestPool.make()
        let outcome = await pool.run(["sh", "-c", "echo pwned > \(marker)"])
        await pool.cleanup()
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(outcome.result?.stderr.contains("Permission denied") == true)
        #expect(outcome.failure == "exited with status 2")
    }

    @Test("the gateway's state directory is unreadable from a step")
    func stateDirUnreadable() async throws {
        let pool = try TestPool.make()
        #expect(FileManager.default.createFile(atPath: pool.stateDir + "/secret.db", contents: Data("s3cret".utf8)))
        let outcome = await pool.run(["sh", "-c", "cat \(pool.stateDir)/secret.db; ls \(pool.stateDir)"])
        await pool.cleanup()
        let result = try #require(outcome.result)
        #expect(!result.stdout.contains("s3cret"))
        #expect(result.stderr.contains("Permission denied"))
    }

    @Test("a step cannot read another job's workspace")
    func otherWorkspace() async throws {
        let pool = try TestPool.make()
        let first = await pool.run(["sh", "-c", "echo top-secret > secret.txt"], keepWorkspace: true)
        #expect(first.succeeded)
        let second = await pool.run(["cat", first.workspace + "/secret.txt"])
        await pool.cleanup()
        let result = try #require(second.result)
        #expect(!result.stdout.contains("top-secret"))
        #expect(result.stderr.contains("Permission denied"))
    }

    @Test("a fork bomb stops at the process limit")
    func forkBomb() async throws {
        let pool = try TestPool.make()
        let outcome = await pool.python(prelude + """

            import errno, time
            n = 0
            try:
                for _ in range(10000):
                    if os.fork() == 0:
                        time.sleep(30); os._exit(0)
                    n += 1
                print("ESCAPED", n)
            except OSError as e:
                print("BLOCKED after", n, errno.errorcode[e.errno]); sys.exit(3)
            """, timeoutMs: 30_000)
        await pool.cleanup()
        let result = try #require(outcome.result)
        #expect(result.stdout.contains("BLOCKED"), "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("EAGAIN"))
    }

    @Test("a memory bomb stops at the address-space limit")
    func memoryBomb() async throws {
        let pool = try TestPool.make()
        let outcome = await pool.python("""
            try:
                b = bytearray(2 * 1024 ** 3); print("ESCAPED")
            except MemoryError:
                print("BLOCKED: MemoryError"); raise SystemExit(3)
            """)
        await pool.cleanup()
        let result = try #require(outcome.result)
        #expect(result.stdout.contains("BLOCKED: MemoryError"), "\(result.stdout) \(result.stderr)")
    }

    @Test("the step and its worker run with seccomp and no_new_privs, as an unprivileged uid")
    func procStatus() async throws {
        let pool = try TestPool.make()
        let outcome = await pool.run(["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs|Uid):' /proc/self/status /proc/1/status"])
        await pool.cleanup()
        let out = try #require(outcome.result?.stdout)
        for file in ["/proc/self/status", "/proc/1/status"] {
            #expect(out.contains("\(file):Seccomp:\t2"), "\(out)")
            #expect(out.contains("\(file):NoNewPrivs:\t1"), "\(out)")
            #expect(!out.contains("\(file):Uid:\t0\t"), "\(out)")
        }
        #expect(outcome.sandbox?.active.contains(.seccomp) == true)
    }

    @Test("a step that outlives its timeout is killed and the cause named")
    func timeout() async throws {
        let pool = try TestPool.make()
        let outcome = await pool.run(["sleep", "30"], timeoutMs: 300)
        await pool.cleanup()
        #expect(outcome.result?.timedOut == true)
        #expect(outcome.failure == "timed out after 300 ms")
    }

    @Test("bare program names resolve on the trusted PATH only, and loader overrides are refused")
    func trustedPath() async throws {
        let pool = try TestPool.make()
        let missing = await pool.run(["definitely-not-a-program"])
        let ld = await pool.pool.run(ExecSpec(argv: ["true"], env: ["LD_PRELOAD": "/tmp/evil.so"], timeoutMs: 5_000))
        await pool.cleanup()
        #expect(missing.failure?.contains("not on the trusted PATH") == true)
        #expect(ld.failure?.contains("LD_PRELOAD may not be set") == true)
    }
}
