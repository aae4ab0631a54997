//! `make bench-lambda`: every function's release binary run as Lambda runs it, behind the
//! test tree's Runtime API stand-in (`tsunagu_tests::runtime_api`), against the local stack
//! (emulator + Twilio simulator), each on a freshly seeded table (`make seed`'s state) with
//! its own `events/<function>.json`; and beside them a `lambda_http` hello world built in the
//! same run (`bench/lambda-floor`), the floor.
//!
//!     scripts/with-moto.sh cargo run -p tsunagu-tests --bin tsunagu-bench-lambda -- \
//!         [binary dir, default target/release] [warm invokes, default 200]
//!
//! Secrets Manager is served by an emulator process of its own (`AWS_ENDPOINT_URL_SECRETS_MANAGER`),
//! as AWS serves it apart from DynamoDB: the emulator answers one request at a time
//! (scripts/moto-serial.py, for DynamoDB's atomicity), so with one process a function's
//! secret fetch would queue behind its own, unrelated DynamoDB requests, which on AWS run
//! concurrently. `BENCH_ONE_EMULATOR=1` keeps both on the stack's one emulator.
//!
//! `BENCH_ONLY=f1,f2` measures only those functions beside the floor;
//! `BENCH_PREINITIALIZED_MS=N` hands out the first event N ms after the first poll, the
//! process frozen meanwhile (an environment initialized ahead of its requests).
//!
//! Per binary: exec → first poll of `/next` (its init: the median of 7 starts) and its
//! ratio to the floor's; the first invoke (seen from the Runtime API: from handing out the
//! event to receiving the answer; the event is handed out at the first poll, as in a cold
//! start that a request caused); exec → first answer (the two together: what that request
//! waited); p50 and p99 of the warm invokes that follow; and the peak RSS (`VmHWM` in
//! `/proc/<pid>/status`, read after the last invoke). The warm invokes repeat the same
//! event without re-seeding; the `answers` column says what they answered, so where an
//! event changes state (a number bought, a session created or closed) the warm figure is
//! that of the repeat's answer path (e.g. 409), which the table shows rather than hides.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tsunagu_tests::runtime_api::{self, Outcome, RuntimeApi};
use tsunagu_tests::seed::{self, Target};
use tsunagu_tests::stack::{Options, REGION, Stack};
use tsunagu_tests::template;

/// The base URL the Twilio events were signed for (scripts/sign-events.py).
const EVENTS_BASE_URL: &str = "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com";

fn fail(message: String) -> ! {
    eprintln!("make bench-lambda: {message}");
    std::process::exit(1);
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn event(name: &str) -> Value {
    let path = root().join("events").join(format!("{name}.json"));
    std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())))
}

struct Row {
    name: String,
    size: u64,
    init: Duration,
    first: Duration,
    warm: Vec<Duration>,
    peak_rss_kb: u64,
    answers: BTreeMap<String, usize>,
}

/// What an invocation answered, for the `answers` column: the HTTP status, `ok` for an
/// event function's result, or the error's type.
fn answer_of(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Response(bytes) => serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v["statusCode"].as_u64())
            .map(|s| s.to_string())
            .unwrap_or_else(|| "ok".into()),
        Outcome::Error { kind, .. } => format!("error {kind}"),
        Outcome::InitError { kind, .. } => format!("init error {kind}"),
    }
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn measure(
    name: &str,
    binary: &Path,
    function: &str,
    env: &[(String, String)],
    event: &Value,
    warm: usize,
) -> Row {
    let size = std::fs::metadata(binary)
        .unwrap_or_else(|e| fail(format!("{}: {e}", binary.display())))
        .len();
    let timeout = Duration::from_secs(if function == "expiry-warning" {
        300
    } else {
        10
    });
    // One start's init moves by a millisecond or two from run to run (the page cache, the
    // scheduler), as much as the figure itself: the column is the median of these starts,
    // each stopped at its first poll, and of the measured one.
    let mut inits = Vec::with_capacity(INIT_STARTS + 1);
    for _ in 0..INIT_STARTS {
        let api = RuntimeApi::start(function, REGION, timeout)
            .await
            .unwrap_or_else(|e| fail(format!("runtime API: {e}")));
        let (init, mut process) = start(name, binary, &api, env).await;
        inits.push(init);
        let _ = process.kill().await;
    }
    let api = RuntimeApi::start(function, REGION, timeout)
        .await
        .unwrap_or_else(|e| fail(format!("runtime API: {e}")));
    let (init, mut process) = start(name, binary, &api, env).await;
    inits.push(init);
    inits.sort();
    if let Some(gap) = preinitialized() {
        // An environment Lambda initialized before any request (provisioned concurrency) is
        // frozen once its runtime polls and no event is pending, until the event comes
        // ("Understanding the Lambda execution environment lifecycle").
        let pid = process.id().unwrap_or(0).to_string();
        signal("-STOP", &pid);
        tokio::time::sleep(gap).await;
        signal("-CONT", &pid);
    }
    let mut answers = BTreeMap::new();
    let mut invoke = async || {
        let t = Instant::now();
        let outcome = api
            .invoke(event)
            .await
            .unwrap_or_else(|e| fail(format!("{name}: {e}")));
        let took = t.elapsed();
        if let Outcome::InitError { body, .. } = &outcome {
            fail(format!("{name} failed to start: {body}"));
        }
        took_answer(&mut answers, &outcome);
        took
    };
    let first = invoke().await;
    let mut times = Vec::with_capacity(warm);
    for _ in 0..warm {
        times.push(invoke().await);
    }
    let pid = process.id().unwrap_or(0);
    let peak_rss_kb = peak_rss_kb(pid);
    let _ = process.kill().await;
    times.sort();
    Row {
        name: name.to_owned(),
        size,
        init: percentile(&inits, 50.0),
        first,
        warm: times,
        peak_rss_kb,
        answers,
    }
}

/// Starts `binary` behind `api`: the time from exec to its first poll of `/next`, and the
/// process, waiting at that poll.
async fn start(
    name: &str,
    binary: &Path,
    api: &RuntimeApi,
    env: &[(String, String)],
) -> (Duration, tokio::process::Child) {
    let started = Instant::now();
    let mut process = runtime_api::spawn(binary, api, env)
        .unwrap_or_else(|e| fail(format!("{}: {e}", binary.display())));
    let ready = tokio::select! {
        at = api.first_poll() => at,
        status = process.wait() => fail(format!("{name} exited before polling: {status:?}")),
    };
    (ready - started, process)
}

/// `BENCH_PREINITIALIZED_MS=N`: the first event comes N ms after the first poll, the
/// process frozen meanwhile, as in an environment initialized ahead of its requests.
fn preinitialized() -> Option<Duration> {
    std::env::var("BENCH_PREINITIALIZED_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
}

fn signal(which: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([which, pid])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        fail(format!("kill {which} {pid} failed"));
    }
}

/// A second emulator process serving only Secrets Manager, holding a copy of the stack's
/// Twilio secret; stopped when dropped.
struct SecretsEmulator {
    url: String,
    secret_arn: String,
    _process: tokio::process::Child,
}

impl SecretsEmulator {
    async fn start(stack_aws: &aws_config::SdkConfig, secret_id: &str) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let process = tokio::process::Command::new(root().join(".venv/bin/python"))
            .arg(root().join("scripts/moto-serial.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!(".venv/bin/python: {e}"))?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut up = false;
        for _ in 0..100 {
            if http.get(format!("{url}/moto-api/")).send().await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !up {
            return Err(format!("no answer on {url}"));
        }
        let from = aws_sdk_secretsmanager::Client::new(stack_aws);
        let to = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(stack_aws)
                .endpoint_url(&url)
                .build(),
        );
        let secret = from
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?;
        let created = to
            .create_secret()
            .name(secret.name().unwrap_or("tsunagu/twilio"))
            .secret_string(secret.secret_string().unwrap_or_default())
            .send()
            .await
            .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?;
        Ok(Self {
            url,
            secret_arn: created.arn().unwrap_or_default().to_owned(),
            _process: process,
        })
    }
}

/// Starts per binary whose init is measured (beside the measured start).
const INIT_STARTS: usize = 6;

fn took_answer(answers: &mut BTreeMap<String, usize>, outcome: &Outcome) {
    *answers.entry(answer_of(outcome)).or_default() += 1;
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release"));
    let warm: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);

    let stack = Stack::start(Options {
        env: vec![("PUBLIC_BASE_URL".into(), EVENTS_BASE_URL.into())],
        sweep_every: None,
        ..Options::default()
    })
    .await
    .unwrap_or_else(|e| fail(format!("local stack: {e}")));
    // The pool's numbers belong to the simulated account, as they would in Twilio.
    for n in [seed::P1, seed::P2, seed::P3] {
        stack.sim().add_number(
            n,
            &format!("{EVENTS_BASE_URL}/twilio/voice/inbound"),
            Some(&format!("{EVENTS_BASE_URL}/twilio/voice/status")),
        );
    }
    let template_text = std::fs::read_to_string(template::default_path())
        .unwrap_or_else(|e| fail(format!("template.yaml: {e}")));
    let config = &stack.app.config;
    let secrets_apart = match std::env::var("BENCH_ONE_EMULATOR").is_ok_and(|v| v == "1") {
        true => None,
        false => Some(
            SecretsEmulator::start(&stack.aws, &config.twilio_secret_id)
                .await
                .unwrap_or_else(|e| fail(format!("Secrets Manager's own emulator: {e}"))),
        ),
    };
    let secret_id = secrets_apart
        .as_ref()
        .map_or(config.twilio_secret_id.clone(), |s| s.secret_arn.clone());
    let locals = HashMap::from([
        ("Table".to_owned(), stack.table.clone()),
        ("TwilioSecretArn".to_owned(), secret_id),
        ("PublicBaseUrl".to_owned(), EVENTS_BASE_URL.to_owned()),
        ("TwilioApiBaseUrl".to_owned(), stack.sim().base_url()),
        ("CallTimers".to_owned(), stack.schedule_group.clone()),
        ("EventQueue".to_owned(), stack.event_queue_url.clone()),
        (
            "CallTimersRole.Arn".to_owned(),
            tsunagu_tests::iam::call_timers_role_arn(&stack.table),
        ),
        (
            "ExpiryWarningFunction.Arn".to_owned(),
            tsunagu_tests::iam::lambda_function_arn(tsunagu_tests::stack::REGION, "expiry-warning"),
        ),
    ]);
    let mut aws_env = vec![
        (
            "AWS_ENDPOINT_URL".to_owned(),
            tsunagu_tests::stack::emulator_url().unwrap_or_else(|e| fail(e)),
        ),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    if let Some(secrets) = &secrets_apart {
        aws_env.push((
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".into(),
            secrets.url.clone(),
        ));
    }
    let target = Target {
        gateway_url: stack.url.clone(),
        aws: stack.aws.clone(),
        table: stack.table.clone(),
    };

    let mut rows = Vec::new();
    // The floor answers any API Gateway event; it gets inbound-call's.
    rows.push(
        measure(
            "floor (lambda_http hello world)",
            &dir.join("lambda-floor"),
            "lambda-floor",
            &aws_env,
            &event("inbound-call"),
            warm,
        )
        .await,
    );
    let mut functions: Vec<&str> = tsunagu::handlers::HTTP_FUNCTIONS
        .iter()
        .chain(tsunagu::handlers::EVENT_FUNCTIONS)
        .copied()
        .collect();
    // BENCH_ONLY=inbound-call,get-session: only those functions (and the floor), when a
    // loaded machine leaves no time to build and run them all.
    if let Some(only) = std::env::var("BENCH_ONLY").ok().filter(|o| !o.is_empty()) {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        functions.retain(|f| only.contains(f));
    }
    functions.sort();
    for function in functions {
        seed::seed(&target)
            .await
            .unwrap_or_else(|e| fail(format!("seed: {e}")));
        let mut env = template::function_environment(&template_text, function, &locals)
            .unwrap_or_else(|e| fail(e));
        env.extend(aws_env.iter().cloned());
        eprintln!("make bench-lambda: {function}");
        rows.push(
            measure(
                function,
                &dir.join(function),
                function,
                &env,
                &event(function),
                warm,
            )
            .await,
        );
    }
    let denials = stack.take_denials();
    if !denials.is_empty() {
        fail(format!("IAM denials: {denials:?}"));
    }

    // A cold start caused by a request: the event is handed out at the first poll, so the
    // caller waits for init and the first invoke together.
    let floor_init = rows
        .iter()
        .find(|row| row.name.starts_with("floor"))
        .map(|row| row.init);
    println!(
        "| binary | size (bytes) | exec → first poll | × floor | first invoke | exec → first answer | warm p50 | warm p99 | peak RSS | answers (first + {warm} warm) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let answers: Vec<String> = row
            .answers
            .iter()
            .map(|(a, n)| format!("{a} ×{n}"))
            .collect();
        let ratio = floor_init.map_or("—".to_owned(), |floor| {
            format!("{:.1}", row.init.as_secs_f64() / floor.as_secs_f64())
        });
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} MB | {} |",
            row.name,
            row.size,
            ms(row.init),
            ratio,
            ms(row.first),
            ms(row.init + row.first),
            ms(percentile(&row.warm, 50.0)),
            ms(percentile(&row.warm, 99.0)),
            row.peak_rss_kb as f64 / 1024.0,
            answers.join(", ")
        );
    }
}
