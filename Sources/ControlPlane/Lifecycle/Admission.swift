import Foundation
import Synchronization

/// Whether the gateway takes new runs. An operator pauses it (maintenance, an
/// incident) and resumes it; runs already accepted carry on either way.
///
/// The pause is kept in `stateDir/paused.json`, so a gateway that restarts
/// (a crash, a service manager, an upgrade) while paused comes back paused
/// instead of quietly taking work again.
public final class Admission: Sendable {
    public struct Pause: Codable, Sendable, Equatable {
        public var reason: String
        public var by: String
        public var since: Date
    }

    private let state: Mutex<Pause?>
    /// The fleet's pause, when gateways share a database: set on every gateway
    /// by whichever one an operator asked (`POST /gateway/pause?scope=fleet`).
    private let fleet = Mutex<Pause?>(nil)
    private let file: String

    public init(stateDir: String) {
        file = stateDir + "/paused.json"
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        var saved: Pause?
        if let data = FileManager.default.contents(atPath: file) {
            // A pause file that cannot be read still says an operator paused the
            // gateway: it fails closed, and `resume` removes it.
            saved = (try? decoder.decode(Pause.self, from: data))
                ?? Pause(reason: "paused (\(file) could not be read; resume to lift it)", by: "gateway", since: Date())
        }
        state = Mutex(saved)
    }

    /// This gateway's own pause, else the fleet's.
    public var paused: Pause? { state.withLock { $0 } ?? fleet.withLock { $0 } }
    public var localPause: Pause? { state.withLock { $0 } }
    public var fleetPause: Pause? { fleet.withLock { $0 } }

    /// What the database says of the fleet's pause, as last read.
    func setFleet(_ pause: Pause?) { fleet.withLock { $0 = pause } }

    /// Pauses (or changes the reason of a pause) at once; returns the pause,
    /// and why it could not be kept across a restart, if it could not (a full
    /// disk must not stop an operator from pausing during an incident).
    func pause(reason: String, by actor: String) -> (pause: Pause, notSaved: String?) {
        state.withLock { current in
            let pause = Pause(reason: reason, by: actor, since: current?.since ?? Date())
            current = pause
            do { try Self.persist(pause, to: file) } catch { return (pause, "\(error)") }
            return (pause, nil)
        }
    }

    /// Returns the pause that was lifted, nil when there was none.
    func resume() throws -> Pause? {
        try state.withLock { current in
            guard let was = current else { return nil }
            if unlink(file) != 0, errno != ENOENT {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file, NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
            current = nil
            return was
        }
    }

    private static func persist(_ pause: Pause, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        try DurableFile.write(try encoder.encode(pause), to: path)
    }
}
