import Foundation
import Testing

/// Reads files from `Fixtures/`.
enum FixtureFiles {
    static func url(_ name: String) throws -> URL {
        try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"))
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        try Array(Data(contentsOf: url(name)))
    }

    static func text(_ name: String) throws -> String {
        try String(decoding: Data(contentsOf: url(name)), as: UTF8.self)
    }
}

/// A fixed instant inside the validity period of every fixture certificate except the expired one.
let fixtureTime = Date(timeIntervalSince1970: 1_893_456_000)  // 2030-01-01T00:00:00Z
