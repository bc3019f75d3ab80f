import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Permissions are enforced twice: the control plane (or the worker, for a program
/// only known at run time) refuses what a step's policy does not allow, and the
/// kernel refuses it again for whatever the step's own processes try.
@Suite("Permissions", .serialized)
final class PermissionTests {
    let gw: TestGateway
    let data: String

    static let workflows: [String: String] = [
        "notallowed.workflow.yaml": """
            id: notallowed
            steps:
              - { id: who, exec: { argv: [/usr/bin/id] } }
            """,
        "symlink.workflow.yaml": """
            id: symlink
            steps:
              - { id: link, exec: { argv: [ln, -s, /usr/bin/id, idlink] } }
              - { id: run, exec: { argv: [./idlink] } }
            """,
        "templated.workflow.yaml": """
            id: templated
            steps:
              - { id: run, exec: { argv: ["${{ input.program }}"] } }
            """,
        "kernel.workflow.yaml": """
            id: kernel
            steps:
              - id: probe
                exec:
                  interpreter: python3
                  # The test's own paths, written into the probe.
                  allowInterpolation: true
                  script: |
                    import json, os, shutil, subprocess
                    out = {}
                    def attempt(name, f):
                        try:
                            f(); out[name] = "allowed"
                        except PermissionError:
                            out[name] = "denied"
                        except OSError as e:
                            out[name] = "error %d" % e.errno
                    attempt("exec_id", lambda: subprocess.run(["/usr/bin/id"], check=True, capture_output=True))
                    attempt("read_id", lambda: shutil.copy("/usr/bin/id", "myid"))
                    shutil.copy(os.path.realpath("/usr/bin/python3"), "mypy"); os.chmod("mypy", 0o755)
                    attempt("exec_copy", lambda: subprocess.run(["./mypy", "-c", "1"], check=True, capture_output=True))
                    attempt("read_granted", lambda: open("${{ input.data }}/granted/ok.txt").read())
                    attempt("read_private", lambda: open("${{ input.data }}/private/secret.txt").read())
                    attempt("read_statedir", lambda: open("${{ input.state }}/audit.key", "rb").read())
                    attempt("read_ssh", lambda: open("${{ input.data }}/home/.ssh/id_ed25519").read())
                    attempt("write_tmp", lambda: open("/tmp/skelm-escape-${{ input.tag }}", "w").write("x"))
                    print(json.dumps(out))
            """,
        "narrowed.workflow.yaml": """
            id: narrowed
            permissions: { allowedExecutables: [sh] }
            steps:
              - { id: fine, run: "echo fine" }
              - id: widen
                permissions: { allowedExecutables: [python3, sh] }
                exec: { argv: [python3, -c, "print(1)"] }
            """,
        "profiled.workflow.yaml": """
            id: profiled
            permissions: { profile: wide }
            steps:
              - { id: who, exec: { argv: [id, -u] } }
            """,
        "noprofile.workflow.yaml": """
            id: noprofile
            permissions: { profile: missing }
            steps:
              - { id: who, run: echo hi }
            """,
        "trusted.workflow.yaml": """
            id: trusted
            steps:
              - { id: who, unrestricted: true, exec: { argv: [/usr/bin/id, -u] } }
            """,
        "untrusted.workflow.yaml": """
            id: untrusted
            steps:
              - { id: who, unrestricted: true, exec: { argv: [/usr/bin/id, -u] } }
            """,
    ]

    init() async throws {
        data = "/tmp/skelm-perm-\(UUID().uuidString.prefix(8).lowercased())"
        for dir in ["granted", "private", "home/.ssh"] {
            try FileManager.default.createDirectory(atPath: "\(data)/\(dir)", withIntermediateDirectories: true)
        }
        try "ok".write(toFile: "\(data)/granted/ok.txt", atomically: true, encoding: .utf8)
        try "secret".write(toFile: "\(data)/private/secret.txt", atomically: true, encoding: .utf8)
        try "key".write(toFile: "\(data)/home/.ssh/id_ed25519", atomically: true, encoding: .utf8)
        // World-readable, so only Landlock stands between a step and these files.
        for f in ["granted/ok.txt", "private/secret.txt", "home/.ssh/id_ed25519"] { chmod("\(data)/\(f)", 0o644) }
        for d in ["", "/granted", "/private", "/home", "/home/.ssh"] { chmod(data + d, 0o755) }
        gw = try await TestGateway.started(workflows: Self.workflows, config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 6, uidBase: UIDBASE }
            defaults:
              permissions: { allowedExecutables: [sh, python3, ln, echo], fsRead: [\(data)/granted] }
              unrestrictedGrants: [trusted]
            permissionProfiles:
              wide: { allowedExecutables: [id, sh] }
            """)
    }

    deinit {
        let gw = self.gw, data = self.data
        Task {
            await gw.cleanup()
            try? FileManager.default.removeItem(atPath: data)
        }
    }

    func denials(_ runId: String) async throws -> [JSONValue] {
        try await gw.get("/audit?action=permission.denied&run=\(runId)").json?["entries"].list ?? []
    }

    @Test("an executable not allowed fails the step with PermissionDenied, decided by the gateway, and is audited")
    func notAllowed() async throws {
        let run = try await gw.run("notallowed")
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "PermissionDenied")
        #expect(run["error"]?["message"]?.stringValue?.contains("allowedExecutables does not allow /usr/bin/id") == true)
        let audited = try await denials(run["id"]!.stringValue!)
        #expect(audited.count == 1)
        #expect(audited.first?["details"]?["dimension"] == "allowedExecutables")
        #expect(audited.first?["details"]?["value"] == "/usr/bin/id")
        #expect(audited.first?["details"]?["decidedBy"] == "gateway")
    }

    @Test("a symlink to a forbidden program is resolved to its real path and refused")
    func symlink() async throws {
        let run = try await gw.run("symlink")
        #expect(run["status"] == "failed", "\(run)")
        #expect(run["error"]?["step"] == "run")
        #expect(run["error"]?["code"] == "PermissionDenied")
        let audited = try await denials(run["id"]!.stringValue!)
        #expect(audited.first?["details"]?["value"] == "/usr/bin/id")
        #expect(audited.first?["details"]?["decidedBy"] == "worker")
    }

    @Test("a program named by a template or with ../ is checked once resolved")
    func templated() async throws {
        for program in ["/usr/bin/id", "/usr/bin/../bin/id"] {
            let run = try await gw.run("templated", ["program": .string(program)])
            #expect(run["error"]?["code"] == "PermissionDenied")
            #expect(run["error"]?["message"]?.stringValue?.contains("/usr/bin/id") == true)
        }
    }

    @Test("the kernel refuses what a permitted script tries behind the control plane's back")
    func kernel() async throws {
        let tag = UUID().uuidString.prefix(6)
        let run = try await gw.run("kernel", ["data": .string(data), "state": .string(gw.stateDir), "tag": .string(String(tag))])
        #expect(run["status"] == "succeeded", "\(run)")
        let out = run["output"]
        #expect(out?["exec_id"] == "denied")
        #expect(out?["read_id"] == "denied", "a program it may not run is not even readable")
        #expect(out?["exec_copy"] == "denied")
        #expect(out?["read_granted"] == "allowed")
        #expect(out?["read_private"] == "denied")
        #expect(out?["read_statedir"] == "denied")
        #expect(out?["read_ssh"] == "denied")
        #expect(out?["write_tmp"] == "denied")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/skelm-escape-\(tag)"))
    }

    @Test("a workflow and a step can only narrow: the intersection, never a union")
    func narrowing() async throws {
        let run = try await gw.run("narrowed")
        #expect(run["status"] == "failed")
        #expect(run["error"]?["step"] == "widen")
        #expect(run["error"]?["code"] == "PermissionDenied")
        #expect(run["steps"].list.first?["status"] == "succeeded")
    }

    @Test("a named profile is the ceiling; an unknown profile is refused at submit")
    func profiles() async throws {
        let run = try await gw.run("profiled")
        #expect(run["status"] == "succeeded", "\(run)")
        let refused = try await gw.post("/runs", ["workflow": "noprofile"])
        #expect(refused.status == 400)
        #expect(refused.json?["error"]?["code"] == "invalid_permissions")
    }

    @Test("the unrestricted bypass: granted workflows get it and it is audited; others are denied")
    func bypass() async throws {
        let granted = try await gw.run("trusted")
        #expect(granted["status"] == "succeeded", "\(granted)")
        let bypassed = try await gw.get("/audit?action=permission.bypassed&run=\(granted["id"]!.stringValue!)").json?["entries"].list ?? []
        #expect(bypassed.count == 1)
        let denied = try await gw.run("untrusted")
        #expect(denied["error"]?["code"] == "PermissionDenied")
        let audited = try await denials(denied["id"]!.stringValue!)
        #expect(audited.first?["details"]?["dimension"] == "unrestricted")
    }
}

@Suite("Permission config")
struct PermissionConfigTests {
    @Test("granting a path that holds the state directory stops the gateway from starting")
    func exposingStateDir() async throws {
        let gw = try TestGateway(workflows: [:], config: """
            server: { port: 0 }
            workers: { uidBase: UIDBASE }
            defaults: { permissions: { fsRead: [/tmp] } }
            """)
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("would expose the state directory"))
    }
}
