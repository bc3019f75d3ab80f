import Foundation
import Workflow

// The wire shape of an entry: the workflow's summary, `source` saying where it
// comes from ({"type": "dir", "dir"} | {"type": "path", "path"} |
// {"type": "upload", "sha256"}), and for a registered one who registered it when.
extension WorkflowRegistry.Entry: Codable {
    private enum CodingKeys: String, CodingKey {
        case id, file, valid, description, steps, input, output, issues, source, registeredAt, registeredBy
    }

    private enum DirKeys: String, CodingKey { case type, dir }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(file, forKey: .file)
        try c.encode(valid, forKey: .valid)
        try c.encodeIfPresent(description, forKey: .description)
        try c.encodeIfPresent(steps, forKey: .steps)
        try c.encodeIfPresent(input, forKey: .input)
        try c.encodeIfPresent(output, forKey: .output)
        try c.encode(issues, forKey: .issues)
        switch origin {
        case let .dir(dir):
            var s = c.nestedContainer(keyedBy: DirKeys.self, forKey: .source)
            try s.encode("dir", forKey: .type)
            try s.encode(dir, forKey: .dir)
        case let .registered(source, at, by):
            try c.encode(source, forKey: .source)
            try c.encode(at, forKey: .registeredAt)
            try c.encode(by, forKey: .registeredBy)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let origin: WorkflowOrigin
        let dir = try c.nestedContainer(keyedBy: DirKeys.self, forKey: .source)
        if try dir.decode(String.self, forKey: .type) == "dir" {
            origin = .dir(try dir.decode(String.self, forKey: .dir))
        } else {
            origin = .registered(try c.decode(RegisteredSource.self, forKey: .source),
                                 at: try c.decode(Date.self, forKey: .registeredAt), by: try c.decode(String.self, forKey: .registeredBy))
        }
        self.init(id: try c.decode(String.self, forKey: .id), file: try c.decode(String.self, forKey: .file),
                  valid: try c.decode(Bool.self, forKey: .valid), description: try c.decodeIfPresent(String.self, forKey: .description),
                  steps: try c.decodeIfPresent(Int.self, forKey: .steps), input: try c.decodeIfPresent(JSONValue.self, forKey: .input),
                  output: try c.decodeIfPresent(JSONValue.self, forKey: .output),
                  issues: try c.decode([WorkflowIssue].self, forKey: .issues), origin: origin)
    }
}
