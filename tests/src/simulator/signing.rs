//! `X-Twilio-Signature`, computed the way Twilio documents it, so the handlers' own
//! validation is exercised against an independent implementation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// HMAC-SHA1 keyed by the auth token over the URL exactly as configured, followed by
/// every POST parameter's name and value, sorted by name (then value, for repeated
/// names); base64. For GET requests the parameters are in the URL and `params` is empty.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC-SHA1 accepts any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}
