//! Twilio's REST API, as far as Tsunagu uses it. Retries only what is safe to retry: 429 and
//! 5xx answers, with a short bounded backoff (webhooks must still answer within a second or two).

use std::time::Duration;

use serde::Deserialize;

use crate::secrets::{SecretCache, SecretError};

const API_VERSION: &str = "2010-04-01";
const ATTEMPTS: u32 = 3;

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
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    base_url: String,
}

impl TwilioClient {
    pub fn new(http: reqwest::Client, base_url: impl Into<String>) -> Self {
        Self {
            http,
            base_url: base_url.into(),
        }
    }

    /// Ends a live call (`Status=completed`). A call that already ended is not an error.
    pub async fn end_call(&self, secrets: &SecretCache, call_sid: &str) -> Result<(), TwilioError> {
        let path = format!("Calls/{call_sid}.json");
        match self.post(secrets, &path, &[("Status", "completed")]).await {
            Ok(_) => Ok(()),
            // 20404: no such call any more; 21220: the call is not in progress.
            Err(TwilioError::Api {
                code: 20404 | 21220,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// POSTs a form to `/2010-04-01/Accounts/{AccountSid}/{path}` and returns the JSON body.
    pub async fn post(
        &self,
        secrets: &SecretCache,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, TwilioError> {
        let creds = secrets.get().await?;
        let url = format!(
            "{}/{API_VERSION}/Accounts/{}/{path}",
            self.base_url, creds.account_sid
        );
        let (user, password) = creds.rest_auth();
        let mut last = TwilioError::Transport("no attempt made".into());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(150 << attempt)).await;
            }
            let response = self
                .http
                .post(&url)
                .basic_auth(user, Some(password))
                .form(form)
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    // A request that may have reached Twilio is not repeated blindly.
                    if e.is_connect() {
                        last = TwilioError::Transport(e.to_string());
                        continue;
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
            last = TwilioError::Api {
                status,
                code: parsed.as_ref().and_then(|b| b.code).unwrap_or(0),
                message: parsed
                    .and_then(|b| b.message)
                    .unwrap_or_else(|| body.chars().take(200).collect()),
            };
            if status != 429 && status < 500 {
                break;
            }
        }
        Err(last)
    }
}
