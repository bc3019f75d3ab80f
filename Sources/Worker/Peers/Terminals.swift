import Foundation
import Sandbox
import Synchronization
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// The commands an agent started with `terminal/create`: each one a process
/// under the step's Landlock layer and rlimits (so only its allowed
/// executables run), its output kept up to the limit the agent asked for,
/// the oldest bytes dropped first as ACP says.
final class Terminals: Sendable {
    final class Entry: Sendable {
        let process: PeerProcess
        let output = Mutex<(bytes: [UInt8], truncated: Bool)>(([], false))
        let limit: Int
        /// The drain read the pipe's end: every byte the command wrote is in `output`.
        let drained = Atomic<Bool>(false)
        init(process: PeerProcess, limit: Int) {
            self.process = process
            self.limit = limit
        }

        /// Waits (up to 2 s) for the drain to reach the pipe's end once the
        /// command has exited: its exit can be seen before its last output is
        /// read, and an agent that asks for the output after `wait_for_exit`
        /// must get all of it. Bounded, as a process the command left behind
        /// can hold the pipe open.
        func settle() async {
            for _ in 0..<200 where !drained.load(ordering: .acquiring) {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// Terminals one step may hold at once.
    static let maxOpen = 16
    /// Output kept per terminal when the agent names no limit.
    static let defaultLimit = 1 << 20

    private let entries = Mutex<[String: Entry]>([:])
    private let counter = Atomic<Int>(0)
    /// Open terminals plus those being started: checked and counted at once.
    private let slots = Mutex(0)

    func reserve() -> Bool {
        slots.withLock { n in
            guard n < Self.maxOpen else { return false }
            n += 1
            return true
        }
    }

    func unreserve() { slots.withLock { $0 -= 1 } }

    func add(_ process: PeerProcess, limit: Int?) -> String {
        let id = "term-\(counter.wrappingAdd(1, ordering: .relaxed).newValue)"
        let entry = Entry(process: process, limit: max(1, min(limit ?? Self.defaultLimit, 16 << 20)))
        entries.withLock { $0[id] = entry }
        // Its stdout (stderr merged in) is drained as it comes, so it never blocks on a full pipe.
        let fd = process.stdout
        DetachedThread.run {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 65536) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { break }
                entry.output.withLock { o in
                    o.bytes.append(contentsOf: buffer[0..<n])
                    if o.bytes.count > entry.limit {
                        // Drop from the front, on a character boundary.
                        var cut = o.bytes.count - entry.limit
                        while cut < o.bytes.count, (o.bytes[cut] & 0xC0) == 0x80 { cut += 1 }
                        o.bytes.removeFirst(cut)
                        o.truncated = true
                    }
                }
            }
            close(fd)
            entry.drained.store(true, ordering: .releasing)
        }
        return id
    }

    func entry(_ id: String) -> Entry? { entries.withLock { $0[id] } }

    func release(_ id: String) -> Bool {
        guard let e = entries.withLock({ $0.removeValue(forKey: id) }) else { return false }
        unreserve()
        e.process.kill()
        return true
    }

    func killAll() {
        for e in entries.withLock({ $0.values }) { e.process.kill() }
    }

    /// `{exitCode, signal}` as ACP writes an exit status.
    static func exitStatus(_ status: Int32) -> JSONValue {
        let sig = status & 0x7f
        if sig == 0 { return ["exitCode": .number(Double((status >> 8) & 0xff)), "signal": .null] }
        return ["exitCode": .null, "signal": .string(ExitStatus.signalName(sig))]
    }
}
