import Foundation
import Wire

extension RunService {
    /// How often the store is asked for runs this gateway holds as running
    /// with no segment here running them.
    static let strandedSweep: Duration = .seconds(15)

    /// Runs the store says this gateway is running but that nothing here runs
    /// or has queued: a segment that could not record its start or its end
    /// (the database was away past a commit, the disk was full) gave up on
    /// them, and without this they would wait for the gateway's next start.
    /// Each goes on from its checkpoints in a new segment, as after a restart.
    ///
    /// What is read can be stale by the time it is acted on (the run ended, or
    /// parked and went on, meanwhile): the new segment starts only if the run
    /// is still running at exactly the segment that was read (`markStarted`'s
    /// `stranded`), so a run is never given two segments at once.
    func resumeStranded() async {
        guard !stopping, let held = try? await store.runningHere() else { return }
        for run in held where active[run.id] == nil && !queue.contains(where: { $0.id == run.id }) {
            guard let definition = await registry.workflow(run.workflow) else { continue }
            // Looked at again after the await: a segment may have been queued for it meanwhile.
            guard active[run.id] == nil, !queue.contains(where: { $0.id == run.id }) else { continue }
            logger.warning("resuming a run nothing here was running (its last segment could not record its end)",
                           metadata: ["run": "\(run.id)", "segment": "\(run.segments)"])
            queue.append(Queued(id: run.id, definition: definition, resumed: true, input: nil,
                                interruptedBy: "its segment stopped without recording its end", stranded: run.segments))
        }
        pump()
    }
}
