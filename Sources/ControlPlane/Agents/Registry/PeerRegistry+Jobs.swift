import Foundation
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

extension PeerRegistry {
    /// Adds to a segment's spec the agents and MCP servers its steps name, and
    /// copies the skills they are offered into the workspace, read-only.
    func equip(_ spec: inout RunJobSpec, for definition: WorkflowDefinition) {
        for step in definition.allSteps {
            switch step.kind {
            case let .agent(a):
                spec.agents[a.agent] = agents[a.agent]?.launch
                for id in a.mcpServers { spec.mcpServers[id] = mcpServers[id]?.launch }
                for name in a.skills where spec.skills[name] == nil {
                    guard let skill = skills.skills[name], let mount = Self.mount(skill, in: spec.workspace) else { continue }
                    spec.skills[name] = mount
                }
            case let .mcp(m):
                spec.mcpServers[m.server] = mcpServers[m.server]?.launch
            default:
                continue
            }
        }
    }

    /// `<workspace>.skills/<name>/`: beside the workspace (like its `.homes`),
    /// made by the gateway before the job starts, owned by it, folders 0555 and
    /// files 0444. The job's uid can read it but neither change nor replace it:
    /// the directory above is the gateway's. Only regular files and folders are
    /// copied, each opened without following a link (a skill cannot expose a
    /// file outside itself, nor a FIFO stall the gateway), at most 1 MiB a file
    /// and 8 MiB a skill. (A gateway not running as root runs its workers as its
    /// own uid, which could change anything it owns: there the copy is only a copy.)
    static func mount(_ skill: SkillCatalog.Skill, in workspace: String) -> SkillMount? {
        let root = workspace + ".skills"
        if mkdir(root, 0o755) != 0, errno != EEXIST { return nil }
        _ = chmod(root, 0o755)
        let target = root + "/" + skill.name
        var budget = maxSkillBytes
        guard copy(skill.directory, to: target, depth: 0, budget: &budget) else { return nil }
        return SkillMount(name: skill.name, description: skill.description, path: target)
    }

    static let maxDepth = 8
    static let maxEntries = 2000
    static let maxFileBytes = 1 << 20
    static let maxSkillBytes = 8 << 20

    private static func copy(_ from: String, to: String, depth: Int, budget: inout Int) -> Bool {
        var st = stat()
        guard depth <= maxDepth, lstat(from, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, mkdir(to, 0o755) == 0 else { return false }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: from)) ?? []
        for name in entries.sorted().prefix(maxEntries) {
            let src = from + "/" + name, dst = to + "/" + name
            guard lstat(src, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                _ = copy(src, to: dst, depth: depth + 1, budget: &budget)
            case S_IFREG:
                copyFile(src, to: dst, budget: &budget)
            default:
                continue
            }
        }
        if geteuid() == 0 { _ = chmod(to, 0o555) }
        return true
    }

    private static func copyFile(_ src: String, to dst: String, budget: inout Int) {
        let fd = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= maxFileBytes, Int(st.st_size) <= budget else { return }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var got = 0
        while got < bytes.count {
            let n = bytes[got...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        budget -= got
        let out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o444)
        guard out >= 0 else { return }
        defer { close(out) }
        var done = 0
        while done < got {
            let n = bytes[done..<got].withUnsafeBytes { write(out, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        _ = fchmod(out, 0o444)
    }
}
