//! What a function needs, built once per container: configuration, the store, the secret
//! cache and HTTP clients. Building does no I/O at all — no network, and not even the system
//! root certificates, which both HTTP stacks read on their first connection — so the first
//! poll of the Runtime API is not delayed. [`warm_up`] then starts, on a thread of its own,
//! what the first invocation would otherwise wait for (docs/PERFORMANCE.md, "Cold start").

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

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
    /// The Lambda path: configuration and AWS settings from the environment
    /// ([`aws_config_from_env`]).
    pub fn from_env() -> Result<Arc<App>, ConfigError> {
        let config = Config::from_env()?;
        let aws = aws_config_from_env();
        Ok(Arc::new(App::new(config, &aws, Arc::new(SystemClock))))
    }

    /// Builds the clients this function's configuration calls for: the Scheduler's only
    /// with `SCHEDULE_GROUP`, SQS's only with `EVENT_QUEUE_URL` (each client costs init a
    /// parse of the SDK's endpoint rules).
    pub fn new(config: Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> App {
        let scheduler = config.schedule_group.is_some().then(|| {
            aws_sdk_scheduler::Client::from_conf(
                aws_sdk_scheduler::config::Builder::from(aws)
                    .timeout_config(sdk_timeouts())
                    .build(),
            )
        });
        let sqs = config.event_queue_url.is_some().then(|| {
            aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(aws)
                    .timeout_config(sdk_timeouts())
                    .build(),
            )
        });
        let mut app = Self::with_clients(
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
        );
        if let Some(scheduler) = scheduler {
            app = app.with_scheduler(scheduler);
        }
        if let Some(sqs) = sqs {
            app = app.with_sqs(sqs);
        }
        app
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

/// The AWS SDK configuration, with rustls on ring (no aws-lc, no OpenSSL), from the
/// variables Lambda sets in every function's environment: `AWS_REGION`, and the execution
/// role's credentials in `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN` ("Defined runtime environment variables", Lambda developer guide);
/// plus `AWS_ENDPOINT_URL`, which the local stack uses to reach the emulator, and the
/// SDK's per-service `AWS_ENDPOINT_URL_<SERVICE>` ([`EndpointPerService`]).
///
/// Not `aws_config::defaults`: its provider chains (profile files, SSO, web identity and
/// STS, ECS, IMDS) never find anything on Lambda that the environment has not already
/// given, yet linking them made 1.1 MB of each function's binary (a ninth), and loading them
/// took 0.3 ms of its init (docs/PERFORMANCE.md, "Binary size per function").
pub fn aws_config_from_env() -> SdkConfig {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region.map(Region::new))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(aws_http_client())
        .service_config(EndpointPerService::from_env());
    if let Some(url) = env("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    config.build()
}

/// The SDK's service-specific endpoint variables, which `aws-config` would have read:
/// `AWS_ENDPOINT_URL_<SERVICE>`, the service's id upper-cased with spaces as underscores
/// (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL_DYNAMODB`), taking precedence over
/// `AWS_ENDPOINT_URL` ("Service-specific endpoints", AWS SDKs and Tools Reference Guide:
/// https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html). Each client
/// asks when it is built; only the endpoint is looked up this way.
pub struct EndpointPerService {
    lookup: Box<VariableLookup>,
}

/// Reads an environment variable (the process's, or a test's).
type VariableLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl EndpointPerService {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
        }
    }
}

impl std::fmt::Debug for EndpointPerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointPerService")
    }
}

impl LoadServiceConfig for EndpointPerService {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        (self.lookup)(&format!("AWS_ENDPOINT_URL_{service}")).filter(|v| !v.is_empty())
    }
}

/// The SDK's HTTP client on rustls with ring, trusting the system's root certificates.
pub fn aws_http_client() -> SharedHttpClient {
    aws_http_client_trusting(&[])
}

/// [`aws_http_client`] also trusting `extra_pem` (PEM certificates): for tests that make a
/// real TLS handshake with a test CA. The system roots stay trusted.
pub fn aws_http_client_trusting(extra_pem: &[String]) -> SharedHttpClient {
    let mut trust = tls::TrustStore::default();
    for pem in extra_pem {
        trust = trust.with_pem_certificate(pem.as_bytes());
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context with the system roots builds");
    SharedHttpClient::new(RootsOnFirstConnection(
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(context)
            .build_https(),
    ))
}

/// The SDK's client as built, minus one thing: `aws-smithy-http-client` builds a connector in
/// `validate_base_client_config`, when each SDK client is constructed, only so that the
/// system roots are read then "instead of upon first request" (its own comment). That read
/// was most of init above the floor. Left out, the connector (and the roots, read once per
/// process by the SDK's `NATIVE_ROOTS`) is built on the first request, which [`warm_up`]
/// makes in the background.
#[derive(Debug)]
struct RootsOnFirstConnection(SharedHttpClient);

impl HttpClient for RootsOnFirstConnection {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
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
    http_client_trusting(Vec::new())
}

/// [`http_client`] also trusting `extra` roots: for tests that make a real TLS handshake
/// with a test CA. The system roots stay trusted.
pub fn http_client_trusting(extra: Vec<CertificateDer<'static>>) -> reqwest::Client {
    // reqwest is built without a default crypto provider; ring is the one we ship.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        // Not dangerous: full WebPKI verification, on the roots read at first use.
        .with_custom_certificate_verifier(Arc::new(SystemRoots {
            provider,
            extra,
            verifier: OnceLock::new(),
        }))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("tsunagu/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The system's root certificates as rustls trust anchors, read and parsed once per process,
/// on first use. (reqwest's own verifier, `rustls-platform-verifier`, reads them when the
/// client is built, i.e. during init.) Where they are: `rustls-native-certs`' rules
/// (`SSL_CERT_FILE` / `SSL_CERT_DIR`, else the distribution's bundle; on Lambda's
/// `provided.al2023`, `/etc/pki/tls/certs/ca-bundle.crt`).
pub fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        if !loaded.errors.is_empty() {
            tracing::warn!(errors = ?loaded.errors, "some root certificates could not be read");
        }
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(loaded.certs);
        Arc::new(roots)
    })
}

/// reqwest's certificate verifier: rustls' WebPKI verifier on [`system_roots`] (plus any
/// extra roots), built on the first handshake rather than when the client is built.
#[derive(Debug)]
struct SystemRoots {
    provider: Arc<CryptoProvider>,
    extra: Vec<CertificateDer<'static>>,
    verifier: OnceLock<Result<Arc<WebPkiServerVerifier>, String>>,
}

impl SystemRoots {
    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                let mut roots = RootCertStore::clone(system_roots());
                roots.add_parsable_certificates(self.extra.iter().cloned());
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(format!("no usable root certificates: {e}")))
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // The handshake signatures need no roots: checked as WebPkiServerVerifier checks them.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What the first invocation would otherwise wait for, started at init and not awaited, so
/// the first poll of the Runtime API is not delayed: a first DynamoDB connection (the SDK's
/// read of the system roots and, on AWS, the TLS handshake included) and, when `secret`, the
/// Twilio secret into the cache, both at once; then the system roots parsed for reqwest.
///
/// Its CPU work (building the requests, parsing certificates) runs on a blocking thread, not
/// on the function's one runtime thread, which goes on to the first poll without waiting
/// for it; that thread drives the warm-up's I/O (`Handle::block_on` on a current-thread
/// runtime leaves the I/O driver to the thread in `Runtime::block_on`). Started on the
/// runtime's own threads, the same work delayed the first poll by about 2.4 ms on two cores
/// (docs/PERFORMANCE.md, "Cold start").
///
/// The first event meets the warm-up on first use: the secret cache's lock makes it wait for
/// the fetch in flight rather than make its own; the SDK's connection pool races an idle
/// connection against a new one (hyper's checkout), so it takes the warm one as soon as it is
/// free and never waits for it longer than for a connection of its own; the roots are read
/// once per process. Failures are logged and left to the requests, which retry as they
/// always did.
pub fn warm_up(app: &App, secret: bool, table: bool) {
    let runtime = tokio::runtime::Handle::current();
    let store = table.then(|| app.store.clone());
    let cache = secret.then(|| app.secrets.clone());
    tokio::task::spawn_blocking(move || {
        runtime.block_on(async {
            let table = async {
                if let Some(store) = store
                    && let Err(e) = connect_store(&store).await
                {
                    tracing::warn!(error = %e, "warm-up: DynamoDB not reached at init");
                }
            };
            let secret = async {
                if let Some(cache) = cache
                    && let Err(e) = cache.versions().await
                {
                    tracing::warn!(error = %e, "warm-up: the Twilio secret not fetched at init");
                }
            };
            tokio::join!(table, secret);
        });
        system_roots();
    });
}

/// The cheapest request every function's policy allows (each has `dynamodb:GetItem` on the
/// table): a projected, eventually consistent read of a key no item has — half a read
/// unit. What it buys is the connection, kept in the SDK's pool for the first event.
pub async fn connect_store(store: &crate::store::Store) -> Result<(), String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S("warm-up".into()))
        .key("sk", AttributeValue::S("warm-up".into()))
        .projection_expression("pk")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The first request that reaches `listener` (none within 2 s: "nothing").
    async fn first_request(listener: tokio::net::TcpListener) -> String {
        let accepted = tokio::time::timeout(Duration::from_secs(2), listener.accept()).await;
        let Ok(Ok((mut socket, _))) = accepted else {
            return "nothing".into();
        };
        let mut buf = vec![0; 4096];
        let n = socket.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_service_specific_endpoint_takes_precedence_over_the_shared_one() {
        let shared = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secrets = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secrets_url = format!("http://{}", secrets.local_addr().unwrap());
        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("ap-northeast-1"))
            .credentials_provider(SharedCredentialsProvider::new(
                aws_credential_types::Credentials::for_tests(),
            ))
            .http_client(aws_http_client())
            .endpoint_url(format!("http://{}", shared.local_addr().unwrap()))
            .service_config(EndpointPerService::from_lookup(move |name| {
                (name == "AWS_ENDPOINT_URL_SECRETS_MANAGER").then(|| secrets_url.clone())
            }))
            .build();
        let timeouts = TimeoutConfig::builder()
            .operation_timeout(Duration::from_millis(500))
            .build();
        let secretsmanager = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&aws)
                .timeout_config(timeouts.clone())
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&aws)
                .timeout_config(timeouts)
                .build(),
        );

        let (to_secrets, _) = tokio::join!(
            first_request(secrets),
            secretsmanager.get_secret_value().secret_id("s").send()
        );
        assert!(
            to_secrets.contains("secretsmanager.GetSecretValue"),
            "{to_secrets}"
        );
        let (to_shared, _) = tokio::join!(
            first_request(shared),
            dynamodb.get_item().table_name("t").send()
        );
        assert!(
            to_shared.contains("DynamoDB_20120810.GetItem"),
            "{to_shared}"
        );
    }
}

#[cfg(test)]
mod warm_up_tests {
    use super::*;
    use crate::secrets::{SecretError, TwilioCredentials, parse_secret};
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::thread::ThreadId;

    /// A secret that takes a while to arrive (a timer, which only the runtime's own thread
    /// drives) and notes which threads asked for it.
    #[derive(Default)]
    struct SlowSecret {
        asked_on: Mutex<Vec<ThreadId>>,
    }

    impl SlowSecret {
        async fn answer(&self) -> Result<TwilioCredentials, SecretError> {
            self.asked_on
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            tokio::time::sleep(Duration::from_millis(50)).await;
            parse_secret("test", r#"{"account_sid":"AC1","auth_token":"t"}"#)
        }
    }

    #[async_trait]
    impl SecretSource for SlowSecret {
        async fn fetch(&self) -> Result<TwilioCredentials, SecretError> {
            self.answer().await
        }
        async fn fetch_previous(&self) -> Result<Option<TwilioCredentials>, SecretError> {
            self.answer().await.map(Some)
        }
    }

    /// As `handlers::run_http` runs it: a current-thread runtime, the warm-up started and not
    /// awaited. Its fetch happens on another thread, yet completes while the runtime's thread
    /// only awaits (that thread drives its timer and I/O); the first event then waits for that
    /// fetch instead of making its own, and nothing deadlocks.
    #[test]
    fn the_warm_up_fetches_the_secret_off_the_runtime_thread_and_the_first_event_shares_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let runtime_thread = std::thread::current().id();
        runtime.block_on(async {
            let config = Config::from_lookup(|name| match name {
                "PUBLIC_BASE_URL" => Some("https://tsunagu.example".into()),
                "TABLE_NAME" => Some("t".into()),
                "TWILIO_SECRET_ID" => Some("s".into()),
                _ => None,
            })
            .unwrap();
            let dynamo = aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::new()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new("ap-northeast-1"))
                    .build(),
            );
            let secret = Arc::new(SlowSecret::default());
            let app =
                App::with_secret_source(config, dynamo, Arc::new(SystemClock), secret.clone());

            warm_up(&app, true, false);
            tokio::time::timeout(Duration::from_secs(5), async {
                while secret.asked_on.lock().unwrap().is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("the warm-up asked for the secret");
            let versions = tokio::time::timeout(Duration::from_secs(5), app.secrets.versions())
                .await
                .expect("the first event got the secret: no deadlock")
                .unwrap();

            assert_eq!(versions.current.auth_token, "t");
            let asked_on = secret.asked_on.lock().unwrap().clone();
            assert_eq!(
                asked_on.len(),
                1,
                "the current version, once (the previous waits for a failed signature): \
                 {asked_on:?}"
            );
            assert!(asked_on.iter().all(|thread| *thread != runtime_thread));
        });
    }
}

/// Both HTTP stacks as the app builds them, against a real TLS server: a local HTTPS server
/// whose certificate a test CA signed. Trusting that CA (as an extra root, next to the
/// system's), each stack completes the handshake and gets its answer; without it, each
/// refuses the certificate. The system roots themselves are read in every case.
#[cfg(test)]
mod tls_tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct TestCa {
        pem: String,
        der: CertificateDer<'static>,
        server: Arc<rustls::ServerConfig>,
    }

    /// A CA, and a server certificate for `localhost` it signed.
    fn test_ca() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
        TestCa {
            pem: ca.as_ref().pem(),
            der: ca.as_ref().der().clone(),
            server: Arc::new(server),
        }
    }

    /// An HTTPS server on localhost answering every request with `body` as `content_type`;
    /// returns its port and the count of requests it answered (so after a completed
    /// handshake only).
    async fn serve(
        tls: Arc<rustls::ServerConfig>,
        content_type: &'static str,
        body: &'static str,
    ) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answered = Arc::new(AtomicUsize::new(0));
        let count = answered.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return; // the client refused our certificate
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Headers, then as much body as Content-Length says.
                    let (head_end, length) = loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while request.len() < head_end + length {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (port, answered)
    }

    /// The error and every error under it, for the one that says why.
    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = format!("{e:?}");
        let mut next = e.source();
        while let Some(e) = next {
            out.push_str(&format!(" <- {e:?}"));
            next = e.source();
        }
        out
    }

    /// The DynamoDB client as `App::new` builds it (the SDK's HTTP client, its timeouts),
    /// pointed at `https://localhost:{port}`.
    fn dynamo(port: u16, http: SharedHttpClient) -> crate::store::Store {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("ap-northeast-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
            .endpoint_url(format!("https://localhost:{port}"))
            .http_client(http)
            .timeout_config(sdk_timeouts())
            .build();
        crate::store::Store::new(aws_sdk_dynamodb::Client::from_conf(conf), "tsunagu")
    }

    #[tokio::test]
    async fn the_sdk_client_completes_a_handshake_with_a_trusted_ca_and_refuses_an_untrusted_one() {
        let ca = test_ca();
        // GetItem of a key no item has: DynamoDB answers an empty object.
        let (port, answered) = serve(ca.server.clone(), "application/x-amz-json-1.0", "{}").await;

        let trusting = dynamo(
            port,
            aws_http_client_trusting(std::slice::from_ref(&ca.pem)),
        );
        connect_store(&trusting)
            .await
            .expect("handshake with the test CA's certificate");
        assert_eq!(answered.load(Ordering::SeqCst), 1);

        let untrusting = dynamo(port, aws_http_client());
        let refused = connect_store(&untrusting).await.unwrap_err();
        assert!(
            refused.contains("UnknownIssuer"),
            "refused for an unknown issuer, not for another reason: {refused}"
        );
        assert_eq!(
            answered.load(Ordering::SeqCst),
            1,
            "nothing reached the server"
        );
    }

    #[tokio::test]
    async fn reqwest_completes_a_handshake_with_a_trusted_ca_and_refuses_an_untrusted_one() {
        let ca = test_ca();
        let (port, answered) = serve(ca.server.clone(), "text/plain", "ok").await;
        let url = format!("https://localhost:{port}/");

        let trusting = http_client_trusting(vec![ca.der.clone()]);
        let answer = trusting.get(&url).send().await.expect("handshake");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "ok");
        assert_eq!(answered.load(Ordering::SeqCst), 1);

        let refused = http_client().get(&url).send().await.unwrap_err();
        let why = chain(&refused);
        assert!(
            why.contains("UnknownIssuer"),
            "refused for an unknown issuer, not for another reason: {why}"
        );
        assert_eq!(
            answered.load(Ordering::SeqCst),
            1,
            "nothing reached the server"
        );
    }

    /// The verifier's roots are the system's (read once, at first use), not only the extras.
    #[test]
    fn the_system_roots_are_read_and_trusted() {
        assert!(
            !system_roots().is_empty(),
            "this machine has system root certificates"
        );
    }
}
