import Foundation
import Synchronization
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Code a step did not bring: programs its policy does not allow, code another
/// step left behind. Each row is one way around `allowedExecutables` or around
/// the step boundary, and shows it failing.
@Suite("Trust boundary: only the code a step may run", .serialized)
final class ExecutionBoundaryTests {
    /// Both ways of starting workers: template.c and spawn.c each build the
    /// mounts and the memfd setting, so each is attacked. An instance per test
    /// case (swift-testing's way) starts only the gateway its case needs.
    static let modes = ["template", "exec"]
    private let started = Mutex<[TestGateway]>([])
    static let secret = "s3cr3t-token-value-42"

    static let probe = #"""
        import ctypes, glob, json, os, shutil, subprocess, sys
        attack = os.environ["ATTACK"]
        loader = "/lib64/ld-linux-x86-64.so.2"
        python = os.path.realpath(sys.executable)
        def run(argv, **kw):
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=20, **kw)
                return "status %d: %s%s" % (r.returncode, r.stdout, r.stderr)
            except OSError as e:
                return "refused: %s" % e
        if attack == "control":
            out = run([python, "-c", "print('ran')"])
        elif attack == "loader-reads-a-program":
            out = run([loader, "/usr/bin/id"])
        elif attack == "loader-runs-a-copy":
            shutil.copy(python, "./py")
            out = run([loader, "./py", "-c", "print('ran')"])
        elif attack == "exec-a-copy":
            shutil.copy(python, "./py2")
            os.chmod("./py2", 0o755)
            out = run(["./py2", "-c", "print('ran')"])
        elif attack == "memfd-exec":
            fd = os.memfd_create("x")
            os.write(fd, open(python, "rb").read())
            out = run(["/proc/self/fd/%d" % fd, "-c", "print('ran')"], pass_fds=(fd,))
            try:
                os.memfd_create("y", 0x10)   # MFD_EXEC
                out += " | MFD_EXEC allowed"
            except OSError as e:
                out += " | MFD_EXEC refused: %s" % e
        elif attack == "child-seccomp":
            # A process the step starts makes a forbidden syscall: seccomp kills it,
            # the step (its parent) reaps it and carries on.
            out = run([python, "-c", "import ctypes; ctypes.CDLL(None).unshare(0x10000000)"])
        elif attack == "dlopen-a-copy":
            lib = sorted(glob.glob("/usr/lib/*/libz.so.1*"))[0]
            shutil.copy(lib, "./libz.so")
            try:
                ctypes.CDLL(os.path.abspath("./libz.so"))
                out = "loaded"
            except OSError as e:
                out = "refused: %s" % e
        print(json.dumps(out))
        """#

    func gateway(_ spawn: String) async throws -> TestGateway {
        let gw = try await Self.gateway(spawn: spawn)
        started.withLock { $0.append(gw) }
        return gw
    }

    static func gateway(spawn: String) async throws -> TestGateway {
        let probe = Self.probe.indented(by: 10)
        let gw = try TestGateway(workflows: [
            "escape.workflow.yaml": """
                id: escape
                input: { type: object, properties: { attack: { type: string } } }
                steps:
                  - id: probe
                    exec:
                      interpreter: [python3]
                      script: |
                \(probe)
                      env: { ATTACK: "${{ input.attack }}" }
                """,
            // A step with no secret plants code where a later step holding one would run it.
            "plant.workflow.yaml": #"""
                id: plant
                steps:
                  - id: plant
                    exec:
                      interpreter: [python3]
                      script: |
                        import json, os
                        home, ws = os.environ["HOME"], os.getcwd()
                        payload = "import os\nopen(os.path.join(os.getcwd(), 'LEAK'), 'w').write(os.environ.get('TOKEN', '')[::-1])\n"
                        planted = []
                        for d in [home + "/.local/lib/python3.11/site-packages", ws]:
                            os.makedirs(d, exist_ok=True)
                            for name in ["usercustomize.py", "sitecustomize.py", "json.py"]:
                                open(os.path.join(d, name), "w").write(payload)
                                planted.append(os.path.join(d, name))
                        for rc in [".bashrc", ".profile", ".bash_profile"]:
                            open(os.path.join(home, rc), "w").write("echo $TOKEN | rev > LEAK\n")
                        # The homes of steps to come, were they predictable and writable.
                        for n in range(1, 40):
                            try:
                                p = os.path.join(os.path.dirname(home), str(n))
                                os.makedirs(p, exist_ok=True)
                                open(os.path.join(p, ".profile"), "w").write("echo $TOKEN | rev > LEAK\n")
                                planted.append(p)
                            except OSError:
                                pass
                        print(json.dumps({"home": home, "planted": planted}))
                  - id: python
                    exec:
                      argv: [python3, -c, "import json, os, tempfile; print(json.dumps({'json': json.__file__, 'home': os.environ['HOME'], 'tmp': tempfile.gettempdir()}))"]
                      env: { TOKEN: "${{ secrets.TOKEN }}" }
                  - id: shell
                    exec:
                      argv: [bash, -lc, "echo login shell"]
                      env: { TOKEN: "${{ secrets.TOKEN }}" }
                  - id: look
                    exec:
                      argv: [python3, -c, "import os; print(open('LEAK').read() if os.path.exists('LEAK') else 'no leak')"]
                """#,
        ], config: TestGateway.defaultConfig.replacingOccurrences(
            of: "defaults: { permissions: { allowedExecutables: [echo, sh, python3, sleep, wc] } }",
            with: "defaults: { permissions: { allowedExecutables: [python3, bash, rev] } }\nsecrets: { env: { prefix: SKELM_TEST_SECRET_ } }")
            .replacingOccurrences(of: "workers: { minSpare: 1,", with: "workers: { spawn: \(spawn), minSpare: 1,"))
        gw.environment = ["SKELM_TEST_SECRET_TOKEN": Self.secret]
        try await gw.start()
        return gw
    }

    deinit { started.withLock { $0 }.forEach { $0.cleanupLater() } }

    static let escapes: [(String, String)] = [
        ("control", "status 0: ran"),
        ("loader-reads-a-program", "Permission denied"),
        ("loader-runs-a-copy", "failed to map segment"),
        ("exec-a-copy", "refused: [Errno 13] Permission denied"),
        ("memfd-exec", "refused: [Errno 13] Permission denied"),
        ("dlopen-a-copy", "failed to map segment"),
        ("child-seccomp", "status -31"),
    ]

    @Test("a program the policy does not allow cannot be run another way", arguments: escapes, modes)
    func escape(_ row: (String, String), spawn: String) async throws {
        let (attack, expected) = row
        let gw = try await gateway(spawn)
        let run = try await gw.run("escape", ["attack": .string(attack)])
        #expect(run["status"] == "succeeded", "\(run)")
        let out = run["output"]?.stringValue ?? ""
        #expect(out.contains(expected), "\(attack) (\(spawn)): \(out)")
        // Every worker that ran a step had both layers (the worker measured them; the gateway recorded them).
        let spawned = try await gw.get("/audit?action=worker.spawned&limit=1000").json?["entries"].list ?? []
        #expect(!spawned.isEmpty && spawned.allSatisfy {
            let layers = $0["details"]?["layers"]?.stringValue?.split(separator: ",") ?? []
            return layers.contains("noexec") && layers.contains("memfd")
        }, "\(spawn): \(spawned.map { $0["details"]?["layers"] ?? .null })")
        if attack != "control" {
            #expect(!out.contains("ran\n") && !out.contains("uid="), "\(attack) ran code: \(out)")
        }
        if attack == "memfd-exec" { #expect(out.contains("MFD_EXEC refused"), "\(out)") }
        if attack == "child-seccomp", geteuid() == 0 {
            // The kernel's record of the kill, attributed by the worker's uid.
            let id = try #require(run["id"]?.stringValue)
            let kills = try await gw.auditEntries("run=\(id)&action=sandbox.seccomp_kill")
            // The kernel rate-limits these lines; with every test of the suite
            // tripping seccomp at once it may drop this one, and then says so.
            if kills.isEmpty, Self.kernelSuppressedAuditLines() { return }
            #expect(kills.first?["details"]?["syscall"] == "272", "unshare, killed: \(kills)")
            #expect(kills.first?["details"]?["exe"]?.stringValue?.hasPrefix("/usr/bin/python3") == true)
        }
    }

    /// Whether the kernel's log says it left audit lines out (`kauditd_printk_skb:
    /// N callbacks suppressed`) in its recent records.
    static func kernelSuppressedAuditLines() -> Bool {
        let fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 8192)
        var recent: [String] = []
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0, errno == EPIPE { continue }
            guard n > 0 else { break }
            recent.append(String(decoding: buffer[0..<n], as: UTF8.self))
            if recent.count > 400 { recent.removeFirst(recent.count - 400) }
        }
        return recent.contains { $0.contains("kauditd_printk_skb") && $0.contains("suppressed") }
    }

    @Test("code one step plants is not run by a later step that holds a secret", arguments: modes)
    func planted(spawn: String) async throws {
        let gw = try await gateway(spawn)
        let run = try await gw.run("plant")
        #expect(run["status"] == "succeeded", "\(run)")
        let steps = run["steps"].list
        func output(_ step: String) -> JSONValue? { steps.first { $0["path"]?.stringValue == step }?["output"] }
        let plantHome = output("plant")?["home"]?.stringValue
        let planted = output("plant")?["planted"].list.compactMap(\.stringValue) ?? []
        #expect(!planted.contains { $0.hasSuffix("/2") || $0.hasSuffix("/3") }, "another step's home was writable: \(planted)")
        #expect(output("python")?["json"]?.stringValue?.hasPrefix("/usr/lib/python3") == true, "\(String(describing: output("python")))")
        #expect(output("python")?["home"]?.stringValue != plantHome, "each step has a HOME of its own")
        // Python settles on the first candidate it can write a file in: the step's home, which is its TMPDIR.
        #expect(output("python")?["tmp"] != nil && output("python")?["tmp"] == output("python")?["home"], "\(String(describing: output("python")))")
        #expect(output("shell") == "login shell")
        #expect(output("look") == "no leak")
        let everything = try await gw.get("/runs/\(run["id"]!.stringValue!)").body
        #expect(!String(decoding: everything, as: UTF8.self).contains(String(Self.secret.reversed())))
    }
}
