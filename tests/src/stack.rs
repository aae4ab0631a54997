//! The whole local stack in one process: a table and a secret in the emulator (moto, started
//! by the project's scripts and reached through `AWS_ENDPOINT_URL`), the Twilio Voice
//! simulator, and the gateway serving every route of `template.yaml` to the real handlers.
//! Tests, `make demo` and `make up` all start it the same way.
//!
//! Each function gets its own `App` whose AWS clients are held to that function's policy in
//! the template (`crate::iam`), so a missing permission fails locally as it would on AWS.
//! A stack that saw any denial panics when dropped, naming the function, action and resource.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use serde_json::Value;
use tsunagu::App;
use tsunagu::clock::Clock;
use tsunagu::config::Config;
use tsunagu::telemetry::{MemorySink, Telemetry};

use crate::console::TwilioConsole;
use crate::control::Control;
use crate::gateway::{self, Gateway};
use crate::iam::{self, Denial, Denials, RequestLog};
use crate::simulator::{SimConfig, Simulator, VirtualClock};
use crate::template;

/// Documented test credentials: the simulator's account and the secret seeded locally.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "local-auth-token-not-a-secret-00";
/// The key that signs Tsunagu's requests to the platform's callback URLs, locally.
pub const CALLBACK_SIGNING_KEY: &str = "local-callback-signing-key-not-a-secret";
pub const REGION: &str = "ap-northeast-1";

/// The app's clock is the simulator's, when the stack has one: both agree on "now" in
/// virtual time.
pub struct SimClock(pub VirtualClock);

impl Clock for SimClock {
    fn now(&self) -> time::OffsetDateTime {
        self.0.now()
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// 0 picks a free port.
    pub gateway_port: u16,
    /// A fixed table name (the dev stack); by default a fresh one per stack, so tests are isolated.
    pub table_name: Option<String>,
    /// The simulator's port (0 picks a free one).
    pub simulator_port: u16,
    /// Use this Twilio API instead of starting the simulator.
    pub twilio_api_base_url: Option<String>,
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    /// Extra configuration for the app (e.g. `INTERCEPT_CALLBACK_URL`).
    pub env: Vec<(String, String)>,
    /// How often `expiry-warning` fires: on the simulator's clock, or on the wall clock when
    /// Twilio is elsewhere (None: never; tests that drive the sweep themselves). With None,
    /// the live calls' timers do not fire either.
    pub sweep_every: Option<Duration>,
    /// Another template than the repository's (a test that removes a permission).
    pub template: Option<PathBuf>,
    /// Where the functions reach Secrets Manager, if not at the emulator itself (a
    /// [`crate::relay::Relay`] a test can cut).
    pub secrets_endpoint: Option<String>,
    /// The secret's `callback_signing_key` (default [`CALLBACK_SIGNING_KEY`]).
    pub callback_signing_key: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gateway_port: 0,
            simulator_port: 0,
            table_name: None,
            twilio_api_base_url: None,
            account_sid: None,
            auth_token: None,
            env: Vec::new(),
            sweep_every: Some(Duration::from_secs(60)),
            template: None,
            secrets_endpoint: None,
            callback_signing_key: None,
        }
    }
}

impl Options {
    /// `make up`'s options (`tsunagu-local`), from its environment: `GATEWAY_PORT` (3000),
    /// `SIMULATOR_PORT` (3001, fixed so that local.env can name it), `TABLE_NAME`
    /// (`tsunagu`), the Twilio account (`TWILIO_API_BASE_URL` instead of the simulator), every
    /// variable of the README's configuration table ([`passed_through`]: an empty value
    /// counts as unset there, as in the functions), and `CALLBACK_SIGNING_KEY` as the secret's
    /// `callback_signing_key` (unset or empty: [`CALLBACK_SIGNING_KEY`]).
    pub fn from_make_up_environment(vars: impl IntoIterator<Item = (String, String)>) -> Options {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let env = vars
            .iter()
            .filter(|(name, _)| passed_through(name))
            .cloned()
            .collect();
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let port = |name: &str, default: u16| {
            vars.get(name)
                .and_then(|p| p.parse().ok())
                .unwrap_or(default)
        };
        Options {
            gateway_port: port("GATEWAY_PORT", 3000),
            simulator_port: port("SIMULATOR_PORT", 3001),
            table_name: Some(
                vars.get("TABLE_NAME")
                    .cloned()
                    .unwrap_or_else(|| "tsunagu".into()),
            ),
            twilio_api_base_url: vars.get("TWILIO_API_BASE_URL").cloned(),
            account_sid: vars.get("TWILIO_ACCOUNT_SID").cloned(),
            auth_token: vars.get("TWILIO_AUTH_TOKEN").cloned(),
            env,
            callback_signing_key: vars
                .get("CALLBACK_SIGNING_KEY")
                .filter(|k| !k.is_empty())
                .cloned(),
            ..Options::default()
        }
    }
}

/// Configuration the stack sets itself (or the SDK and the runtime read directly); every
/// other variable of the README's configuration table is [`passed_through`].
pub const SET_BY_THE_STACK: &[&str] = &[
    "TABLE_NAME",
    "TWILIO_SECRET_ID",
    "TWILIO_API_BASE_URL",
    "PUBLIC_BASE_URL",
    "EVENT_QUEUE_URL",
    "SCHEDULE_GROUP",
    "SCHEDULE_ROLE_ARN",
    "SCHEDULE_TARGET_ARN",
    // Per function in template.yaml; read only by the Lambda entry points (handlers.rs).
    "PREFETCH_TWILIO_SECRET",
    "WARM_UP_TABLE",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_LOG_LEVEL",
    "RUST_LOG",
];

/// Whether `make up` hands this variable of its environment to the functions.
pub fn passed_through(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "DEFAULT_TTL_SECONDS",
        "DEFAULT_WARNING_LEAD_SECONDS",
        "DEFAULT_EXTENSION_SECONDS",
        "DEFAULT_EXTENSION_MAX_COUNT",
        "RETENTION_DAYS",
        "ALLOWED_COUNTRIES",
        "DIAL_TIMEOUT_SECONDS",
        "INTERCEPT_CALLBACK_URL",
        "OUT_OF_SESSION_CALLBACK_URL",
        "EVENT_CALLBACK_URL",
        "EVENT_RETRY_BASE_SECONDS",
    ];
    NAMES.contains(&name)
        || ["RATE_", "PROMPT_", "TTS_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// EventBridge's `rate(…)` rule on the wall clock, for a stack without the simulator: posts
/// the scheduled event for now to `invoke` every `period`, the first a `period` from now.
/// The timers then fire on the wall clock too, and this sweep stays their safety net.
pub fn spawn_wall_clock_sweep(invoke: String, period: Duration) -> tokio::task::JoinHandle<()> {
    let http = tsunagu::app::http_client();
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let event = scheduled_event(time::OffsetDateTime::now_utc());
            if let Err(e) = http.post(&invoke).json(&event).send().await {
                eprintln!("expiry-warning invocation failed: {e}");
            }
        }
    })
}

/// The event EventBridge's schedule delivers, for the instant `at`.
pub fn scheduled_event(at: time::OffsetDateTime) -> Value {
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": tsunagu::clock::iso(at.unix_timestamp()),
        "region": REGION,
        "resources": ["arn:aws:events:ap-northeast-1:123456789012:rule/tsunagu-expiry-warning"],
        "detail": {}
    })
}

pub struct Stack {
    pub url: String,
    /// Every function's app behind the gateway, each held to its own IAM policy.
    pub gateway: Gateway,
    /// Requests the functions' policies refused.
    pub denials: Denials,
    /// Every DynamoDB request the functions made (`Stack::dynamodb_requests`).
    pub requests: RequestLog,
    /// When the stack started, on the simulator's clock: the sweep fires every minute from here.
    pub started: time::OffsetDateTime,
    /// The operator's view, with full access: tests read and seed the table through it.
    /// Functions never run on it.
    pub app: Arc<App>,
    pub sim: Option<Simulator>,
    pub clock: VirtualClock,
    pub table: String,
    pub aws: SdkConfig,
    /// The live calls' timers: template.yaml's CallTimers group, in the emulator.
    pub schedule_group: String,
    pub http: reqwest::Client,
    /// Every EMF document the functions wrote (on Lambda: their stdout, then CloudWatch).
    pub metrics: MemorySink,
    /// The event queue and its dead-letter queue (template's EventQueue, EventDeadLetterQueue).
    pub event_queue_url: String,
    pub event_dlq_url: String,
    server: tokio::task::JoinHandle<()>,
    /// The local event source mappings (stream → publish-events, queue → deliver-events),
    /// running while EVENT_CALLBACK_URL is set.
    mappings: Vec<tokio::task::JoinHandle<()>>,
    /// The sweep and the timers on the wall clock, when Twilio is not the simulator.
    wall_clock: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.server.abort();
        for task in self.mappings.iter().chain(&self.wall_clock) {
            task.abort();
        }
        let denials = self.take_denials();
        if !denials.is_empty() {
            let list: Vec<String> = denials.iter().map(|d| format!("  {d}")).collect();
            let message = format!(
                "IAM denied {} request(s) on this stack:\n{}",
                denials.len(),
                list.join("\n")
            );
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// The emulator's URL, from `AWS_ENDPOINT_URL` (the SDK's own variable).
pub fn emulator_url() -> Result<String, String> {
    std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
        "AWS_ENDPOINT_URL is not set: run through `make test` / `make demo`, or start the \
         emulator with scripts/with-moto.sh <command>"
            .to_owned()
    })
}

/// AWS settings for the emulator: its endpoint, a region, and throwaway credentials.
pub async fn emulator_aws_config() -> Result<SdkConfig, String> {
    let endpoint = emulator_url()?;
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(aws_smithy_http_client_builder())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
        .load()
        .await)
}

/// The functions' SDK timeouts (`tsunagu::app::sdk_timeouts`, seconds) are sized for
/// DynamoDB, which answers in milliseconds. The emulator serves one request at a time, so
/// under a test suite a request can queue behind another test's 5,000-item seeding for
/// seconds: its latency says nothing about DynamoDB's, and timing it out would only make the
/// tests flaky. Locally, then, only a hung emulator times out.
fn emulator_timeouts() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(120))
        .build()
}

fn aws_smithy_http_client_builder() -> aws_sdk_dynamodb::config::SharedHttpClient {
    // Same TLS choice as the functions; the emulator itself is plain HTTP.
    tsunagu::app::aws_http_client()
}

impl Stack {
    pub async fn start(options: Options) -> Result<Stack, String> {
        let aws = emulator_aws_config().await?;
        let template_path = options
            .template
            .clone()
            .unwrap_or_else(template::default_path);
        let template_text = std::fs::read_to_string(&template_path)
            .map_err(|e| format!("{}: {e}", template_path.display()))?;
        let tpl = template::parse(&template_text)?;
        let account_sid = options
            .account_sid
            .clone()
            .unwrap_or_else(|| ACCOUNT_SID.to_owned());
        let auth_token = options
            .auth_token
            .clone()
            .unwrap_or_else(|| AUTH_TOKEN.to_owned());

        let table = options
            .table_name
            .clone()
            .unwrap_or_else(|| format!("tsunagu-{}", uuid::Uuid::new_v4().simple()));
        let dynamo = aws_sdk_dynamodb::Client::new(&aws);
        let exists = dynamo
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .is_ok();
        // The stream costs the emulator a record per write (and the suite's time): tables of
        // stacks without EVENT_CALLBACK_URL, where publish-events would queue nothing, have
        // none, and their policies' stream ARN names nothing that is read.
        let events_on = options
            .env
            .iter()
            .rev()
            .find(|(name, _)| name == "EVENT_CALLBACK_URL")
            .is_some_and(|(_, v)| !v.trim().is_empty());
        let mut table_def = tpl.table.clone();
        if !events_on {
            table_def.stream_view_type = None;
        }
        if !exists {
            template::create_table(&dynamo, &table_def, &table).await?;
        }
        let secret_name = format!("tsunagu/twilio/{table}");
        // As on AWS, functions name the secret by its full ARN (the TwilioSecretArn parameter).
        let signing_key = options
            .callback_signing_key
            .clone()
            .unwrap_or_else(|| CALLBACK_SIGNING_KEY.to_owned());
        let secret_arn =
            seed_secret(&aws, &secret_name, &account_sid, &auth_token, &signing_key).await?;
        let stream_arn = if events_on {
            table_stream(&dynamo, &table, &tpl.table).await?
        } else {
            format!(
                "{}/stream/off",
                iam::dynamodb_table_arn(REGION, iam::ACCOUNT, &table)
            )
        };
        // Queue names are at most 80 characters of letters, digits, - and _: the end of the
        // table's name (a fresh uuid per test stack) keeps them unique.
        let tail: String = table
            .chars()
            .rev()
            .take(12)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let queue_prefix = format!("tsunagu-{}", tail.chars().rev().collect::<String>());
        let queues = crate::event_sources::create_queues(&aws, &tpl.queues, &queue_prefix).await?;
        let queue_url = |id: &str| {
            queues
                .iter()
                .find(|(logical_id, _, _)| logical_id == id)
                .map(|(_, url, _)| url.clone())
                .ok_or_else(|| format!("template.yaml has no queue {id}"))
        };
        let (event_queue_url, event_dlq_url) =
            (queue_url("EventQueue")?, queue_url("EventDeadLetterQueue")?);
        let bindings =
            iam::Bindings::local(REGION, &table, &secret_arn).with_events(&stream_arn, &queues);
        // The stack's schedule group (template.yaml's CallTimers).
        let schedule_group = iam::schedule_group(&table);
        let scheduler = aws_sdk_scheduler::Client::new(&aws);
        if scheduler
            .get_schedule_group()
            .name(&schedule_group)
            .send()
            .await
            .is_err()
        {
            scheduler
                .create_schedule_group()
                .name(&schedule_group)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "schedule group {schedule_group}: {}",
                        aws_sdk_scheduler::error::DisplayErrorContext(e)
                    )
                })?;
        }
        let policies = iam::function_policies(&template_text, &bindings)?;

        let clock = VirtualClock::default();
        let (sim, twilio_url) = match &options.twilio_api_base_url {
            Some(url) => (None, url.clone()),
            None => {
                let mut config = SimConfig::new(&account_sid, &auth_token);
                config.clock = clock.clone();
                config.port = options.simulator_port;
                let sim = Simulator::start(config)
                    .await
                    .map_err(|e| format!("simulator: {e}"))?;
                let url = sim.base_url();
                (Some(sim), url)
            }
        };

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.gateway_port))
            .await
            .map_err(|e| format!("gateway port {}: {e}", options.gateway_port))?;
        let url = format!(
            "http://127.0.0.1:{}",
            listener.local_addr().map_err(|e| e.to_string())?.port()
        );

        let mut env: Vec<(String, String)> = vec![
            ("TABLE_NAME".into(), table.clone()),
            ("TWILIO_SECRET_ID".into(), secret_arn.clone()),
            (
                "PUBLIC_BASE_URL".into(),
                std::env::var("PUBLIC_BASE_URL").unwrap_or_else(|_| url.clone()),
            ),
            ("TWILIO_API_BASE_URL".into(), twilio_url),
            ("SCHEDULE_GROUP".into(), schedule_group.clone()),
            (
                "SCHEDULE_ROLE_ARN".into(),
                iam::call_timers_role_arn(&table),
            ),
            (
                "SCHEDULE_TARGET_ARN".into(),
                iam::lambda_function_arn(REGION, "expiry-warning"),
            ),
            ("EVENT_QUEUE_URL".into(), event_queue_url.clone()),
            // Retries a second apart, doubling, rather than AWS's 30 s: tests wait less.
            ("EVENT_RETRY_BASE_SECONDS".into(), "1".into()),
        ];
        env.extend(options.env.iter().cloned());
        let config = Config::from_lookup(|k| {
            env.iter()
                .rev()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
        .map_err(|e| e.to_string())?;
        // Without the simulator nothing moves the virtual clock: the functions take the
        // wall clock's time, on which the timers and the sweep then fire too.
        let app_clock: Arc<dyn Clock> = match &sim {
            Some(_) => Arc::new(SimClock(clock.clone())),
            None => Arc::new(tsunagu::clock::SystemClock),
        };
        let app = Arc::new(App::new(config.clone(), &aws, app_clock.clone()));
        let denials = Denials::default();
        let requests = RequestLog::default();
        let metrics = MemorySink::default();
        let schedules_changed = crate::timers::Changed::default();
        let mut apps = HashMap::new();
        let policy_of =
            |function: &str| Arc::new(policies.get(function).cloned().unwrap_or_default());
        for function in &tpl.functions {
            let policy = Arc::new(policies.get(function).cloned().unwrap_or_default());
            let dynamo = aws_sdk_dynamodb::config::Builder::from(&aws)
                .timeout_config(emulator_timeouts())
                .interceptor(iam::DynamoGuard {
                    function: function.clone(),
                    policy: policy.clone(),
                    region: REGION.to_owned(),
                    denials: denials.clone(),
                    requests: requests.clone(),
                })
                .build();
            let mut secrets = aws_sdk_secretsmanager::config::Builder::from(&aws);
            if let Some(endpoint) = &options.secrets_endpoint {
                secrets = secrets.endpoint_url(endpoint);
            }
            let secrets = secrets
                .timeout_config(emulator_timeouts())
                .interceptor(iam::SecretsGuard {
                    function: function.clone(),
                    policy,
                    region: REGION.to_owned(),
                    secret_arns: HashMap::from([(secret_name.clone(), secret_arn.clone())]),
                    denials: denials.clone(),
                })
                .build();
            let timers = aws_sdk_scheduler::config::Builder::from(&aws)
                .timeout_config(emulator_timeouts())
                .interceptor(iam::SchedulerGuard {
                    function: function.clone(),
                    policy: policies
                        .get(function)
                        .cloned()
                        .map(Arc::new)
                        .unwrap_or_default(),
                    region: REGION.to_owned(),
                    denials: denials.clone(),
                })
                .interceptor(schedules_changed.clone())
                .build();
            let sqs =
                crate::event_sources::guarded_sqs(&aws, function, policy_of(function), &denials);
            let function_app = App::with_clients(
                config.clone(),
                aws_sdk_dynamodb::Client::from_conf(dynamo),
                aws_sdk_secretsmanager::Client::from_conf(secrets),
                app_clock.clone(),
            )
            .with_scheduler(aws_sdk_scheduler::Client::from_conf(timers))
            .with_sqs(sqs)
            .with_telemetry(Telemetry::new(
                function,
                Arc::new(metrics.clone()),
                app_clock.clone(),
            ));
            apps.insert(function.clone(), Arc::new(function_app));
        }
        let console = sim.as_ref().map(|sim| TwilioConsole {
            http: tsunagu::app::http_client(),
            api_base_url: sim.base_url(),
            account_sid: account_sid.clone(),
            auth_token: auth_token.clone(),
            public_base_url: config.public_base_url.clone(),
        });
        if let Some(console) = &console {
            // A table kept from an earlier run: its pool is the account's too.
            provision_pool(&app, console).await?;
        }
        let control = sim
            .as_ref()
            .zip(console.as_ref())
            .map(|(sim, console)| Control {
                sim: sim.clone(),
                app: app.clone(),
                console: console.clone(),
            });
        let gateway = Gateway {
            apps: Arc::new(apps),
            routes: Arc::new(tpl.routes),
            console,
            control,
        };
        let server = gateway::spawn(listener, gateway.clone());
        let mut wall_clock = Vec::new();
        // EventBridge's rate(1 minute), on the stack's clock, through the Invoke API.
        let invoke = format!("{url}/2015-03-31/functions/expiry-warning/invocations");
        match (&sim, options.sweep_every) {
            (Some(sim), Some(period)) => {
                let http = tsunagu::app::http_client();
                sim.every(period, move |at| {
                    let (invoke, http) = (invoke.clone(), http.clone());
                    async move {
                        let event = scheduled_event(at);
                        if let Err(e) = http.post(&invoke).json(&event).send().await {
                            eprintln!("expiry-warning invocation failed: {e}");
                        }
                    }
                });
            }
            (None, Some(period)) => wall_clock.push(spawn_wall_clock_sweep(invoke, period)),
            (_, None) => {}
        }
        if options.sweep_every.is_some() {
            // Scheduler's one-time schedules, fired at second resolution on the stack's clock.
            let firer = Arc::new(crate::timers::Firer::new(
                scheduler.clone(),
                schedule_group.clone(),
                &url,
                schedules_changed.clone(),
            ));
            match &sim {
                Some(sim) => sim.every(Duration::from_secs(1), move |at| {
                    let firer = firer.clone();
                    async move { firer.tick(at.unix_timestamp()).await }
                }),
                None => {
                    wall_clock.push(tokio::spawn(async move {
                        let mut every = tokio::time::interval(Duration::from_secs(1));
                        loop {
                            every.tick().await;
                            let now = time::OffsetDateTime::now_utc().unix_timestamp();
                            firer.tick(now).await;
                        }
                    }));
                }
            }
        }
        let mut mappings = Vec::new();
        if config.event_callback_url.is_some() {
            // Lambda's event source mappings, each with its function's role.
            mappings.push(crate::event_sources::spawn_stream_mapping(
                &aws,
                stream_arn.clone(),
                policy_of("publish-events"),
                denials.clone(),
                url.clone(),
            ));
            mappings.push(crate::event_sources::spawn_queue_mapping(
                crate::event_sources::guarded_sqs(
                    &aws,
                    "deliver-events",
                    policy_of("deliver-events"),
                    &denials,
                ),
                event_queue_url.clone(),
                url.clone(),
            ));
        }
        Ok(Stack {
            event_queue_url,
            event_dlq_url,
            mappings,
            wall_clock,
            gateway,
            denials,
            requests,
            started: clock.now(),
            url,
            app,
            sim,
            clock,
            table,
            aws,
            schedule_group,
            http: tsunagu::app::http_client(),
            metrics,
            server,
        })
    }

    /// The DynamoDB requests `function` has made so far, by operation, in order.
    pub fn dynamodb_requests(&self, function: &str) -> Vec<&'static str> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|(f, _)| f == function)
            .map(|(_, op)| *op)
            .collect()
    }

    /// The requests refused so far, forgotten once taken (a test that expects a denial).
    pub fn take_denials(&self) -> Vec<Denial> {
        std::mem::take(
            &mut *self
                .denials
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    pub fn sim(&self) -> &Simulator {
        self.sim
            .as_ref()
            .expect("this stack runs without the simulator")
    }

    /// Calls the API through the gateway; returns the status and the JSON body (Null if none).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Adds a proxy number to the pool through the API (the gateway then gives it to the
    /// simulated Twilio account, configured as in the Twilio console).
    pub async fn add_proxy_number(&self, number: &str) -> Value {
        let (status, body) = self
            .api(
                "POST",
                "/v1/numbers",
                Some(serde_json::json!({ "phone_number": number })),
            )
            .await;
        assert_eq!(status, 201, "adding {number}: {body}");
        body
    }

    /// Gives every pool number to the simulated account, e.g. numbers written into the
    /// table directly rather than through `POST /v1/numbers`.
    pub async fn provision_pool(&self) -> Result<(), String> {
        match &self.gateway.console {
            Some(console) => provision_pool(&self.app, console).await,
            None => Ok(()),
        }
    }

    /// Fires `expiry-warning` for `at` through the Invoke API, as the schedule would.
    pub async fn sweep_at(&self, at: time::OffsetDateTime) -> Value {
        let invoke = format!(
            "{}/2015-03-31/functions/expiry-warning/invocations",
            self.url
        );
        // A sweep over thousands of sessions takes longer than an API call (Lambda: 300 s).
        let response = self
            .http
            .post(&invoke)
            .timeout(Duration::from_secs(300))
            .json(&scheduled_event(at))
            .send()
            .await
            .expect("the gateway answers");
        assert!(
            response.headers().get("x-amz-function-error").is_none(),
            "expiry-warning failed"
        );
        response.json().await.expect("a sweep report")
    }

    /// Moves virtual time until every call has ended (bounded).
    pub async fn finish_calls(&self) {
        self.sim()
            .run_until_idle(Duration::from_secs(6 * 3600))
            .await;
    }
}

/// The table's stream ARN; a table kept from before the stream existed (the dev stack) gets
/// one, as the template's StreamSpecification says.
async fn table_stream(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    def: &template::TableDef,
) -> Result<String, String> {
    let describe = || async {
        dynamo
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
            .map(|t| t.table.and_then(|t| t.latest_stream_arn))
    };
    if let Some(arn) = describe().await? {
        return Ok(arn);
    }
    let view = def
        .stream_view_type
        .as_deref()
        .ok_or("template.yaml's table has no StreamSpecification")?;
    dynamo
        .update_table()
        .table_name(table)
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::from(view))
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| {
            format!(
                "enabling {table}'s stream: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    describe()
        .await?
        .ok_or_else(|| format!("table {table} has no stream"))
}

async fn provision_pool(app: &App, console: &TwilioConsole) -> Result<(), String> {
    let pool = app
        .store
        .list_numbers()
        .await
        .map_err(|e| format!("reading the pool: {e}"))?;
    for number in pool {
        console.provision(number.phone_number.as_str()).await?;
    }
    Ok(())
}

/// Creates (or updates) the secret; returns its full ARN.
async fn seed_secret(
    aws: &SdkConfig,
    id: &str,
    account_sid: &str,
    auth_token: &str,
    callback_signing_key: &str,
) -> Result<String, String> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let value = serde_json::json!({
        "account_sid": account_sid,
        "auth_token": auth_token,
        "callback_signing_key": callback_signing_key,
    })
    .to_string();
    let seeding_error = |e: String| format!("seeding secret {id}: {e}");
    if let Ok(created) = client
        .create_secret()
        .name(id)
        .secret_string(&value)
        .send()
        .await
    {
        return created
            .arn
            .ok_or_else(|| seeding_error("CreateSecret returned no ARN".into()));
    }
    let updated = client
        .put_secret_value()
        .secret_id(id)
        .secret_string(&value)
        .send()
        .await
        .map_err(|e| {
            seeding_error(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
        })?;
    updated
        .arn
        .ok_or_else(|| seeding_error("PutSecretValue returned no ARN".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `make up` must honour every variable the README documents: each full name in the
    /// configuration table is passed through or set by the stack itself.
    #[test]
    fn every_documented_variable_reaches_the_functions_under_make_up() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let rows: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| variable | default | meaning |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert!(rows.len() > 10, "configuration table not found");
        let mut names = 0;
        for row in rows {
            let first = row.split(" | ").next().unwrap();
            for name in first.split('`').skip(1).step_by(2) {
                if name.contains('…') {
                    // An abbreviation of RATE_… names: covered by their prefix.
                    assert!(name.starts_with("RATE_") || name.starts_with('…'), "{name}");
                    continue;
                }
                if let Some((base, _)) = name.split_once("_<") {
                    // A per-service form (AWS_ENDPOINT_URL_<SERVICE>) of a variable the stack
                    // sets for every service.
                    assert!(SET_BY_THE_STACK.contains(&base), "{name}");
                    continue;
                }
                names += 1;
                assert!(
                    passed_through(name) || SET_BY_THE_STACK.contains(&name),
                    "{name} is documented but make up does not pass it through"
                );
            }
        }
        assert!(names > 20);
        assert!(passed_through("EVENT_CALLBACK_URL"));
    }

    /// Without the simulator, the sweep still runs, on the wall clock: each tick posts a
    /// scheduled event for the moment it was sent.
    #[tokio::test]
    async fn the_wall_clock_sweep_invokes_expiry_warning_with_the_current_time() {
        use std::sync::Mutex;
        let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let record = received.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(
                move |uri: axum::http::Uri, axum::Json(event): axum::Json<Value>| {
                    let record = record.clone();
                    async move { record.lock().unwrap().push((uri.path().to_owned(), event)) }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let period = Duration::from_millis(200);
        let started = time::OffsetDateTime::now_utc().unix_timestamp();
        let path = "/2015-03-31/functions/expiry-warning/invocations";
        let sweep = spawn_wall_clock_sweep(format!("{url}{path}"), period);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            received.lock().unwrap().is_empty(),
            "the first comes a period later"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while received.lock().unwrap().len() < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sweep.abort();
        server.abort();
        let ended = time::OffsetDateTime::now_utc().unix_timestamp();

        let received = received.lock().unwrap().clone();
        assert!(received.len() >= 3, "{received:?}");
        for (at, event) in &received {
            assert_eq!(at, path);
            assert_eq!(event["detail-type"], "Scheduled Event");
            let time = tsunagu::clock::parse_iso(event["time"].as_str().unwrap()).unwrap();
            assert!((started..=ended).contains(&time), "{event}");
        }
    }
}
