import Foundation

/// A strict reader of the Prometheus text exposition format (0.0.4), for tests: every line
/// must be a comment, a `# TYPE`/`# HELP` line or a well-formed sample, or parsing fails.
package struct PrometheusText: Sendable {
    package struct Sample: Sendable, Equatable {
        package var name: String
        package var labels: [String: String]
        package var value: Double
    }

    package struct ParseError: Error, CustomStringConvertible {
        package var line: Int
        package var text: String
        package var problem: String
        package var description: String { "line \(line): \(problem): \(text)" }
    }

    package var samples: [Sample]
    /// Metric family name → type (`counter`, `gauge`, `histogram`, …).
    package var types: [String: String]

    package init(_ text: String) throws(ParseError) {
        samples = []
        types = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true)
                if parts.count >= 2, parts[1] == "TYPE" {
                    guard parts.count == 4, Self.isMetricName(parts[2]),
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3])
                    else { throw ParseError(line: index + 1, text: line, problem: "malformed TYPE line") }
                    types[String(parts[2])] = String(parts[3])
                }
                continue
            }
            samples.append(try Self.sample(line, number: index + 1))
        }
    }

    /// The value of the sample with exactly `name` and (at least) `labels`, summed over the
    /// label values not given.
    package func sum(_ name: String, where labels: [String: String] = [:]) -> Double {
        samples.filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }.reduce(0) { $0 + $1.value }
    }

    /// Whether any sample of `name` exists.
    package func contains(_ name: String) -> Bool {
        samples.contains { $0.name == name }
    }

    private static func sample(_ line: String, number: Int) throws(ParseError) -> Sample {
        func fail(_ problem: String) -> ParseError { ParseError(line: number, text: line, problem: problem) }
        var rest = Substring(line)
        let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
        let name = rest[..<nameEnd]
        guard isMetricName(name) else { throw fail("bad metric name") }
        rest = rest[nameEnd...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while true {
                if rest.first == "}" {
                    rest = rest.dropFirst()
                    break
                }
                guard let equals = rest.firstIndex(of: "=") else { throw fail("label without value") }
                let label = rest[..<equals]
                guard isLabelName(label) else { throw fail("bad label name") }
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { throw fail("unquoted label value") }
                rest = rest.dropFirst()
                var value = ""
                var closed = false
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if character == "\\" {
                        guard let escaped = rest.first else { break }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "n": value.append("\n")
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        default: throw fail("bad escape in label value")
                        }
                    } else if character == "\"" {
                        closed = true
                        break
                    } else {
                        value.append(character)
                    }
                }
                guard closed else { throw fail("unterminated label value") }
                labels[String(label)] = value
                if rest.first == "," { rest = rest.dropFirst() }
            }
        }
        let fields = rest.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 1 || fields.count == 2 else { throw fail("expected a value and an optional timestamp") }
        guard let value = parseValue(fields[0]) else { throw fail("bad value") }
        if fields.count == 2, Int64(fields[1]) == nil { throw fail("bad timestamp") }
        return Sample(name: String(name), labels: labels, value: value)
    }

    private static func parseValue(_ text: Substring) -> Double? {
        switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(text)
        }
    }

    private static func isMetricName(_ name: Substring) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" || first == ":" else {
            return false
        }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
    }

    private static func isLabelName(_ name: Substring) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }
}
