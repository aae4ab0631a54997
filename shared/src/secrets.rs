//! Twilio credentials from Secrets Manager: fetched on first use (never during init), cached
//! per container for five minutes, and refreshed once when a signature fails (token rotation).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

pub const CACHE_FOR: Duration = Duration::from_secs(300);
/// A flood of badly signed requests must not turn into a flood of Secrets Manager calls.
pub const MIN_FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: String,
    #[serde(default)]
    pub api_key_sid: Option<String>,
    #[serde(default)]
    pub api_key_secret: Option<String>,
}

impl TwilioCredentials {
    /// Basic-auth user and password for the REST API: the API key when configured, as Twilio
    /// recommends, else the account SID and auth token.
    pub fn rest_auth(&self) -> (&str, &str) {
        match (&self.api_key_sid, &self.api_key_secret) {
            (Some(sid), Some(secret)) if !sid.is_empty() && !secret.is_empty() => (sid, secret),
            _ => (&self.account_sid, &self.auth_token),
        }
    }
}

impl std::fmt::Debug for TwilioCredentials {
    // Secrets never reach logs, even through {:?}.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioCredentials")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("api_key_sid", &self.api_key_sid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read secret {id}: {reason}")]
    Unavailable { id: String, reason: String },
    #[error("secret {id} is not JSON with account_sid and auth_token: {reason}")]
    Malformed { id: String, reason: String },
}

#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn fetch(&self) -> Result<TwilioCredentials, SecretError>;
}

pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: String) -> Self {
        Self { client, secret_id }
    }
}

pub fn parse_secret(id: &str, json: &str) -> Result<TwilioCredentials, SecretError> {
    let creds: TwilioCredentials =
        serde_json::from_str(json).map_err(|e| SecretError::Malformed {
            id: id.to_owned(),
            // serde's message names the missing field; it never echoes the secret's values.
            reason: e.to_string(),
        })?;
    if creds.account_sid.is_empty() || creds.auth_token.is_empty() {
        return Err(SecretError::Malformed {
            id: id.to_owned(),
            reason: "account_sid and auth_token must not be empty".into(),
        });
    }
    Ok(creds)
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<TwilioCredentials, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretError::Unavailable {
                id: self.secret_id.clone(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            })?;
        let json = out.secret_string().ok_or_else(|| SecretError::Malformed {
            id: self.secret_id.clone(),
            reason: "the secret has no string value".into(),
        })?;
        parse_secret(&self.secret_id, json)
    }
}

struct Cached {
    creds: TwilioCredentials,
    fetched: Instant,
}

/// One per container; cloning shares the cache.
#[derive(Clone)]
pub struct SecretCache {
    source: Arc<dyn SecretSource>,
    cached: Arc<Mutex<Option<Cached>>>,
}

impl SecretCache {
    pub fn new(source: Arc<dyn SecretSource>) -> Self {
        Self {
            source,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// The cached credentials, fetched when absent or older than five minutes.
    pub async fn get(&self) -> Result<TwilioCredentials, SecretError> {
        let mut slot = self.cached.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.fetched.elapsed() < CACHE_FOR) {
            return Ok(c.creds.clone());
        }
        let creds = self.source.fetch().await?;
        *slot = Some(Cached {
            creds: creds.clone(),
            fetched: Instant::now(),
        });
        Ok(creds)
    }

    /// Fetches again after a signature failure, in case the token was rotated. Returns `None`
    /// when nothing new can be learnt: the cache is fresh from a fetch moments ago, or the
    /// secret is unchanged.
    pub async fn refresh_after_failure(&self) -> Result<Option<TwilioCredentials>, SecretError> {
        let mut slot = self.cached.lock().await;
        if slot
            .as_ref()
            .is_some_and(|c| c.fetched.elapsed() < MIN_FORCED_REFRESH_INTERVAL)
        {
            return Ok(None);
        }
        let creds = self.source.fetch().await?;
        let changed = slot.as_ref().is_none_or(|c| c.creds != creds);
        *slot = Some(Cached {
            creds: creds.clone(),
            fetched: Instant::now(),
        });
        Ok(changed.then_some(creds))
    }

    /// For tests: forget the fetch time so the next refresh is allowed.
    #[doc(hidden)]
    pub async fn age_for_test(&self, by: Duration) {
        if let Some(c) = self.cached.lock().await.as_mut() {
            c.fetched = c.fetched.checked_sub(by).unwrap_or(c.fetched);
        }
    }
}

/// A source that always gives the same test credentials, for unit tests.
#[cfg(test)]
pub(crate) struct FixedSecret;

#[cfg(test)]
#[async_trait]
impl SecretSource for FixedSecret {
    async fn fetch(&self) -> Result<TwilioCredentials, SecretError> {
        parse_secret("test", r#"{"account_sid":"AC1","auth_token":"token"}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Rotating {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl SecretSource for Rotating {
        async fn fetch(&self) -> Result<TwilioCredentials, SecretError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            parse_secret(
                "test",
                &format!(r#"{{"account_sid":"AC1","auth_token":"token-{n}"}}"#),
            )
        }
    }

    #[tokio::test]
    async fn caches_and_refreshes_at_most_once_per_interval() {
        let source = Arc::new(Rotating {
            calls: AtomicUsize::new(0),
        });
        let cache = SecretCache::new(source.clone());
        assert_eq!(cache.get().await.unwrap().auth_token, "token-0");
        assert_eq!(cache.get().await.unwrap().auth_token, "token-0");
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            1,
            "second get is cached"
        );

        // Just fetched: a failing signature does not trigger another fetch.
        assert!(cache.refresh_after_failure().await.unwrap().is_none());
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);

        cache.age_for_test(MIN_FORCED_REFRESH_INTERVAL).await;
        let rotated = cache.refresh_after_failure().await.unwrap().unwrap();
        assert_eq!(rotated.auth_token, "token-1");
        assert_eq!(cache.get().await.unwrap().auth_token, "token-1");

        cache.age_for_test(CACHE_FOR).await;
        assert_eq!(
            cache.get().await.unwrap().auth_token,
            "token-2",
            "expired after 5 min"
        );
    }

    #[test]
    fn malformed_secrets_are_explained_without_values() {
        let err = parse_secret("s", r#"{"account_sid":"AC1"}"#).unwrap_err();
        assert!(err.to_string().contains("auth_token"), "{err}");
        let err = parse_secret("s", r#"{"account_sid":"AC1","auth_token":""}"#).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let creds = parse_secret("s", r#"{"account_sid":"AC1","auth_token":"t0p"}"#).unwrap();
        assert!(!format!("{creds:?}").contains("t0p"));
        assert_eq!(creds.rest_auth(), ("AC1", "t0p"));
    }

    #[test]
    fn api_key_is_preferred_for_rest() {
        let creds = parse_secret(
            "s",
            r#"{"account_sid":"AC1","auth_token":"t","api_key_sid":"SK1","api_key_secret":"k"}"#,
        )
        .unwrap();
        assert_eq!(creds.rest_auth(), ("SK1", "k"));
    }
}
