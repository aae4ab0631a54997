//! `make bench-sweep`: one `expiry-warning` invocation over 10,000 due sessions, with every
//! DynamoDB request held back 5 ms by a proxy in front of the emulator (DynamoDB's latency
//! from Lambda, which the local emulator does not have). Prints the wall time, the requests
//! per operation and whether the run fit the function's `Timeout` in `template.yaml`.
//!
//! Usage (under `scripts/with-moto.sh`): tsunagu-bench-sweep [sessions] [delay-ms]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use tsunagu::model::{CallMode, Extension, LiveCall, Participant, Session, SessionStatus};
use tsunagu::phone::PhoneNumber;
use tsunagu_tests::latency::LatencyProxy;
use tsunagu_tests::stack::{Options, Stack, scheduled_event};
use yaml_rust2::YamlLoader;

const PROXY_NUMBER: &str = "+815031234567";

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(10_000, |a| a.parse().expect("sessions"));
    let delay_ms: u64 = args.next().map_or(5, |a| a.parse().expect("delay in ms"));
    let Ok(emulator) = std::env::var("AWS_ENDPOINT_URL") else {
        eprintln!("bench-sweep: AWS_ENDPOINT_URL is not set; run under scripts/with-moto.sh");
        std::process::exit(2);
    };
    let timeout = function_timeout("ExpiryWarningFunction");
    // The proxy's port goes into the environment before any thread starts: every client the
    // stack builds (the functions' and the operator's) then goes through it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let proxy_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    // SAFETY of set_var: single-threaded here, before the runtime and the SDK start.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL", &proxy_url) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let proxy = LatencyProxy::start(listener, &emulator, Duration::from_millis(delay_ms));
        let stack = Stack::start(Options {
            sweep_every: None,
            ..Options::default()
        })
        .await
        .expect("the local stack");
        let now = stack.app.now();
        let seeding = Instant::now();
        seed(&stack, n, now).await;
        eprintln!(
            "seeded {n} due sessions in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
        proxy.take_counts();
        proxy.take_served();

        let invoke = format!(
            "{}/2015-03-31/functions/expiry-warning/invocations",
            stack.url
        );
        let at = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
        let started = Instant::now();
        let answer = stack
            .http
            .post(&invoke)
            .timeout(timeout)
            .json(&scheduled_event(at))
            .send()
            .await;
        let wall = started.elapsed();
        let counts = proxy.take_counts();
        let served = proxy.take_served();
        let report: serde_json::Value = match answer {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        let total: u64 = counts.values().sum();
        println!(
            "expiry-warning over {n} due sessions, DynamoDB behind a {delay_ms} ms proxy (emulator: moto)"
        );
        println!("report: {report}");
        println!(
            "wall time: {:.1} s; function timeout (template.yaml): {} s; {}",
            wall.as_secs_f64(),
            timeout.as_secs(),
            if wall < timeout && report.get("error").is_none() {
                "finished within it"
            } else {
                "DID NOT finish within it"
            }
        );
        println!("DynamoDB requests: {total}");
        println!(
            "mean wait for the emulator's answer per request (its queue included: it serves one request at a time): {:.1} ms",
            served.as_secs_f64() * 1e3 / total.max(1) as f64
        );
        for (op, count) in &counts {
            println!("  {op:<20} {count}");
        }
    });
}

/// The function's `Timeout`, else the template's `Globals.Function.Timeout`.
fn function_timeout(resource: &str) -> Duration {
    let path = tsunagu_tests::template::default_path();
    let text = std::fs::read_to_string(&path).expect("template.yaml");
    let docs = YamlLoader::load_from_str(&text).expect("template.yaml parses");
    let doc = &docs[0];
    let seconds = doc["Resources"][resource]["Properties"]["Timeout"]
        .as_i64()
        .or_else(|| doc["Globals"]["Function"]["Timeout"].as_i64())
        .expect("a Timeout");
    Duration::from_secs(seconds as u64)
}

/// `n` open sessions with a live bridge call whose warning is due now (a visit, a
/// conditional claim and a re-filing each), written with BatchWriteItem: the emulator copies
/// the whole table for each item of a transaction, which makes transactions unusable at
/// this scale (docs/PERFORMANCE.md).
async fn seed(stack: &Stack, n: usize, now: i64) {
    let client = aws_sdk_dynamodb::Client::new(&stack.aws);
    let sessions: Vec<Session> = (0..n).map(|i| session(now, i)).collect();
    for chunk in sessions.chunks(25) {
        let writes = chunk
            .iter()
            .map(|session| {
                let mut item: HashMap<String, AttributeValue> =
                    serde_dynamo::to_item(session).unwrap();
                item.insert(
                    "pk".into(),
                    AttributeValue::S(format!("SESSION#{}", session.sid)),
                );
                item.insert("sk".into(), AttributeValue::S("SESSION".into()));
                item.insert(
                    "due_shard".into(),
                    AttributeValue::S(tsunagu::store::due_shard(&session.sid)),
                );
                item.insert("due_at".into(), AttributeValue::N((now - 10).to_string()));
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build()
            })
            .collect();
        let mut pending = Some(HashMap::from([(stack.table.clone(), writes)]));
        while let Some(items) = pending.filter(|p| !p.is_empty()) {
            let out = client
                .batch_write_item()
                .set_request_items(Some(items))
                .send()
                .await
                .expect("BatchWriteItem");
            pending = out.unprocessed_items;
        }
    }
}

fn session(now: i64, i: usize) -> Session {
    let participant = |identifier: String| Participant {
        sid: tsunagu::ids::new_sid(tsunagu::ids::PARTICIPANT),
        identifier: PhoneNumber::parse(&identifier).unwrap(),
        proxy_identifier: PhoneNumber::parse(PROXY_NUMBER).unwrap(),
        friendly_name: None,
        announcement: None,
        announcement_url: None,
    };
    Session {
        sid: tsunagu::ids::new_sid(tsunagu::ids::SESSION),
        unique_name: None,
        status: SessionStatus::InProgress,
        closed_reason: None,
        mode: "voice-only".into(),
        ttl: 0,
        date_expiry: None,
        date_created: now,
        date_updated: now,
        date_last_interaction: Some(now),
        call_time_limit: Some(600),
        warning_lead: 180,
        extension: Extension {
            seconds: 300,
            max_count: 1,
        },
        extension_count: 0,
        participants: vec![
            participant(format!("+8190{i:08}")),
            participant(format!("+8180{i:08}")),
        ],
        total_cost_milli_yen: 0,
        max_cost_milli_yen: None,
        current_conference: None,
        decider: None,
        record: false,
        recording_announcement: None,
        date_reopened: None,
        live_call: Some(LiveCall {
            mode: CallMode::Bridge,
            limit: 600,
            deadline: Some(now + 170),
            warned_for: None,
            warning: None,
            noticed_for: None,
        }),
    }
}
