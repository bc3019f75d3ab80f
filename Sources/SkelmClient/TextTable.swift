/// Fixed-width columns for terminal output: each column as wide as its widest
/// cell, the last one left unpadded.
public enum TextTable {
    public static func render(_ header: [String], _ rows: [[String]], rule: Bool = false) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, c) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        var out = [line(header)]
        if rule { out.append(line(widths.map { String(repeating: "-", count: $0) })) }
        out += rows.map(line)
        return out.joined(separator: "\n")
    }
}

import Foundation
