import ArgumentParser
import ControlPlane
import Foundation
import Workflow

struct GatewayInstall: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install", abstract: "Install the gateway as a systemd service.",
        discussion: """
            Writes <unit-dir>/<name>.service for this binary and config (absolute paths), with the \
            hardening the sandbox allows. With the default unit dir it also runs \
            `systemctl daemon-reload`; start it with `systemctl enable --now <name>`.
            """)
    @Flag(help: "Install a systemd unit (the one service manager supported).") var systemd = false
    @OptionGroup var options: ConfigOptions
    @Option(help: "Where the unit file goes.") var unitDir = SystemdUnit.systemDir
    @Option(help: "The service's name.") var name = "skelm"
    @Flag(help: "Replace an existing unit file of that name.") var force = false
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard systemd else { throw ValidationError("say what to install: --systemd") }
        guard SystemdUnit.validName(name) else { throw ValidationError("--name: letters, digits, '-', '_' or '.' only") }
    }

    func run() async throws {
        guard let configPath = options.path else {
            throw CLIFailure("a service needs a config file: pass --config /path/to/skelm.config.yaml")
        }
        let loaded = try options.load()
        let config = URL(fileURLWithPath: configPath).standardizedFileURL.path
        let binary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let unit = SystemdUnit(binary: binary, config: config, stateDir: loaded.stateDir,
                               workspaceRoot: loaded.config.workers.workspaceRoot,
                               drainSeconds: loaded.config.server.drainTimeoutSeconds)
        let path = unitDir + "/" + name + ".service"
        if FileManager.default.fileExists(atPath: path), !force {
            throw CLIFailure("\(path) exists; --force replaces it")
        }
        try FileManager.default.createDirectory(atPath: unitDir, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: Data(unit.text.utf8), attributes: [.posixPermissions: 0o644]) else {
            throw CLIFailure("cannot write \(path)")
        }
        let reloaded = unitDir == SystemdUnit.systemDir && SystemdUnit.systemctl(["daemon-reload"])
        if json { return print(#"{"unit": \#(JSONValue.string(path).jsonText), "daemonReloaded": \#(reloaded)}"#) }
        print("wrote \(path)")
        if reloaded { print("start it: systemctl enable --now \(name)") }
    }
}

struct GatewayUninstall: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uninstall", abstract: "Stop and remove the gateway's systemd service (its state dir is kept).")
    @Option(help: "Where the unit file is.") var unitDir = SystemdUnit.systemDir
    @Option(help: "The service's name.") var name = "skelm"
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard SystemdUnit.validName(name) else { throw ValidationError("--name: letters, digits, '-', '_' or '.' only") }
    }

    func run() async throws {
        let path = unitDir + "/" + name + ".service"
        guard FileManager.default.fileExists(atPath: path) else { throw CLIFailure("no unit at \(path)") }
        if unitDir == SystemdUnit.systemDir { _ = SystemdUnit.systemctl(["disable", "--now", name]) }
        try FileManager.default.removeItem(atPath: path)
        if unitDir == SystemdUnit.systemDir { _ = SystemdUnit.systemctl(["daemon-reload"]) }
        print(json ? #"{"removed": \#(JSONValue.string(path).jsonText)}"# : "removed \(path)")
    }
}

/// The unit file. Each hardening option systemd offers is either set or left
/// out with the reason, so nobody adds one back and breaks the sandbox.
struct SystemdUnit {
    static let systemDir = "/etc/systemd/system"
    let binary: String
    let config: String
    let stateDir: String
    let workspaceRoot: String?
    let drainSeconds: Int

    static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } && !name.hasPrefix(".")
    }

    var text: String {
        let homes = ["/home/", "/root/", "/run/user/"]
        let underHome = ([config, stateDir, binary] + [workspaceRoot].compactMap { $0 }).contains { p in homes.contains { p.hasPrefix($0) || p + "/" == $0 } }
        let writable = ([stateDir] + [workspaceRoot].compactMap { $0 }).map(Self.quote).joined(separator: " ")
        return """
            # skelm gateway, written by `skelm gateway install --systemd`.
            [Unit]
            Description=skelm gateway: sandboxed agentic workflows
            After=network-online.target
            Wants=network-online.target

            [Service]
            Type=simple
            ExecStart=\(Self.quote(binary)) gateway start --config \(Self.quote(config))
            ExecReload=/bin/kill -HUP $MAINPID
            # SIGTERM to the gateway only: it drains, stops its workers, exits 0.
            KillMode=mixed
            TimeoutStopSec=\(drainSeconds + 30)
            Restart=on-failure
            RestartSec=2
            UMask=0077
            # systemd's default soft limit is 1024 open files: less than two full
            # API listeners (server.maxConnections each) and the workers need.
            LimitNOFILE=65536

            # Hardening that the gateway and its sandbox work under.
            NoNewPrivileges=yes
            ProtectSystem=strict
            ReadWritePaths=\(writable)
            # Workspaces go to /run/skelm when worker uids cannot reach the state dir.
            RuntimeDirectory=skelm
            RuntimeDirectoryMode=0711
            ProtectHome=\(underHome ? "read-only" : "yes")
            PrivateTmp=yes
            RestrictSUIDSGID=yes
            ProtectControlGroups=yes
            ProtectKernelModules=yes
            ProtectClock=yes
            ProtectHostname=yes
            LockPersonality=yes
            RestrictRealtime=yes
            # Left out on purpose:
            #   ProtectKernelTunables: the gateway sets vm.memfd_noexec in each worker's pid namespace.
            #   ProtectKernelLogs, PrivateDevices: it reads /dev/kmsg to audit seccomp kills of steps.
            #   RestrictNamespaces, PrivateUsers: workers are built from user, mount, pid and network namespaces.
            #   SystemCallFilter, MemoryDenyWriteExecute: each worker installs its own, stricter seccomp filter.

            [Install]
            WantedBy=multi-user.target

            """
    }

    /// systemd's quoting: a path with a space or a quote stays one argument.
    static func quote(_ s: String) -> String {
        s.contains(where: { " \"'\\$%".contains($0) })
            ? "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "%", with: "%%").replacingOccurrences(of: "$", with: "$$") + "\""
            : s
    }

    static func systemctl(_ args: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["systemctl"] + args
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }
}
