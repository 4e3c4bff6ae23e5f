import Crypto
import Foundation

/// `X-Hmac-Signature` as SwiftMDM sends it to the webhook receiver and the Declarative
/// Management server (NanoMDM's convention): base64 of HMAC-SHA256 over the exact body.
package enum HMACSignature {
    package static func base64(key: [UInt8], body: some DataProtocol) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: key))
        return Data(code).base64EncodedString()
    }
}
