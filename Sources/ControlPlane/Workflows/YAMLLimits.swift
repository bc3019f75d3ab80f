// libyaml is the parser Yams wraps (Yams's own CYaml target). Yams offers only
// whole documents, built eagerly, and building is where an alias bomb already
// costs: it hashes every mapping key, and a key that is an alias is hashed
// through everything the alias reaches (eight levels of nine aliases, about
// 300 bytes, took 13 s; each level more takes nine times as long). Its event
// stream is the one place to refuse a file before anything is built.
internal import CYaml

/// The rules workflow and config files are held to before Yams builds a node:
/// no aliases, and at most `maxDepth` nested sequences and mappings.
///
/// Aliases are refused rather than budgeted: an alias repeats a node without
/// repeating its text, so every later walk (reading, schema checks, template
/// parsing) does work the file's size does not show, and nine aliases of nine
/// aliases … reach billions of nodes. Nothing in a workflow or config needs them;
/// merge keys (`<<: *base`) were never supported by either loader.
enum YAMLLimits {
    /// Deep enough for any real file (a step inside a loop inside a branch inside
    /// a forEach is 14 levels); shallow enough that the recursive walks
    /// over the result stay far from the end of the stack.
    static let maxDepth = 64

    struct Refusal: Error, Sendable, Equatable {
        let line: Int
        let message: String
    }

    /// The first rule the text breaks, with its 1-based line, or nil. Any other
    /// syntax error ends the scan quietly: Yams reports it, at the same place, with
    /// its usual message, having built nothing past the events checked here.
    static func check(_ text: String) -> Refusal? {
        guard !text.isEmpty else { return nil }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return Refusal(line: 1, message: "the YAML parser could not start") }
        defer { yaml_parser_delete(&parser) }
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
        var text = text
        return text.withUTF8 { bytes in
            yaml_parser_set_input_string(&parser, bytes.baseAddress, bytes.count)
            var depth = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    // libyaml has a nesting limit of its own (1000, counted on tokens it
                    // scanned ahead, so a long run of `[[[[` hits it first): the same
                    // rule broken, so the same message.
                    if let problem = parser.problem, String(cString: problem).hasPrefix("Maximum nesting level") {
                        return Refusal(line: Int(parser.problem_mark.line) + 1, message: "YAML nested deeper than \(maxDepth) levels")
                    }
                    return nil
                }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                switch event.type {
                case YAML_ALIAS_EVENT:
                    let name = event.data.alias.anchor.map { String(cString: $0) } ?? ""
                    return Refusal(line: line, message: "YAML aliases (*\(name)) are not allowed here; write the value out in full")
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    depth += 1
                    if depth > maxDepth { return Refusal(line: line, message: "YAML nested deeper than \(maxDepth) levels") }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    depth -= 1
                case YAML_STREAM_END_EVENT:
                    return nil
                default:
                    break
                }
            }
        }
    }
}
