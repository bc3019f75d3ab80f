import Foundation
import Sandbox
import Wire
import Workflow

/// What the worker template does once so that no forked worker does it again:
/// the first decode and encode of each wire type, which is where a fresh Swift
/// process spends most of its start (conformance lookups, metadata instantiation).
///
/// Synchronous and thread-free by design: the template forks after this.
enum WarmUp {
    static func run() {
        let spec = WorkerSandboxSpec(namespaces: ["net"], workspaceRoot: "/nonexistent", connectPorts: [1])
        if let data = try? JSONEncoder().encode(spec) {
            _ = try? JSONDecoder().decode(WorkerSandboxSpec.self, from: data)
        }
    }
}
