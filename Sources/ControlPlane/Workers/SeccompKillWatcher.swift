import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Audits every seccomp kill of a job's processes, from the kernel's own record.
///
/// A worker sees and reports the SIGSYS of the step it started, but not of a
/// process that step started in turn: the step reaps its own children. The
/// kernel logs each seccomp kill (`audit: type=1326 … uid=… pid=… comm=…
/// sig=31 … syscall=…`) to its message buffer, and every worker has a uid of
/// its own, so the uid and the record's time name the job (`UIDTenancy`: the
/// kernel may print the record after the job has ended). Root gateways only
/// (`/dev/kmsg`); the kernel rate-limits these lines, so this is as complete as
/// the kernel's log.
final class SeccompKillWatcher: Sendable {
    struct Job: Sendable {
        let runId: String?
        let workflow: String?
        let jobId: String
    }

    private let fd: Int32
    private let stopped = Atomic<Bool>(false)

    /// nil when the kernel log cannot be read (not root, no /dev/kmsg).
    convenience init?(audit: AuditLog, uidRange: Range<UInt64>, job: @escaping @Sendable (_ uid: UInt32, _ at: Date?) -> Job?) {
        let fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        // Only what happens from now on: older lines are other gateways' or the past's.
        lseek(fd, 0, SEEK_END)
        self.init(source: fd, audit: audit, uidRange: uidRange, job: job)
    }

    /// Reads records from `fd`, one per read as `/dev/kmsg` gives them, until it
    /// ends or `stop()`; takes the fd. The tests hand it a socket of their own:
    /// the kernel cannot be made to print a record late.
    init(source fd: Int32, audit: AuditLog, uidRange: Range<UInt64>, job: @escaping @Sendable (_ uid: UInt32, _ at: Date?) -> Job?) {
        self.fd = fd
        Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 8192)
            while !stopped.load(ordering: .relaxed) {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 500) > 0 else { continue }
                let n = read(fd, &buffer, buffer.count)
                if n < 0 {
                    // EPIPE: the ring overwrote lines we had not read yet; go on from here.
                    if errno == EAGAIN || errno == EINTR || errno == EPIPE { continue }
                    return
                }
                if n == 0 { return }
                guard let kill = Self.parse(String(decoding: buffer[0..<n], as: UTF8.self)),
                      uidRange.contains(UInt64(kill.uid)) else { continue }
                let owner = job(kill.uid, kill.at)
                var details = ["uid": "\(kill.uid)", "pid": "\(kill.pid)", "comm": kill.comm, "exe": kill.exe,
                               "syscall": "\(kill.syscall)", "reportedBy": "kernel"]
                if let owner {
                    details["job"] = owner.jobId
                    if let w = owner.workflow { details["workflow"] = w }
                }
                audit.record(actor: "gateway", action: "sandbox.seccomp_kill", runId: owner?.runId, details: details)
            }
        }.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    deinit { close(fd) }

    struct Kill: Equatable {
        let uid: UInt32
        let pid: Int32
        let comm: String
        let exe: String
        let syscall: Int
        /// When the kernel made the record (`audit(SECONDS.MILLIS:SERIAL)`), not
        /// when it printed it.
        let at: Date?
    }

    /// One /dev/kmsg record: `prio,seq,usec,flags;text`. Only seccomp records
    /// (type 1326) that killed with SIGSYS, and only the kernel's own: a line
    /// written to /dev/kmsg from user space always carries a facility other than
    /// the kernel's (0), which the kernel enforces, so no process can plant a kill
    /// in the audit log that the kernel did not report.
    static func parse(_ record: String) -> Kill? {
        guard let semicolon = record.firstIndex(of: ";"), let prio = Int(record.prefix { $0 != "," }),
              prio >> 3 == 0 else { return nil }
        let text = record[record.index(after: semicolon)...].prefix { $0 != "\n" }
        guard text.contains("type=1326"), text.contains(" sig=31 ") else { return nil }
        var fields: [Substring: Substring] = [:]
        for part in text.split(separator: " ") {
            guard let eq = part.firstIndex(of: "=") else { continue }
            fields[part[..<eq]] = part[part.index(after: eq)...]
        }
        func unquoted(_ s: Substring?) -> String { String((s ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "\""))) }
        guard let uid = fields["uid"].flatMap({ UInt32($0) }), let pid = fields["pid"].flatMap({ Int32($0) }) else { return nil }
        return Kill(uid: uid, pid: pid, comm: unquoted(fields["comm"]), exe: unquoted(fields["exe"]),
                    syscall: fields["syscall"].flatMap { Int($0) } ?? -1, at: recordTime(text))
    }

    /// The time in `audit(1796313906.041:140):`, the record's own stamp.
    static func recordTime(_ text: Substring) -> Date? {
        guard let open = text.range(of: "audit(") else { return nil }
        let stamp = text[open.upperBound...].prefix { $0 != ":" && $0 != ")" }
        guard let seconds = Double(stamp), seconds > 0 else { return nil }
        return Date(timeIntervalSince1970: seconds)
    }
}
