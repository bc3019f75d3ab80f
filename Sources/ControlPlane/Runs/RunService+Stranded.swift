import Foundation
import Wire

extension RunService {
    /// How often the store is asked for runs this gateway holds as running
    /// with no segment here running them.
    static let strandedSweep: Duration = .seconds(15)
    /// Stranded resumes of one run in a row before the gateway ends it instead.
    static let strandedLimit = 3

    /// Runs the store says this gateway is running but that nothing here runs
    /// or has queued: a segment that could not record its end (a write the
    /// store refused, a `COMMIT` that got no answer, a full disk) gave up on
    /// them, and without this they would wait for the gateway's next start.
    /// Each goes on from its checkpoints in a new segment, as after a restart.
    ///
    /// A run is resumed only when two sweeps in a row found it stranded at the
    /// same segment, so a run merely between two states (taken over by the
    /// fleet and not yet queued, say) is left alone. What was read can still be
    /// stale when it is acted on: the new segment starts only if the run is
    /// still running at exactly the segment that was read (`markStarted`'s
    /// `stranded`), so a run is never given two segments at once. A run
    /// stranded `strandedLimit` times in a row is ended as `Interrupted`
    /// rather than run again and again.
    func resumeStranded() async {
        guard resumedAtStart, !stopping, let held = try? await store.runningHere() else { return }
        var seen: [String: Int] = [:]
        for run in held where !stopping && active[run.id] == nil && !queue.contains(where: { $0.id == run.id }) {
            guard strandedSeen[run.id] == run.segments else {
                seen[run.id] = run.segments
                continue
            }
            let resumes = strandedResumes[run.id, default: 0]
            if resumes >= Self.strandedLimit {
                if resumes == Self.strandedLimit {
                    strandedResumes[run.id] = resumes + 1
                    await end(run.id, .failed, output: nil, error: StepFailure(
                        .interrupted, step: nil, message: "\(resumes) segments in a row stopped without recording the run's end"))
                }
                // Its end could not be recorded either: the next start tries again.
                continue
            }
            guard let definition = await registry.workflow(run.workflow) else {
                await end(run.id, .failed, output: nil,
                          error: StepFailure(.workflowMissing, step: nil, message: "workflow \(run.workflow) is no longer defined"))
                continue
            }
            // Looked at again after the await: a segment may have been queued for it meanwhile.
            guard !stopping, active[run.id] == nil, !queue.contains(where: { $0.id == run.id }) else { continue }
            strandedResumes[run.id] = resumes + 1
            logger.warning("resuming a run nothing here was running (its last segment stopped without recording its end)",
                           metadata: ["run": "\(run.id)", "segment": "\(run.segments)"])
            queue.append(Queued(id: run.id, definition: definition, resumed: true, input: nil,
                                interruptedBy: "its segment stopped without recording its end", stranded: run.segments))
        }
        strandedSeen = seen
        pump()
    }
}
