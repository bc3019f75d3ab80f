import Foundation
import NIOCore
import Sandbox
import Wire
import Workflow

/// A resident peer's process (an agent or an MCP server), started once in its
/// home under its ceiling's Landlock layer, and how its worker's job ends: at
/// once when the process exits, else when the work loop says so.
struct ResidentLaunch: Sendable {
    let process: PeerProcess
    /// The ceiling's layer: the outer bound of every thread that serves the peer.
    let ceiling: LandlockRuleset
    let stderr: StderrTail

    static func start(_ p: HostParams, loop: any EventLoop) async throws -> ResidentLaunch {
        let ceiling = LandlockRuleset.step(workspace: p.home, home: p.home, fsRead: p.ceiling.fsRead, fsWrite: p.ceiling.fsWrite,
                                           executables: p.ceiling.executables)
        let env = try StepRunner.environment(p.peer.env, workspace: p.home, home: p.home)
        let process: PeerProcess
        do {
            process = try await spawnConfined(p.peer.program, argv: p.peer.argv, env: env, cwd: p.home, limits: p.limits,
                                              ruleset: ceiling, loop: loop)
        } catch {
            throw RPCError(code: RPCError.execFailed, message: "cannot start \(p.peer.id): \(error)")
        }
        return ResidentLaunch(process: process, ceiling: ceiling, stderr: StderrTail(fd: process.stderr))
    }

    /// How the process ended (its status and the end of its stderr), or `otherwise`.
    func ended(otherwise: String) async -> String {
        let status = await process.exitStatus(within: .seconds(1))
        return (status.map(PeerProcess.describe) ?? otherwise) + Interpreter.tail(await stderr.settled())
    }

    /// The job's answer: the process's end if it exits first, else `work`'s.
    func serve(_ work: @escaping @Sendable () async -> HostEnded) async -> HostEnded {
        await FirstOf.race([
            {
                _ = await process.waitForExit()
                return HostEnded(ended: await ended(otherwise: "exited"))
            },
            work,
        ])
    }
}
