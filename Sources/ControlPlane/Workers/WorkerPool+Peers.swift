import Foundation
import Wire

extension WorkerPool {
    /// Starts `server` in a fresh sandboxed worker and lists its tools.
    public func listTools(_ server: PeerLaunch, timeout: Duration = .seconds(30)) async -> Result<MCPTools.Result, PeerJobFailure> {
        let options = JobOptions()
        let limits = tunables.stepLimits
        let ms = Int(timeout.components.seconds * 1000)
        let (answer, outcome) = await perform(MCPTools.self, options: options, timeout: timeout + .seconds(10)) { workspace in
            MCPTools.Params(jobId: options.jobId, workspace: workspace, server: server, limits: limits, timeoutMs: ms)
        }
        if let answer { return .success(answer) }
        return .failure(PeerJobFailure(description: outcome.failure ?? "the worker ended without an answer"))
    }
}

public struct PeerJobFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
}
