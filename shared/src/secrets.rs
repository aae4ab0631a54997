//! Twilio credentials from Secrets Manager: fetched on first use, or by the init warm-up in
//! the background (`app::warm_up`, never on the path to the first poll), cached
//! per container for five minutes, and refreshed when a signature fails (token rotation), at
//! most once per interval whether the refresh succeeds or not. The previous version of the
//! secret is asked for only when a signature fails (outside a rotation no genuine request
//! needs it, so the first event of a container waits for one `GetSecretValue`, not two), then
//! kept with the current one, so that a request signed with either token of a rotation in
//! progress is accepted; and while Secrets Manager cannot be reached, the tokens already
//! cached keep deciding (a forged request stays a 403).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

pub const CACHE_FOR: Duration = Duration::from_secs(300);
/// A flood of badly signed requests must not turn into a flood of Secrets Manager calls:
/// after any fetch, successful or not, a signature failure asks again only this much later.
pub const MIN_FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// With nothing cached at all, a failed fetch is not retried sooner than this.
pub const RETRY_WITHOUT_CACHE: Duration = Duration::from_secs(1);

/// Secrets Manager's staging labels: `AWSCURRENT` is the version `GetSecretValue` returns by
/// default, and `PutSecretValue` moves `AWSPREVIOUS` onto the version that was current
/// ("What's in a Secrets Manager secret?", secret versions:
/// https://docs.aws.amazon.com/secretsmanager/latest/userguide/whats-in-a-secret.html).
pub const STAGE_CURRENT: &str = "AWSCURRENT";
pub const STAGE_PREVIOUS: &str = "AWSPREVIOUS";

#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: String,
    #[serde(default)]
    pub api_key_sid: Option<String>,
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// The key that signs Tsunagu's requests to the platform's callback URLs
    /// (`Tsunagu-Signature`); optional: without it those requests go unsigned.
    #[serde(default)]
    pub callback_signing_key: Option<String>,
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

/// The secret's current version and, during a rotation, the one before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretVersions {
    pub current: TwilioCredentials,
    pub previous: Option<TwilioCredentials>,
}

impl SecretVersions {
    /// The auth tokens a genuine Twilio request may be signed with, current first.
    pub fn auth_tokens(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.auth_token.as_str()).chain(
            self.previous
                .iter()
                .map(|p| p.auth_token.as_str())
                .filter(|t| *t != self.current.auth_token),
        )
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("could not read secret {id}: {reason}")]
    Unavailable { id: String, reason: String },
    #[error("secret {id} is not JSON with account_sid and auth_token: {reason}")]
    Malformed { id: String, reason: String },
}

#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current version (`AWSCURRENT`).
    async fn fetch(&self) -> Result<TwilioCredentials, SecretError>;
    /// The previous version (`AWSPREVIOUS`), if the secret has one.
    async fn fetch_previous(&self) -> Result<Option<TwilioCredentials>, SecretError> {
        Ok(None)
    }
}

pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: String) -> Self {
        Self { client, secret_id }
    }

    /// The version carrying `stage`; `None` when no version carries it.
    async fn stage(&self, stage: &str) -> Result<Option<TwilioCredentials>, SecretError> {
        let out = match self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => out,
            // A secret never rotated has no AWSPREVIOUS: GetSecretValue answers
            // ResourceNotFoundException for a stage no version carries.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                    && stage != STAGE_CURRENT =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(SecretError::Unavailable {
                    id: self.secret_id.clone(),
                    reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                });
            }
        };
        let json = out.secret_string().ok_or_else(|| SecretError::Malformed {
            id: self.secret_id.clone(),
            reason: "the secret has no string value".into(),
        })?;
        parse_secret(&self.secret_id, json).map(Some)
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
        self.stage(STAGE_CURRENT)
            .await?
            .ok_or_else(|| SecretError::Unavailable {
                id: self.secret_id.clone(),
                reason: "no version is AWSCURRENT".into(),
            })
    }

    async fn fetch_previous(&self) -> Result<Option<TwilioCredentials>, SecretError> {
        self.stage(STAGE_PREVIOUS).await
    }
}

struct Cached {
    versions: SecretVersions,
    /// Whether `versions.previous` was asked for since the current version was fetched
    /// (`None` there then means the secret has no previous version).
    previous_known: bool,
    fetched: Instant,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// The last fetch, successful or not, and its error if it failed.
    attempt: Option<(Instant, Option<SecretError>)>,
    /// The last time the previous version alone was asked for.
    previous_attempt: Option<Instant>,
}

impl State {
    fn attempted_within(&self, interval: Duration) -> bool {
        self.attempt
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < interval)
    }

    /// Whether the cached versions' previous one is yet to be asked for, and may be (a
    /// failed ask counts in its limiter, as a failed fetch does in the other).
    fn may_ask_previous(&self) -> bool {
        let asked_lately = self
            .previous_attempt
            .is_some_and(|at| at.elapsed() < MIN_FORCED_REFRESH_INTERVAL);
        self.cached
            .as_ref()
            .is_some_and(|c| !c.previous_known && !asked_lately)
    }
}

/// One per container; cloning shares the cache.
#[derive(Clone)]
pub struct SecretCache {
    source: Arc<dyn SecretSource>,
    state: Arc<Mutex<State>>,
}

impl SecretCache {
    pub fn new(source: Arc<dyn SecretSource>) -> Self {
        Self {
            source,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The current credentials (for REST calls).
    pub async fn get(&self) -> Result<TwilioCredentials, SecretError> {
        Ok(self.versions().await?.current)
    }

    /// The cached versions, fetched when absent or older than five minutes. When that fetch
    /// fails (or failed less than [`MIN_FORCED_REFRESH_INTERVAL`] ago), the versions already
    /// cached are used: a Secrets Manager outage must not stop verification.
    pub async fn versions(&self) -> Result<SecretVersions, SecretError> {
        let mut state = self.state.lock().await;
        match &state.cached {
            Some(c) if c.fetched.elapsed() < CACHE_FOR => return Ok(c.versions.clone()),
            Some(c) if state.attempted_within(MIN_FORCED_REFRESH_INTERVAL) => {
                return Ok(c.versions.clone());
            }
            None if state.attempted_within(RETRY_WITHOUT_CACHE) => {
                if let Some((_, Some(e))) = &state.attempt {
                    return Err(e.clone());
                }
            }
            _ => {}
        }
        match self.load(&mut state, false).await {
            Ok(v) => Ok(v),
            Err(e) => match &state.cached {
                Some(c) => {
                    tracing::warn!(error = %e, "secret refresh failed; using the cached tokens");
                    Ok(c.versions.clone())
                }
                None => Err(e),
            },
        }
    }

    /// Fetches the current version, and the previous one beside it when `with_previous`,
    /// recording the attempt whatever its outcome.
    async fn load(
        &self,
        state: &mut State,
        with_previous: bool,
    ) -> Result<SecretVersions, SecretError> {
        let fetched = futures::try_join!(self.source.fetch(), async {
            Ok(match with_previous {
                true => self.ask_previous().await,
                false => None,
            })
        });
        let now = Instant::now();
        if with_previous {
            state.previous_attempt = Some(now);
        }
        match fetched {
            Ok((current, previous)) => {
                let previous_known = previous.is_some();
                let versions = SecretVersions {
                    current,
                    previous: previous.flatten(),
                };
                state.cached = Some(Cached {
                    versions: versions.clone(),
                    previous_known,
                    fetched: now,
                });
                state.attempt = Some((now, None));
                Ok(versions)
            }
            Err(e) => {
                state.attempt = Some((now, Some(e.clone())));
                Err(e)
            }
        }
    }

    /// Fetches again after a signature failure, in case the token was rotated. Returns `None`
    /// when nothing new can be learnt: a fetch was attempted moments ago (successful or
    /// not), the secret is unchanged, or Secrets Manager cannot be reached while tokens are
    /// cached (they decide: a mismatch stays a mismatch).
    ///
    /// Within the interval, the previous version may still be asked for once, on a limiter of
    /// its own, if it has not been since the current one was fetched: the request may be
    /// signed with the token a rotation has just replaced.
    pub async fn refresh_after_failure(&self) -> Result<Option<SecretVersions>, SecretError> {
        let mut state = self.state.lock().await;
        if !state.attempted_within(MIN_FORCED_REFRESH_INTERVAL) {
            let before = state.cached.as_ref().map(|c| c.versions.clone());
            return match self.load(&mut state, true).await {
                Ok(fresh) => Ok((before.as_ref() != Some(&fresh)).then_some(fresh)),
                Err(e) if before.is_some() => {
                    tracing::warn!(error = %e, "secret refresh failed; the cached tokens decide");
                    Ok(None)
                }
                Err(e) => Err(e),
            };
        }
        if !state.may_ask_previous() {
            return Ok(None);
        }
        state.previous_attempt = Some(Instant::now());
        let asked = self.ask_previous().await;
        let Some(cached) = state.cached.as_mut() else {
            return Ok(None);
        };
        match asked {
            Some(Some(previous)) => {
                cached.previous_known = true;
                cached.versions.previous = Some(previous);
                Ok(Some(cached.versions.clone()))
            }
            Some(None) => {
                cached.previous_known = true;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// The previous version (`Some(None)`: the secret has none), or `None` when it cannot be
    /// read (logged): without it only a rotation in progress suffers, and the current version
    /// still decides.
    async fn ask_previous(&self) -> Option<Option<TwilioCredentials>> {
        self.source
            .fetch_previous()
            .await
            .inspect_err(
                |e| tracing::warn!(error = %e, "could not read the secret's previous version"),
            )
            .ok()
    }

    /// For tests: make the last fetch (and its attempt) `by` older.
    #[doc(hidden)]
    pub async fn age_for_test(&self, by: Duration) {
        let mut state = self.state.lock().await;
        if let Some(c) = state.cached.as_mut() {
            c.fetched = c.fetched.checked_sub(by).unwrap_or(c.fetched);
        }
        if let Some((at, _)) = state.attempt.as_mut() {
            *at = at.checked_sub(by).unwrap_or(*at);
        }
        if let Some(at) = state.previous_attempt.as_mut() {
            *at = at.checked_sub(by).unwrap_or(*at);
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
        assert_eq!(rotated.current.auth_token, "token-1");
        assert_eq!(cache.get().await.unwrap().auth_token, "token-1");

        cache.age_for_test(CACHE_FOR).await;
        assert_eq!(
            cache.get().await.unwrap().auth_token,
            "token-2",
            "expired after 5 min"
        );
    }

    /// A secret with a current and a previous version, and a switch that takes Secrets
    /// Manager down.
    struct Switchable {
        down: std::sync::atomic::AtomicBool,
        calls: AtomicUsize,
    }

    impl Switchable {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                down: false.into(),
                calls: AtomicUsize::new(0),
            })
        }
        fn set_down(&self, down: bool) {
            self.down.store(down, Ordering::SeqCst);
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
        fn answer(&self, token: &str) -> Result<TwilioCredentials, SecretError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(SecretError::Unavailable {
                    id: "test".into(),
                    reason: "connection refused".into(),
                });
            }
            parse_secret(
                "test",
                &format!(r#"{{"account_sid":"AC1","auth_token":"{token}"}}"#),
            )
        }
    }

    #[async_trait]
    impl SecretSource for Switchable {
        async fn fetch(&self) -> Result<TwilioCredentials, SecretError> {
            self.answer("new")
        }
        async fn fetch_previous(&self) -> Result<Option<TwilioCredentials>, SecretError> {
            self.answer("old").map(Some)
        }
    }

    #[tokio::test]
    async fn the_previous_token_is_asked_for_at_the_first_failure_then_kept() {
        let source = Switchable::new();
        let cache = SecretCache::new(source.clone());
        let versions = cache.versions().await.unwrap();
        assert_eq!(versions.auth_tokens().collect::<Vec<_>>(), ["new"]);
        assert_eq!(source.calls(), 1, "the first request waits for one fetch");

        // A signature the current token did not make, moments after the fetch: the previous
        // version is asked for at once (the request may be signed with a rotated-out token).
        let fresh = cache.refresh_after_failure().await.unwrap().unwrap();
        assert_eq!(fresh.auth_tokens().collect::<Vec<_>>(), ["new", "old"]);
        assert_eq!(source.calls(), 2);
        assert_eq!(
            cache.versions().await.unwrap(),
            fresh,
            "kept beside the current"
        );
        assert_eq!(
            cache.get().await.unwrap().auth_token,
            "new",
            "REST uses the current one"
        );
        for _ in 0..50 {
            assert_eq!(cache.refresh_after_failure().await.unwrap(), None);
        }
        assert_eq!(source.calls(), 2, "a flood of bad signatures asks no more");

        // When the cache expires, the previous version is forgotten with the current one and
        // asked for again at the next failure.
        cache.age_for_test(CACHE_FOR).await;
        assert_eq!(cache.versions().await.unwrap().previous, None);
        assert_eq!(source.calls(), 3);
        assert!(cache.refresh_after_failure().await.unwrap().is_some());
        assert_eq!(source.calls(), 4);
    }

    #[tokio::test]
    async fn a_failed_ask_for_the_previous_token_counts_in_the_limiter() {
        let source = Switchable::new();
        let cache = SecretCache::new(source.clone());
        cache.versions().await.unwrap();
        source.set_down(true);
        for _ in 0..50 {
            assert_eq!(cache.refresh_after_failure().await.unwrap(), None);
        }
        assert_eq!(source.calls(), 2, "asked once, not once per bad signature");

        source.set_down(false);
        cache.age_for_test(MIN_FORCED_REFRESH_INTERVAL).await;
        let fresh = cache.refresh_after_failure().await.unwrap().unwrap();
        assert_eq!(fresh.auth_tokens().collect::<Vec<_>>(), ["new", "old"]);
    }

    #[tokio::test]
    async fn a_failed_refresh_counts_in_the_limiter_and_the_cached_tokens_stay() {
        let source = Switchable::new();
        let cache = SecretCache::new(source.clone());
        cache.versions().await.unwrap();
        let after_first = source.calls();
        source.set_down(true);

        cache.age_for_test(MIN_FORCED_REFRESH_INTERVAL).await;
        assert_eq!(cache.refresh_after_failure().await.unwrap(), None);
        let after_failure = source.calls();
        assert!(after_failure > after_first, "the refresh was tried");
        for _ in 0..50 {
            assert_eq!(cache.refresh_after_failure().await.unwrap(), None);
        }
        assert_eq!(
            source.calls(),
            after_failure,
            "and not again within the interval"
        );

        // Past the cache's lifetime with Secrets Manager still down, the tokens already held
        // go on deciding, and the failed fetch is not repeated for every request.
        cache.age_for_test(CACHE_FOR).await;
        assert_eq!(cache.versions().await.unwrap().current.auth_token, "new");
        let after_expiry = source.calls();
        assert!(
            after_expiry > after_failure,
            "an expired cache is refetched"
        );
        for _ in 0..50 {
            let v = cache.versions().await.unwrap();
            assert_eq!(v.current.auth_token, "new");
        }
        assert_eq!(source.calls(), after_expiry, "but not for every request");

        source.set_down(false);
        cache.age_for_test(MIN_FORCED_REFRESH_INTERVAL).await;
        cache.versions().await.unwrap();
        assert!(source.calls() > after_expiry, "back up: fetched again");
    }

    #[tokio::test]
    async fn with_nothing_cached_a_failure_is_reported_and_not_retried_at_once() {
        let source = Switchable::new();
        source.set_down(true);
        let cache = SecretCache::new(source.clone());
        assert!(cache.versions().await.is_err());
        let calls = source.calls();
        assert!(cache.versions().await.is_err());
        assert!(cache.refresh_after_failure().await.unwrap().is_none());
        assert_eq!(source.calls(), calls);
        source.set_down(false);
        cache.age_for_test(RETRY_WITHOUT_CACHE).await;
        assert_eq!(cache.get().await.unwrap().auth_token, "new");
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
