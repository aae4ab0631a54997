//! Twilio's REST API, as far as Tsunagu uses it. Retries only what is safe to retry (see
//! `Retry`), with a short backoff, and only within the client's [`Budget`]: inside a webhook,
//! whose caller is on the line, two attempts at most, all ending by the webhook's REST
//! deadline, so that the webhook still answers with TwiML of its own in time (`budget.rs`).

use serde::Deserialize;

use crate::budget::Budget;
use crate::phone::PhoneNumber;
use crate::secrets::{SecretCache, SecretError};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::status_class;

const API_VERSION: &str = "2010-04-01";

#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    #[error(transparent)]
    Credentials(#[from] SecretError),
    /// Twilio answered with an error body: its code and message are kept for the caller.
    #[error("Twilio answered {status} (code {code}): {message}")]
    Api {
        status: u16,
        code: u32,
        message: String,
    },
    #[error("Twilio could not be reached: {0}")]
    Transport(String),
    /// The request's time budget was spent before a (further) attempt could be made.
    #[error("no time left to ask Twilio")]
    OutOfTime,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// An outbound call to place.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    pub to: &'a str,
    pub from: &'a str,
    /// Where Twilio fetches the TwiML once the callee answers.
    pub url: &'a str,
    pub status_callback: &'a str,
    /// Seconds to ring before giving up.
    pub timeout: u32,
    /// Hard limit on the call's length, in seconds.
    pub time_limit: u64,
}

/// Which failures may be retried. Creating a call is not idempotent: after a 500 Twilio may
/// or may not have placed it, so only answers that say "not processed" (429, 503) are retried.
#[derive(Debug, Clone, Copy)]
enum Retry {
    OnServerErrors,
    OnlyWhenNotProcessed,
}

impl Retry {
    fn allows(self, status: u16) -> bool {
        match self {
            Retry::OnServerErrors => status == 429 || status >= 500,
            Retry::OnlyWhenNotProcessed => status == 429 || status == 503,
        }
    }
}

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    base_url: String,
    budget: Budget,
    /// Counts Twilio's error answers (`TwilioErrors`); none without it.
    metrics: Option<Metrics>,
}

impl TwilioClient {
    /// A client without an overall deadline (each attempt is still bounded).
    pub fn new(http: reqwest::Client, base_url: impl Into<String>) -> Self {
        Self {
            http,
            base_url: base_url.into(),
            budget: Budget::background(),
            metrics: None,
        }
    }

    /// The same client, counting Twilio's error answers in `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self {
            metrics: Some(metrics),
            ..self
        }
    }

    /// One error answer, or an attempt that got none: every attempt counts, retried or not,
    /// since a 5xx that a retry hid still says Twilio is unwell.
    fn count_error(&self, status_class: &str, code: &str) {
        if let Some(m) = &self.metrics {
            m.twilio_error(status_class, code);
        }
    }

    /// The same client for one request: all its calls share `budget`.
    pub fn within(&self, budget: Budget) -> Self {
        Self {
            budget,
            ..self.clone()
        }
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Ends a live call (`Status=completed`). A call that already ended is not an error.
    pub async fn end_call(&self, secrets: &SecretCache, call_sid: &str) -> Result<(), TwilioError> {
        self.update_call(secrets, call_sid, &[("Status", "completed")])
            .await
    }

    /// Updates a live call. One that has ended meanwhile is not an error: there is nothing
    /// left to change (20404: no such call any more; 21220: the call is not in progress).
    async fn update_call(
        &self,
        secrets: &SecretCache,
        call_sid: &str,
        form: &[(&str, &str)],
    ) -> Result<(), TwilioError> {
        match self
            .post(secrets, &format!("Calls/{call_sid}.json"), form)
            .await
        {
            Ok(_)
            | Err(TwilioError::Api {
                code: 20404 | 21220,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Places an outbound call (`POST Calls.json`) and returns its CallSid.
    pub async fn create_call(
        &self,
        secrets: &SecretCache,
        call: &NewCall<'_>,
    ) -> Result<String, TwilioError> {
        let timeout = call.timeout.to_string();
        let time_limit = call.time_limit.to_string();
        let mut form = vec![
            ("To", call.to),
            ("From", call.from),
            ("Url", call.url),
            ("Method", "POST"),
            ("StatusCallback", call.status_callback),
            ("StatusCallbackMethod", "POST"),
            ("Timeout", timeout.as_str()),
            ("TimeLimit", time_limit.as_str()),
        ];
        for event in ["initiated", "ringing", "answered", "completed"] {
            form.push(("StatusCallbackEvent", event));
        }
        let created = self
            .send(
                secrets,
                reqwest::Method::POST,
                "Calls.json",
                &form,
                Retry::OnlyWhenNotProcessed,
            )
            .await?;
        created["sid"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| TwilioError::Transport("Twilio created a call but sent no sid".into()))
    }

    /// Stops a call that is still queued or ringing (`Status=canceled`); Twilio leaves a
    /// call that was answered meanwhile as it is.
    pub async fn cancel(&self, secrets: &SecretCache, call_sid: &str) -> Result<(), TwilioError> {
        self.update_call(secrets, call_sid, &[("Status", "canceled")])
            .await
    }

    /// Hangs up a call in any state: `canceled` for one still queued or ringing, then
    /// `completed` if it had already been answered.
    pub async fn hang_up(&self, secrets: &SecretCache, call_sid: &str) -> Result<(), TwilioError> {
        let path = format!("Calls/{call_sid}.json");
        match self.post(secrets, &path, &[("Status", "canceled")]).await {
            Ok(call)
                if matches!(
                    call["status"].as_str(),
                    Some("canceled" | "completed" | "busy" | "failed" | "no-answer")
                ) =>
            {
                Ok(())
            }
            Ok(_) => self.end_call(secrets, call_sid).await,
            Err(TwilioError::Api {
                code: 20404 | 21220,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The call's current status as Twilio knows it (`in-progress`, `completed`, …).
    pub async fn call_status(
        &self,
        secrets: &SecretCache,
        call_sid: &str,
    ) -> Result<String, TwilioError> {
        let call = self
            .send(
                secrets,
                reqwest::Method::GET,
                &format!("Calls/{call_sid}.json"),
                &[],
                Retry::OnServerErrors,
            )
            .await?;
        Ok(call["status"].as_str().unwrap_or("unknown").to_owned())
    }

    /// Replaces what a live call is doing with `twiml` (e.g. a message and `<Hangup/>`).
    pub async fn play_and_end(
        &self,
        secrets: &SecretCache,
        call_sid: &str,
        twiml: &str,
    ) -> Result<(), TwilioError> {
        self.update_call(secrets, call_sid, &[("Twiml", twiml)])
            .await
    }

    /// Puts a conference participant on hold (`hold_url` plays meanwhile) or takes them off,
    /// and with `announce_url` plays that TwiML to this participant alone. Twilio's
    /// Conference Participant resource, update: `Hold`, `HoldUrl`, `AnnounceUrl` ("The URL
    /// we call using the announce_method for an announcement to the participant"),
    /// <https://www.twilio.com/docs/voice/api/conference-participant-resource>.
    pub async fn hold(
        &self,
        secrets: &SecretCache,
        conference_sid: &str,
        call_sid: &str,
        hold_url: Option<&str>,
        announce_url: Option<&str>,
    ) -> Result<(), TwilioError> {
        let mut form = vec![("Hold", if hold_url.is_some() { "true" } else { "false" })];
        if let Some(url) = hold_url {
            form.push(("HoldUrl", url));
            form.push(("HoldMethod", "POST"));
        }
        if let Some(url) = announce_url {
            form.push(("AnnounceUrl", url));
            form.push(("AnnounceMethod", "POST"));
        }
        let path = format!("Conferences/{conference_sid}/Participants/{call_sid}.json");
        match self.post(secrets, &path, &form).await {
            Ok(_) | Err(TwilioError::Api { code: 20404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Plays the TwiML at `url` to everyone in the room. Twilio's Conference resource,
    /// update: `AnnounceUrl` ("The URL we should call to announce something into the
    /// conference"), <https://www.twilio.com/docs/voice/api/conference-resource>. A room
    /// that already ended is not an error: there is nobody left to tell.
    pub async fn announce_to_conference(
        &self,
        secrets: &SecretCache,
        conference_sid: &str,
        url: &str,
    ) -> Result<(), TwilioError> {
        let form = [("AnnounceUrl", url), ("AnnounceMethod", "POST")];
        match self
            .post(
                secrets,
                &format!("Conferences/{conference_sid}.json"),
                &form,
            )
            .await
        {
            Ok(_) | Err(TwilioError::Api { code: 20404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Gives a live call new TwiML from `url` (it leaves any conference it is in).
    pub async fn redirect(
        &self,
        secrets: &SecretCache,
        call_sid: &str,
        url: &str,
    ) -> Result<(), TwilioError> {
        self.post(
            secrets,
            &format!("Calls/{call_sid}.json"),
            &[("Url", url), ("Method", "POST")],
        )
        .await
        .map(|_| ())
    }

    /// Sets a call's hard limit (seconds).
    pub async fn set_time_limit(
        &self,
        secrets: &SecretCache,
        call_sid: &str,
        seconds: u64,
    ) -> Result<(), TwilioError> {
        let seconds = seconds.to_string();
        self.update_call(secrets, call_sid, &[("TimeLimit", seconds.as_str())])
            .await
    }

    /// Ends a conference for everyone in it. One that already ended is not an error.
    pub async fn end_conference(
        &self,
        secrets: &SecretCache,
        conference_sid: &str,
    ) -> Result<(), TwilioError> {
        match self
            .post(
                secrets,
                &format!("Conferences/{conference_sid}.json"),
                &[("Status", "completed")],
            )
            .await
        {
            Ok(_) | Err(TwilioError::Api { code: 20404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// POSTs a form to `/2010-04-01/Accounts/{AccountSid}/{path}` and returns the JSON body.
    /// Updates are idempotent, so 429 and 5xx answers are retried.
    pub async fn post(
        &self,
        secrets: &SecretCache,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, TwilioError> {
        self.send(
            secrets,
            reqwest::Method::POST,
            path,
            form,
            Retry::OnServerErrors,
        )
        .await
    }

    async fn send(
        &self,
        secrets: &SecretCache,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
        retry: Retry,
    ) -> Result<serde_json::Value, TwilioError> {
        let creds = secrets.get().await?;
        let url = format!(
            "{}/{API_VERSION}/Accounts/{}/{path}",
            self.base_url, creds.account_sid
        );
        let (user, password) = creds.rest_auth();
        let mut last = TwilioError::OutOfTime;
        let mut n = 0;
        while let Some(attempt) = self.budget.attempt(n) {
            n += 1;
            if !attempt.backoff.is_zero() {
                tokio::time::sleep(attempt.backoff).await;
            }
            let mut request = self
                .http
                .request(method.clone(), &url)
                .basic_auth(user, Some(password))
                // Covers connecting, the answer and its body.
                .timeout(attempt.timeout);
            if method == reqwest::Method::POST {
                request = request.form(form);
            }
            let response = request.send().await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    let class = if e.is_timeout() {
                        "timeout"
                    } else {
                        "transport"
                    };
                    self.count_error(class, "none");
                    // A request that may have reached Twilio is not repeated blindly.
                    if e.is_connect() {
                        last = TwilioError::Transport(e.to_string());
                        continue;
                    }
                    if e.is_timeout() {
                        return Err(TwilioError::Transport(format!(
                            "no answer within {} ms",
                            attempt.timeout.as_millis()
                        )));
                    }
                    return Err(TwilioError::Transport(e.to_string()));
                }
            };
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if (200..300).contains(&status) {
                return serde_json::from_str(&body)
                    .map_err(|e| TwilioError::Transport(format!("unreadable answer: {e}")));
            }
            let parsed: Option<ErrorBody> = serde_json::from_str(&body).ok();
            let code = parsed.as_ref().and_then(|b| b.code).unwrap_or(0);
            self.count_error(status_class(status), &code.to_string());
            last = TwilioError::Api {
                status,
                code,
                // Twilio's messages quote the numbers they refuse; they go into logs and
                // 502 details, so every number in them is masked here, once.
                message: mask_numbers(
                    &parsed
                        .and_then(|b| b.message)
                        .unwrap_or_else(|| body.chars().take(200).collect::<String>()),
                ),
            };
            if !retry.allows(status) {
                break;
            }
        }
        Err(last)
    }
}

/// `text` with every phone number in it masked: a run of at least 8 digits, optionally
/// after `+` and split by single spaces or hyphens, that is not part of a word (a SID, a
/// hex string). Parsed numbers are masked as in logs (`+8190****5678`); others keep only
/// their last two digits.
pub fn mask_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i > 0 && chars[i - 1].is_alphanumeric();
        let first_digit = if chars[i] == '+' { i + 1 } else { i };
        if starts_word || !chars.get(first_digit).is_some_and(char::is_ascii_digit) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // The run: digits, each separator followed by a digit.
        let mut end = first_digit;
        let mut digits = 0;
        while end < chars.len() {
            if chars[end].is_ascii_digit() {
                digits += 1;
                end += 1;
            } else if matches!(chars[end], ' ' | '-')
                && chars.get(end + 1).is_some_and(char::is_ascii_digit)
            {
                end += 1;
            } else {
                break;
            }
        }
        let run: String = chars[i..end].iter().collect();
        if digits < 8 || chars.get(end).is_some_and(|c| c.is_alphanumeric()) {
            out.push_str(&run);
        } else {
            match PhoneNumber::parse(&run) {
                Ok(n) => out.push_str(&n.masked().to_string()),
                Err(_) => {
                    let kept: String = run.chars().filter(char::is_ascii_digit).collect();
                    out.push_str("****");
                    out.push_str(&kept[kept.len() - 2..]);
                }
            }
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secrets::FixedSecret;

    #[tokio::test]
    async fn with_the_budget_spent_twilio_is_not_asked() {
        let secrets = SecretCache::new(Arc::new(FixedSecret));
        // Nothing listens there: an attempt would fail with a transport error instead.
        let client = TwilioClient::new(crate::app::http_client(), "http://127.0.0.1:9")
            .within(Budget::until(tokio::time::Instant::now(), 2));
        let started = std::time::Instant::now();
        let e = client.end_conference(&secrets, "CF1").await.unwrap_err();
        assert!(matches!(e, TwilioError::OutOfTime), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn numbers_in_twilio_messages_are_masked() {
        let cases = [
            (
                "The source phone number provided, +815031234567, is not yet verified",
                "The source phone number provided, +8150****4567, is not yet verified",
            ),
            (
                "Invalid 'To' Phone Number: +81 90 1234 5678",
                "Invalid 'To' Phone Number: +8190****5678",
            ),
            ("call 090-1234-5678 now", "call +8190****5678 now"),
            ("To +1234567890123456 is odd", "To ****56 is odd"),
            // Not numbers: SIDs, codes, short digit runs, URLs of error pages.
            (
                "Call CA0123456789abcdef0123456789abcdef not found (code 20404)",
                "Call CA0123456789abcdef0123456789abcdef not found (code 20404)",
            ),
            (
                "see https://www.twilio.com/docs/errors/21211",
                "see https://www.twilio.com/docs/errors/21211",
            ),
        ];
        for (text, masked) in cases {
            assert_eq!(mask_numbers(text), masked, "{text}");
        }
    }
}
