import Foundation

extension MDMProtocolError {
    /// Maps Foundation's decoding errors onto the protocol errors devices and clients see.
    static func from(_ error: any Error) -> MDMProtocolError {
        guard let decodingError = error as? DecodingError else {
            return .malformedPlist(String(describing: error))
        }
        switch decodingError {
        case .keyNotFound(let key, let context):
            return .missingKey(keyPath(context.codingPath + [key]))
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return .missingKey(keyPath(context.codingPath))
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                return .malformedPlist(context.debugDescription)
            }
            return .missingKey(keyPath(context.codingPath))
        @unknown default:
            return .malformedPlist(String(describing: decodingError))
        }
    }

    private static func keyPath(_ path: [any CodingKey]) -> String {
        path.map(\.stringValue).joined(separator: ".")
    }
}

/// Decodes a property list (XML or binary) into `T`, with errors as `MDMProtocolError`.
package func decodePropertyList<T: Decodable>(_ type: T.Type, from data: Data) throws(MDMProtocolError) -> T {
    do {
        return try PropertyListDecoder().decode(type, from: data)
    } catch {
        throw MDMProtocolError.from(error)
    }
}

/// Encodes a reply as an XML property list, the format devices are sent.
package func encodePropertyList<T: Encodable>(_ value: T) throws -> Data {
    let encoder = PropertyListEncoder()
    encoder.outputFormat = .xml
    return try encoder.encode(value)
}
