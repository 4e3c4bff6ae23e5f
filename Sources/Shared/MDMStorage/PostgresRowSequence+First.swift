import PostgresNIO

extension PostgresRowSequence {
    /// The first row decoded as `T`, or `nil` when the query returned no rows.
    func first<T: PostgresDecodable & Sendable>(decoding type: T.Type) async throws -> T? {
        for try await value in decode(T.self) {
            return value
        }
        return nil
    }
}
