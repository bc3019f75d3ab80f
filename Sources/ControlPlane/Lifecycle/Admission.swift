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
    private let file: String

    public init(stateDir: String) {
        file = stateDir + "/paused.json"
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let saved = FileManager.default.contents(atPath: file).flatMap { try? decoder.decode(Pause.self, from: $0) }
        state = Mutex(saved)
    }

    public var paused: Pause? { state.withLock { $0 } }

    /// Pauses (or changes the reason of a pause); returns the pause in effect.
    func pause(reason: String, by actor: String) throws -> Pause {
        try state.withLock { current in
            let pause = Pause(reason: reason, by: actor, since: current?.since ?? Date())
            try Self.persist(pause, to: file)
            current = pause
            return pause
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

    /// tmp + fsync + rename: a crash leaves the old file or the new one, never half of one.
    private static func persist(_ pause: Pause, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(pause)
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: tmp]) }
        defer { close(fd) }
        let ok = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count }
        guard ok, fsync(fd) == 0, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw CocoaError(.fileWriteOutOfSpace, userInfo: [NSFilePathErrorKey: path, NSLocalizedDescriptionKey: String(cString: strerror(errno))])
        }
    }
}
