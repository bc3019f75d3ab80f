import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Steps reach the network only through the gateway's egress proxy, which applies
/// the step's allowHosts after resolving names itself.
@Suite("Egress", .serialized)
final class EgressTests {
    let gw: TestGateway
    let server: Process
    let port: Int

    /// A host-side HTTP server: /hello answers, /redirect sends the client to localhost.
    static let serverScript = """
        import http.server, sys
        port = int(sys.argv[1])
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/redirect"):
                    self.send_response(302); self.send_header("Location", "http://localhost:%d/hello" % port); self.end_headers(); return
                body = b"hello from upstream"
                self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            def log_message(self, *a): pass
        # Threaded, with room in its accept queue: tests hold many tunnels open at once.
        http.server.ThreadingHTTPServer.request_queue_size = 128
        http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
        """

    static let probe = """
        import json, socket, urllib.request, urllib.error, os
        def get(url, headers={}):
            try:
                req = urllib.request.Request(url, headers=headers)
                return urllib.request.urlopen(req, timeout=10).read().decode()
            except urllib.error.HTTPError as e:
                return "refused %d: %s" % (e.code, e.read().decode().strip())
            except Exception as e:
                return "error: %s" % e
        def connect(target):
            host, port = os.environ["HTTP_PROXY"].rsplit(":", 1)
            s = socket.create_connection((host.replace("http://", ""), int(port)), timeout=10)
            s.sendall(("CONNECT %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n" % (target, target)).encode())
            status = s.recv(4096).decode().split("\\r\\n")[0]
            if " 200 " not in status:
                return status
            s.sendall(b"GET /hello HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk: break
                data += chunk
            return data.decode().split("\\r\\n\\r\\n", 1)[-1]
        print(json.dumps({
            "allowed": get("http://127.0.0.1:PORT/hello", {"Authorization": "Bearer tok-SECRET-123"}),
            "unlisted": get("http://127.0.0.2:PORT/hello"),
            "resolvesLoopback": get("http://localhost:PORT/hello"),
            "metadata": get("http://169.254.169.254/latest/meta-data/"),
            "redirect": get("http://127.0.0.1:PORT/redirect"),
            "connectAllowed": connect("127.0.0.1:PORT"),
            "connectMetadata": connect("169.254.169.254:443"),
        }))
        """

    init() async throws {
        port = freePort()
        server = try await startUpstream(port: port)
        let script = Self.probe.replacingOccurrences(of: "PORT", with: "\(port)")
            .indented(by: 10)
        gw = try await TestGateway.started(workflows: [
            "egress.workflow.yaml": """
                id: egress
                steps:
                  - id: probe
                    exec:
                      interpreter: python3
                      script: |
                \(script)
                """,
            "offline.workflow.yaml": """
                id: offline
                permissions: { networkEgress: { allowHosts: [] } }
                steps:
                  - id: probe
                    exec: { argv: [python3, -c, "import os; print(os.environ.get('HTTP_PROXY', 'none'))"] }
                """,
        ], config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 4, uidBase: UIDBASE }
            defaults:
              permissions:
                allowedExecutables: [python3]
                networkEgress: { allowHosts: ["127.0.0.1:\(port)", "localhost:\(port)", "*.example.invalid"] }
            """)
    }

    deinit {
        // SIGKILL: a child of the test runner may have inherited SIGTERM as ignored.
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        gw.cleanupLater()
    }

    @Test("allowed hosts pass, everything else is refused with a reason, and each decision is audited without credentials")
    func decisions() async throws {
        let run = try await gw.run("egress")
        #expect(run["status"] == "succeeded", "\(run)")
        let out = run["output"]
        #expect(out?["allowed"] == "hello from upstream")
        #expect(out?["unlisted"]?.stringValue?.contains("refused 403") == true)
        #expect(out?["unlisted"]?.stringValue?.contains("not in networkEgress.allowHosts") == true)
        #expect(out?["resolvesLoopback"]?.stringValue?.contains("resolves to 127.0.0.1") == true)
        #expect(out?["metadata"]?.stringValue?.contains("refused 403") == true)
        #expect(out?["redirect"]?.stringValue?.contains("refused 403") == true, "the redirect to localhost is a new request, checked again")
        #expect(out?["connectAllowed"] == "hello from upstream")
        #expect(out?["connectMetadata"]?.stringValue?.contains("403") == true)

        let id = run["id"]!.stringValue!
        let allowed = try await gw.get("/audit?run=\(id)&action=egress.allowed").json?["entries"].list ?? []
        let denied = try await gw.get("/audit?run=\(id)&action=egress.denied").json?["entries"].list ?? []
        #expect(allowed.count >= 3)
        #expect(denied.count >= 5)
        #expect(denied.contains { $0["details"]?["host"] == "169.254.169.254" })
        #expect(denied.allSatisfy { $0["details"]?["step"] == "probe" })
        let log = try String(contentsOfFile: gw.stateDir + "/audit.jsonl", encoding: .utf8)
        #expect(!log.contains("tok-SECRET-123"))
    }

    @Test("a step whose policy allows no host gets no proxy and no route out")
    func offline() async throws {
        let run = try await gw.run("offline")
        #expect(run["output"] == "none")
    }
}
