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

    /// `.skills/<name>/` in the workspace: a copy owned by the gateway, files
    /// 0444 and folders 0555, so the job reads the skill and cannot change what
    /// a later step of the run (or the agent's next turn) reads. Symlinks in the
    /// skill's folder are not followed or copied: a skill cannot expose a file
    /// outside itself. (A gateway not running as root runs its workers as its own
    /// uid, which could change any file it owns: the modes are set only when
    /// the workers' uids differ from the owner's, and removing them is root's.)
    static func mount(_ skill: SkillCatalog.Skill, in workspace: String) -> SkillMount? {
        let root = workspace + "/.skills"
        let target = root + "/" + skill.name
        if mkdir(root, 0o755) != 0, errno != EEXIST { return nil }
        guard copy(skill.directory, to: target, depth: 0) else { return nil }
        if geteuid() == 0 { _ = chmod(root, 0o555) }
        return SkillMount(name: skill.name, description: skill.description, path: ".skills/" + skill.name)
    }

    /// At most this deep, and this many entries, per skill.
    static let maxDepth = 8
    static let maxEntries = 2000

    private static func copy(_ from: String, to: String, depth: Int) -> Bool {
        guard depth <= maxDepth, mkdir(to, 0o755) == 0 else { return false }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: from)) ?? []
        for name in entries.prefix(maxEntries) {
            let src = from + "/" + name, dst = to + "/" + name
            var st = stat()
            guard lstat(src, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                _ = copy(src, to: dst, depth: depth + 1)
            case S_IFREG:
                guard FileManager.default.createFile(atPath: dst, contents: FileManager.default.contents(atPath: src)) else { continue }
                if geteuid() == 0 { _ = chmod(dst, 0o444) }
            default:
                continue
            }
        }
        if geteuid() == 0 { _ = chmod(to, 0o555) }
        return true
    }
}
