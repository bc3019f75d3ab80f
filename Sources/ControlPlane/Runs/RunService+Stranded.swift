import Foundation
import Wire

extension RunService {
    /// How often the store is asked for runs this gateway holds that nothing
    /// here runs or has queued.
    static let strandedSweep: Duration = .seconds(15)
    /// Stranded resumes of one run before the gateway ends it instead.
    static let strandedLimit = 3

    /// Runs the store says this gateway holds, queued or running, that nothing
    /// here runs or has queued: a segment that could not record its end (a
    /// write the store refused, a `COMMIT` that got no answer, a full disk), or
    /// a start that could not be recorded, gave up on them, and without this
    /// they would wait for the gateway's next start. Each is queued again as
    /// at a start: a running one goes on from its checkpoints in a new segment.
    ///
    /// A run is taken only when two sweeps in a row found it so, in the same
    /// state, so a run merely between two states (taken over by the fleet and
    /// not yet queued, say) is left alone. What was read can still be stale
    /// when it is acted on: the new segment starts only if the run is still
    /// exactly as it was read (`markStarted`'s `expected`), so a run is never
    /// given two segments at once. A run stranded `strandedLimit` times is
    /// ended as `Interrupted` rather than run again and again.
    func resumeStranded() async {
        guard resumedAtStart, !stopping, let held = try? await store.heldHere() else { return }
        var seen: [String: RunStore.Expected] = [:]
        for run in held where !stopping && active[run.id] == nil && !queue.contains(where: { $0.id == run.id }) {
            guard strandedSeen[run.id] == run.state else {
                seen[run.id] = run.state
                continue
            }
            let resumes = strandedResumes[run.id, default: 0]
            if resumes >= Self.strandedLimit {
                if resumes == Self.strandedLimit {
                    strandedResumes[run.id] = resumes + 1
                    await end(run.id, .failed, output: nil, error: StepFailure(
                        .interrupted, step: nil, message: "stranded \(resumes) times: its segments stopped without recording its start or end"))
                }
                // Its end could not be recorded either: the next start tries again.
                continue
            }
            guard let definition = await registry.workflow(run.workflow) else {
                await endWorkflowGone(run.id, run.workflow)
                continue
            }
            // Looked at again after the await: a segment may have been queued for it meanwhile.
            guard !stopping, active[run.id] == nil, !queue.contains(where: { $0.id == run.id }) else { continue }
            strandedResumes[run.id] = resumes + 1
            let running = run.state.status == .running
            // A queued run that had segments before (it parked, and its next start failed) resumes.
            let resumed = running || run.state.segments > 0
            logger.warning("queuing again a run nothing here was running or had queued", metadata: [
                "run": "\(run.id)", "status": "\(run.state.status.rawValue)", "segment": "\(run.state.segments)",
            ])
            queue.append(Queued(id: run.id, definition: definition, resumed: resumed, input: nil,
                                interruptedBy: running ? "its segment stopped without recording its end" : nil, expected: run.state))
        }
        strandedSeen = seen
        pump()
    }
}
