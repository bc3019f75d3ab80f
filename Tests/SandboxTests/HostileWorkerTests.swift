import ControlPlane
import Foundation
import Testing
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// A Python program in the worker's place (same spawner, same namespaces and uid),
/// speaking the wire badly on purpose.
private let helpers = """
import json, os, struct, sys, time
s = os.fdopen(3, "r+b", buffering=0)
def send(obj): b = json.dumps(obj).encode(); s.write(struct.pack(">I", len(b)) + b)
def recv():
    n = struct.unpack(">I", s.read(4))[0]; return json.loads(s.read(n))
full = {"active": ["fds","landlock","memfd","mountns","netns","no_new_privs","noexec","nonroot","nproc","pidns","rlimits","seccomp"],
        "missing": {}, "landlockABI": 7, "uid": 1000, "rlimits": {}}
def hello(version=1, sandbox=full):
    send({"jsonrpc": "2.0", "id": 1, "method": "worker.hello", "params": {"protocolVersion": version, "pid": 1, "sandbox": sandbox}})
    return recv()
"""

struct HostileWorker: CustomTestStringConvertible, Sendable {
    let name: String
    let script: String
    /// Words the refusal must contain.
    let expected: String
    var testDescription: String { name }
}

/// Each script waits long (30 s) after misbehaving: the refusal must come from
/// the gateway reading what it sent, even when a loaded test machine delays
/// that read by seconds, never from the script giving up first.
let hostileAtHandshake: [HostileWorker] = [
    HostileWorker(name: "sends garbage instead of a frame", script: "s.write(b'\\x00\\x00\\x00\\x05hello'); time.sleep(30)",
                  expected: "protocol violation"),
    HostileWorker(name: "declares a 4 GiB frame", script: "s.write(b'\\xff\\xff\\xff\\xff'); time.sleep(30)",
                  expected: "frame of 4294967295 bytes exceeds the 16777216-byte limit"),
    HostileWorker(name: "closes in the middle of a frame", script: "s.write(b'\\x00\\x00\\x01\\x00{\"js'); sys.exit(0)",
                  expected: "connection closed inside a frame"),
    HostileWorker(name: "speaks another protocol version", script: "hello(version=99); time.sleep(30)",
                  expected: "speaks protocol 99"),
    HostileWorker(name: "reports a sandbox without seccomp",
                  script: "w = dict(full); w['active'] = [l for l in full['active'] if l != 'seccomp']; w['missing'] = {'seccomp': 'nope'}; hello(sandbox=w); time.sleep(30)",
                  expected: "missing seccomp (nope)"),
    HostileWorker(name: "calls a method it may not call", script: "send({'jsonrpc':'2.0','id':1,'method':'secret.resolve','params':{}}); time.sleep(30)",
                  expected: "not allowed while handshaking"),
    HostileWorker(name: "never says hello", script: "time.sleep(30)", expected: "no handshake within"),
    HostileWorker(name: "floods notifications before its handshake",
                  script: "[send({'jsonrpc':'2.0','method':'event.emit','params':{'jobId':'x','type':'t','message':'m'}}) for _ in range(100000)]",
                  // Whichever trips first: the first notification's check, or (on a
                  // busy host, before that check runs) the bound on queued ones.
                  expected: "not allowed while handshaking|exceeded 10000 concurrent requests"),
]

@Suite("Hostile workers are cut off and replaced")
struct HostileWorkerTests {
    func pool(_ script: String) throws -> TestPool {
        try TestPool.make(minSpare: 1, max: 2, executable: "/usr/bin/python3") {
            $0.workerArgumentsPrefix = ["-c", helpers + "\n" + script]
            $0.handshakeTimeout = .seconds(1)
        }
    }

    @Test("a worker that misbehaves before its handshake is refused, killed and reaped", arguments: hostileAtHandshake)
    func atHandshake(_ hostile: HostileWorker) async throws {
        let pool = try pool(hostile.script)
        do {
            try await pool.pool.start()
            Issue.record("a hostile worker was accepted")
        } catch {
            #expect(hostile.expected.split(separator: "|").contains { "\(error)".contains($0) }, "\(error)")
        }
        await pool.cleanup()
        #expect(await waitUntil { await pool.pool.counts.live == 0 })
    }

    @Test("a worker that sends garbage mid-job fails the job as a violation")
    func garbageMidJob() async throws {
        let pool = try pool("hello(); recv(); s.write(b'\\x00\\x00\\x00\\x03abc'); time.sleep(5)")
        try await pool.pool.start()
        let outcome = await pool.run(["true"])
        #expect(outcome.violation)
        #expect(outcome.failure?.contains("protocol violation") == true, "\(outcome.failure ?? "")")
        await pool.cleanup()
    }

    @Test("a worker that closes its socket mid-request fails the job with the exit cause")
    func closesMidJob() async throws {
        let pool = try pool("hello(); recv(); os._exit(7)")
        try await pool.pool.start()
        let outcome = await pool.run(["true"])
        #expect(outcome.failure?.contains("exited with status 7") == true, "\(outcome.failure ?? "")")
        await pool.cleanup()
    }
}
