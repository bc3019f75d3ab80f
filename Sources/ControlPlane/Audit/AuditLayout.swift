import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the chain lives: the live log `stateDir/audit.jsonl` with its
/// checkpoints `stateDir/audit.checkpoints.jsonl` (the layout before segments
/// existed, so an old state dir is simply a chain with no sealed segments), and
/// sealed segments `stateDir/audit/segments/000001.jsonl` with
/// `000001.checkpoints.jsonl`, oldest first. One chain runs through all of them.
struct AuditLayout: Sendable {
    let stateDir: String

    struct File: Sendable, Equatable {
        /// As reports name it: `audit.jsonl`, `segments/000001.jsonl`.
        var name: String
        var path: String
        var checkpoints: String
        /// nil for the live log.
        var segment: Int?
    }

    var live: File { File(name: "audit.jsonl", path: stateDir + "/audit.jsonl", checkpoints: stateDir + "/audit.checkpoints.jsonl", segment: nil) }
    var segmentsDir: String { stateDir + "/audit/segments" }

    func segment(_ n: Int) -> File {
        let stem = String(repeating: "0", count: max(0, 6 - String(n).count)) + String(n)
        return File(name: "segments/\(stem).jsonl", path: "\(segmentsDir)/\(stem).jsonl",
                    checkpoints: "\(segmentsDir)/\(stem).checkpoints.jsonl", segment: n)
    }

    /// Sealed segments, oldest first.
    func segments() -> [File] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: segmentsDir)) ?? []
        let numbers = names.compactMap { name -> Int? in
            guard name.hasSuffix(".jsonl"), !name.hasSuffix(".checkpoints.jsonl") else { return nil }
            return Int(name.dropLast(6))
        }
        return numbers.sorted().map(segment)
    }

    /// Every file of the chain, oldest first; the live log last.
    func files() -> [File] { segments() + [live] }

    /// A rotation that a crash interrupted between its two renames (checkpoints
    /// first, then the log) is finished: the live log belongs to the segment
    /// whose checkpoints already moved.
    func finishInterruptedRotation() throws {
        guard let n = segmentNumbersWithCheckpoints().max(), !FileManager.default.fileExists(atPath: segment(n).path),
              FileManager.default.fileExists(atPath: live.path) else { return }
        let target = segment(n)
        chmod(live.path, 0o400)
        guard rename(live.path, target.path) == 0 else {
            throw AuditError.io("cannot finish sealing \(target.path): \(String(cString: strerror(errno)))")
        }
        Self.syncDirectory(segmentsDir)
        Self.syncDirectory(stateDir)
    }

    private func segmentNumbersWithCheckpoints() -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: segmentsDir)) ?? []
        return names.compactMap { name in name.hasSuffix(".checkpoints.jsonl") ? Int(name.dropLast(18)) : nil }
    }

    /// Moves the live log and its checkpoints into segment `n`, read-only. The
    /// caller has just signed a checkpoint of the log's last entry, so the segment
    /// ends signed; the caller then opens a fresh live log that continues the chain.
    func seal(into n: Int, logFD: Int32, checkpointFD: Int32) throws {
        let target = segment(n)
        guard mkdirAll(segmentsDir) else { throw AuditError.io("cannot create \(segmentsDir): \(String(cString: strerror(errno)))") }
        guard fchmod(logFD, 0o400) == 0, fchmod(checkpointFD, 0o400) == 0, fsync(checkpointFD) == 0 else {
            throw AuditError.io("cannot make the audit log read-only: \(String(cString: strerror(errno)))")
        }
        // Checkpoints first: an interrupted rotation is then recognisable (a
        // segment's checkpoints without its log) and finished at the next start.
        guard rename(live.checkpoints, target.checkpoints) == 0 else {
            let why = String(cString: strerror(errno))
            fchmod(logFD, 0o600)
            fchmod(checkpointFD, 0o600)
            throw AuditError.io("cannot seal \(target.checkpoints): \(why)")
        }
        guard rename(live.path, target.path) == 0 else {
            let why = String(cString: strerror(errno))
            rename(target.checkpoints, live.checkpoints)
            fchmod(logFD, 0o600)
            fchmod(checkpointFD, 0o600)
            throw AuditError.io("cannot seal \(target.path): \(why)")
        }
        Self.syncDirectory(segmentsDir)
        Self.syncDirectory(stateDir)
    }

    /// The live log and its checkpoints, opened for appending (created when absent).
    func openLive() throws -> (log: Int32, checkpoints: Int32) {
        let log = open(live.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard log >= 0 else { throw AuditError.io("cannot open \(live.path): \(String(cString: strerror(errno)))") }
        let cps = open(live.checkpoints, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard cps >= 0 else {
            let why = String(cString: strerror(errno))
            close(log)
            throw AuditError.io("cannot open \(live.checkpoints): \(why)")
        }
        return (log, cps)
    }

    private func mkdirAll(_ path: String) -> Bool {
        if FileManager.default.fileExists(atPath: path) { return true }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            return true
        } catch { return false }
    }

    /// A rename is durable once the directory holding it is synced.
    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// Read-only for everyone: what a sealed segment's files should be.
    static func isReadOnly(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & 0o222 == 0
    }
}
