import Foundation

/// Text forms of certificates and signatures: base64 as sent in headers, PEM, and the forms a
/// TLS-terminating proxy uses to forward a client certificate.
package enum CertificateText {
    /// Decodes base64, ignoring whitespace and line breaks anywhere and tolerating missing padding.
    package static func base64Decoded(_ text: some StringProtocol) -> [UInt8]? {
        base64Decoded(utf8: text.utf8)
    }

    /// True when `text` holds nothing but spaces, tabs and line breaks. Byte-level: a signature
    /// header is a few kilobytes, and walking it by `Character` showed in profiles.
    package static func isBlank(_ text: String) -> Bool {
        !text.utf8.contains { !isWhitespace($0) }
    }

    /// The DER of every `CERTIFICATE` block in `text`, in order; other blocks and text between blocks
    /// (as `openssl` writes into bundles) are skipped. Nil when a certificate block is not valid base64.
    package static func pemCertificates(in text: some StringProtocol) -> [[UInt8]]? {
        var certificates: [[UInt8]] = []
        var rest = Substring(text)
        while let begin = rest.range(of: beginMarker) {
            guard let end = rest[begin.upperBound...].range(of: endMarker) else {
                return nil
            }
            guard let der = base64Decoded(rest[begin.upperBound..<end.lowerBound]) else {
                return nil
            }
            certificates.append(der)
            rest = rest[end.upperBound...]
        }
        return certificates
    }

    /// The DER of a certificate forwarded by a proxy: an RFC 9440 byte sequence (`:base64:`), a
    /// URL-escaped PEM (nginx `$ssl_client_escaped_cert`), a plain PEM, or bare (possibly URL-escaped)
    /// base64 DER as some proxies send.
    package static func forwardedCertificateDER(_ header: String) throws(DeviceIdentityError) -> [UInt8] {
        // Byte-level checks: this runs on every request, and character-level String work is slow.
        guard let first = header.utf8.firstIndex(where: { !isWhitespace($0) }),
            let last = header.utf8.lastIndex(where: { !isWhitespace($0) })
        else {
            // nginx sets the header to an empty string when the client presented no certificate.
            throw .missingIdentity
        }
        var value = header[first...last]
        let colon = UInt8(ascii: ":")
        if first != last, value.utf8.first == colon, value.utf8.last == colon {
            guard let der = base64Decoded(utf8: value.utf8.dropFirst().dropLast()) else {
                throw .malformedHeader("RFC 9440 byte sequence is not valid base64")
            }
            return der
        }
        if value.utf8.contains(UInt8(ascii: "%")) {
            guard let unescaped = value.removingPercentEncoding else {
                throw .malformedHeader("forwarded certificate has invalid percent-encoding")
            }
            value = unescaped[...]
        }
        if value.contains(beginMarker) {
            guard let certificates = pemCertificates(in: value), let first = certificates.first else {
                throw .malformedHeader("forwarded PEM has no valid CERTIFICATE block")
            }
            return first
        }
        guard let der = base64Decoded(utf8: value.utf8) else {
            throw .malformedHeader("forwarded certificate is neither RFC 9440, PEM nor base64")
        }
        return der
    }

    private static func base64Decoded(utf8 text: some Collection<UInt8>) -> [UInt8]? {
        var cleaned: [UInt8] = []
        cleaned.reserveCapacity(text.count)
        for byte in text where !isWhitespace(byte) {
            cleaned.append(byte)
        }
        guard !cleaned.isEmpty, cleaned.count % 4 != 1 else {
            return nil
        }
        while cleaned.count % 4 != 0 {
            cleaned.append(UInt8(ascii: "="))
        }
        guard let data = Data(base64Encoded: Data(cleaned)) else {
            return nil
        }
        return Array(data)
    }

    private static let beginMarker = "-----BEGIN CERTIFICATE-----"
    private static let endMarker = "-----END CERTIFICATE-----"

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
            || byte == UInt8(ascii: "\t")
    }
}
