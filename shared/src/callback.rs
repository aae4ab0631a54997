//! Tsunagu's requests to the platform's own URLs (the intercept and out-of-session
//! callbacks, and the events `deliver-events` posts): signed, so the platform can tell they come from Tsunagu; never redirected;
//! https only (plain http only to a loopback address, for the local stack); and read only up
//! to [`MAX_RESPONSE_BYTES`].
//!
//! The signature follows Stripe's scheme: `Tsunagu-Signature: t=<unix seconds>,v1=<hex>`,
//! where `<hex>` is HMAC-SHA256, keyed by the secret's `callback_signing_key`, over
//! `"<t>.<body>"` — the exact bytes sent. The README shows how to check it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::app::App;

pub const SIGNATURE_HEADER: &str = "tsunagu-signature";
/// A platform's answer is a status or a short TwiML document; anything longer is refused.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// `t=<t>,v1=<hex HMAC-SHA256 over "<t>.<body>">`.
pub fn signature(key: &str, t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether Tsunagu may send to `url`: https, or http to a loopback address (the local stack).
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => Err("plain http is allowed only to a loopback address; use https".into()),
        other => Err(format!("scheme {other:?} is not https")),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The platform's answer: its status and (at most [`MAX_RESPONSE_BYTES`] of) its body.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("callback URL refused: {0}")]
    Url(String),
    #[error("callback failed: {0}")]
    Transport(String),
    #[error("callback answer larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// POSTs `form` to `url`, signed, within `timeout`; never follows a redirect (the app's
/// HTTP client has none: a 3xx comes back as it is).
pub async fn post_form(
    app: &App,
    url: &str,
    form: &[(&str, &str)],
    timeout: Duration,
) -> Result<Answer, CallbackError> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    post_signed(
        app,
        url,
        "application/x-www-form-urlencoded",
        body.into_bytes(),
        timeout,
    )
    .await
}

/// POSTs a JSON `body` (sent byte for byte as given, so the signature covers exactly it)
/// to `url`, signed, within `timeout`, like [`post_form`]: the event callbacks.
pub async fn post_json(
    app: &App,
    url: &str,
    body: &str,
    timeout: Duration,
) -> Result<Answer, CallbackError> {
    post_signed(
        app,
        url,
        "application/json",
        body.as_bytes().to_vec(),
        timeout,
    )
    .await
}

async fn post_signed(
    app: &App,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, CallbackError> {
    check_url(url).map_err(CallbackError::Url)?;
    let mut request = app
        .http
        .post(url)
        .timeout(timeout)
        .header(http::header::CONTENT_TYPE, content_type);
    // The secret is usually cached already: the webhook that leads here verified its
    // signature (deliver-events reads it once per container).
    match app.secrets.get().await {
        Ok(creds) => match creds
            .callback_signing_key
            .as_deref()
            .filter(|k| !k.is_empty())
        {
            Some(key) => {
                request = request.header(SIGNATURE_HEADER, signature(key, app.now(), &body));
            }
            None => tracing::warn!(
                "no callback_signing_key in the Twilio secret; callback sent unsigned"
            ),
        },
        Err(e) => return Err(CallbackError::Transport(format!("no signing key: {e}"))),
    }
    let mut response = request
        .body(body)
        .send()
        .await
        .map_err(|e| CallbackError::Transport(e.to_string()))?;
    let status = response.status();
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(CallbackError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CallbackError::Transport(e.to_string()))?
    {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(CallbackError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_and_the_body() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"key", b"1700000000.a=1&b=2", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature("key", 1_700_000_000, b"a=1&b=2"),
            "t=1700000000,v1=507c9b7fc959453b73546ceb5f8b5ff8baeebcb7054247a125501f5137f2ecab"
        );
    }

    #[test]
    fn only_https_or_loopback_http() {
        for ok in [
            "https://platform.example.jp/intercept",
            "http://127.0.0.1:8080/intercept",
            "http://[::1]:8080/x",
            "http://localhost/x",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://platform.example.jp/intercept",
            "http://10.0.0.1/x",
            "http://169.254.169.254/latest",
            "ftp://127.0.0.1/x",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
