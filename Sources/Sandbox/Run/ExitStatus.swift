#if canImport(Glibc)
import Glibc
#endif

/// A wait(2) status, decoded, with the cause said the way an operator needs it.
public struct ExitStatus: Sendable, Equatable, CustomStringConvertible {
    public let code: Int32?
    public let signal: Int32?

    public init(waitStatus s: Int32) {
        if s & 0x7f == 0 { code = (s >> 8) & 0xff; signal = nil } else { code = nil; signal = s & 0x7f }
    }

    public init(code: Int32?, signal: Int32?) {
        self.code = code
        self.signal = signal
    }

    public var description: String {
        if let signal { return Self.describe(signal: signal) }
        return "exited with status \(code ?? -1)"
    }

    public var isSeccompViolation: Bool { signal == SIGSYS }

    /// `SIGKILL`, `SIGTERM`, or `signal 34`.
    public static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
                                      SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE",
                                      SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS"]
        return names[signal] ?? "signal \(signal)"
    }

    public static func describe(signal: Int32) -> String {
        switch signal {
        case SIGSYS: "killed by SIGSYS: seccomp blocked a forbidden system call"
        case SIGKILL: "killed by SIGKILL"
        case SIGXCPU: "killed by SIGXCPU: CPU time limit reached"
        case SIGXFSZ: "killed by SIGXFSZ: file size limit reached"
        case SIGSEGV: "killed by SIGSEGV"
        case SIGABRT: "killed by SIGABRT"
        default: "killed by signal \(signal)"
        }
    }
}
