import Foundation
import Yams

#if canImport(Glibc)
import Glibc
#endif

/// The skills in `skills.dirs`: each a folder holding a `SKILL.md` whose front
/// matter (a YAML block between `---` lines) names it and says what it does.
public struct SkillCatalog: Sendable {
    public struct Skill: Sendable, Equatable {
        public let name: String
        public let description: String
        /// The skill's folder (real path).
        public let directory: String
        /// `SKILL.md` as written.
        public let text: String
        /// Every other key of the front matter.
        public let frontMatter: [String: String]
    }

    /// Skills by name.
    public let skills: [String: Skill]
    /// Folders that hold a SKILL.md that could not be used, with why.
    public let problems: [String: String]

    /// A SKILL.md larger than this is refused: it is read into every prompt that names it.
    static let maxBytes = 256 << 10

    public init() {
        skills = [:]
        problems = [:]
    }

    public init(dirs: [String]) {
        var skills: [String: Skill] = [:]
        var problems: [String: String] = [:]
        let fm = FileManager.default
        for dir in dirs {
            guard let entries = try? fm.contentsOfDirectory(atPath: dir) else { continue }
            for entry in entries.sorted() {
                let folder = PolicyResolver.cleanPath(dir + "/" + entry)
                let file = folder + "/SKILL.md"
                guard fm.fileExists(atPath: file) else { continue }
                do {
                    let skill = try Self.read(file, folder: folder)
                    if let first = skills[skill.name] {
                        problems[folder] = "skill '\(skill.name)' is already defined in \(first.directory)"
                    } else {
                        skills[skill.name] = skill
                    }
                } catch {
                    problems[folder] = "\(error)"
                }
            }
        }
        self.skills = skills
        self.problems = problems
    }

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    static func read(_ file: String, folder: String) throws -> Skill {
        // Not through a link, not a FIFO or a device: checked on the open file, then read to its size.
        let fd = open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw Invalid(description: "\(file) cannot be read (a link is not followed): \(String(cString: strerror(errno)))") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw Invalid(description: "\(file) is not a regular file") }
        guard st.st_size <= maxBytes else { throw Invalid(description: "\(file) is larger than \(maxBytes >> 10) KiB") }
        let data = (try? handle.read(upToCount: maxBytes)) ?? Data()
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first?.trimmingCharacters(in: .whitespaces) == "---",
              let end = lines.dropFirst().firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "---" }) else {
            throw Invalid(description: "\(file) has no front matter (a YAML block between --- lines with name and description)")
        }
        let yaml = lines[1..<end].joined(separator: "\n")
        guard let node = try? Yams.compose(yaml: yaml), let map = node.mapping else {
            throw Invalid(description: "\(file): its front matter is not a YAML mapping")
        }
        var fields: [String: String] = [:]
        for (k, v) in map {
            guard let key = k.string else { continue }
            fields[key] = v.string ?? (try? Yams.serialize(node: v))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let name = fields["name"], name.range(of: #"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"#, options: .regularExpression) != nil else {
            throw Invalid(description: "\(file): front matter needs a name (letters, digits, ., - and _)")
        }
        guard let description = fields["description"], !description.isEmpty else {
            throw Invalid(description: "\(file): front matter needs a description")
        }
        fields["name"] = nil
        fields["description"] = nil
        return Skill(name: name, description: description, directory: folder, text: text, frontMatter: fields)
    }
}
