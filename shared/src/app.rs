//! What a function needs, built once per container: configuration, the store, the secret
//! cache and HTTP clients. Building does no network I/O, so the first poll is not delayed.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls;

use crate::budget::Budget;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::secrets::{SecretCache, SecretSource, SecretsManagerSource};
use crate::store::Store;
use crate::telemetry::Telemetry;
use crate::twilio::TwilioClient;

pub struct App {
    /// Shared, not copied, by the request-scoped apps [`App::within`] makes.
    pub config: Arc<Config>,
    pub store: Store,
    pub secrets: SecretCache,
    pub twilio: TwilioClient,
    /// For the platform's intercept and out-of-session callbacks.
    pub http: reqwest::Client,
    /// The live calls' exact timers; `None` without `SCHEDULE_GROUP` (the sweep keeps time).
    pub schedules: Option<crate::scheduler::Schedules>,
    pub clock: Arc<dyn Clock>,
    /// The function's name, its metrics sink, and its cold-start flag.
    pub telemetry: Telemetry,
    /// For the event queue (publish-events, deliver-events); None when built without one.
    pub sqs: Option<aws_sdk_sqs::Client>,
}

impl App {
    /// The Lambda path: configuration from the environment, AWS settings from the SDK's
    /// usual sources (`AWS_REGION`, `AWS_ENDPOINT_URL`, the execution role).
    pub async fn from_env() -> Result<Arc<App>, ConfigError> {
        let config = Config::from_env()?;
        let aws = load_aws_config().await;
        Ok(Arc::new(App::new(config, &aws, Arc::new(SystemClock))))
    }

    pub fn new(config: Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> App {
        let scheduler = aws_sdk_scheduler::Client::from_conf(
            aws_sdk_scheduler::config::Builder::from(aws)
                .timeout_config(sdk_timeouts())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(aws)
                .timeout_config(sdk_timeouts())
                .build(),
        );
        Self::with_clients(
            config,
            aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(aws)
                    .timeout_config(sdk_timeouts())
                    .build(),
            ),
            aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(aws)
                    .timeout_config(sdk_timeouts())
                    .build(),
            ),
            clock,
        )
        .with_scheduler(scheduler)
        .with_sqs(sqs)
    }

    /// The same app setting its timers through `client` (when `SCHEDULE_GROUP` is set). The
    /// local stack gives it a client that enforces the function's IAM policy.
    pub fn with_scheduler(mut self, client: aws_sdk_scheduler::Client) -> App {
        self.schedules = self.config.schedule_group.clone().map(|group| {
            crate::scheduler::Schedules::new(
                client,
                group,
                self.config.schedule_role_arn.clone(),
                self.config.schedule_target_arn.clone(),
            )
        });
        self
    }

    /// With clients built by the caller: the local stack gives each function clients that
    /// enforce that function's IAM policy, as AWS would. Build them with [`sdk_timeouts`].
    pub fn with_clients(
        config: Config,
        dynamo: aws_sdk_dynamodb::Client,
        secrets: aws_sdk_secretsmanager::Client,
        clock: Arc<dyn Clock>,
    ) -> App {
        let source: Arc<dyn SecretSource> = Arc::new(SecretsManagerSource::new(
            secrets,
            config.twilio_secret_id.clone(),
        ));
        Self::with_secret_source(config, dynamo, clock, source)
    }

    pub fn with_secret_source(
        config: Config,
        dynamo: aws_sdk_dynamodb::Client,
        clock: Arc<dyn Clock>,
        source: Arc<dyn SecretSource>,
    ) -> App {
        let http = http_client();
        let telemetry = Telemetry::from_env(clock.clone());
        App {
            store: Store::new(dynamo, config.table_name.clone()),
            secrets: SecretCache::new(source),
            twilio: TwilioClient::new(http.clone(), config.twilio_api_base_url.clone())
                .with_metrics(telemetry.metrics.clone()),
            http,
            schedules: None,
            clock,
            config: Arc::new(config),
            telemetry,
            sqs: None,
        }
    }

    /// The same app with an SQS client (the local stack's is held to the function's policy).
    pub fn with_sqs(mut self, sqs: aws_sdk_sqs::Client) -> App {
        self.sqs = Some(sqs);
        self
    }

    /// The same app reporting as `telemetry` says: the local stack names each function and
    /// keeps its metrics where tests can read them.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> App {
        self.twilio = self.twilio.with_metrics(telemetry.metrics.clone());
        self.telemetry = telemetry;
        self
    }

    /// Where this function's metrics go.
    pub fn metrics(&self) -> &crate::telemetry::Metrics {
        &self.telemetry.metrics
    }

    /// The same app for one request: its Twilio calls (and the platform callbacks, through
    /// [`App::budget`]) share `budget`.
    pub fn within(&self, budget: Budget) -> App {
        App {
            config: Arc::clone(&self.config),
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            twilio: self.twilio.within(budget),
            http: self.http.clone(),
            schedules: self.schedules.clone(),
            clock: self.clock.clone(),
            telemetry: self.telemetry.clone(),
            sqs: self.sqs.clone(),
        }
    }

    /// What this request may still wait on others (kept by its Twilio client).
    pub fn budget(&self) -> Budget {
        self.twilio.budget()
    }

    /// Now, in seconds since the epoch, from this app's clock.
    pub fn now(&self) -> i64 {
        crate::clock::epoch(self.clock.now())
    }
}

/// The AWS SDK configuration with rustls on ring (no aws-lc, no OpenSSL).
pub async fn load_aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(aws_http_client())
        .load()
        .await
}

/// The SDK's HTTP client on rustls with ring.
pub fn aws_http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// DynamoDB and Secrets Manager answer in milliseconds. These bound one slow request, its
/// retries included, so that it cannot eat a webhook's budget (`budget::WEBHOOK_ANSWER`).
pub fn sdk_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(3))
        .build()
}

/// One reqwest client per container. Short timeouts: most callers are answering Twilio,
/// which gives up after 15 seconds; requests cut them further to their `Budget`. No
/// redirects: Twilio's REST API answers without them, and a platform callback that
/// redirects must not send Tsunagu's signed request somewhere else.
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a default crypto provider; ring is the one we ship.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("tsunagu/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
