//! `make demo`: the whole local stack and a masked-call scenario, printed as a timeline.
//! Calls run in the simulator's virtual time, so a minute of talk takes milliseconds.
//! It ends by comparing the metrics the functions emitted (EMF) with its own totals; the
//! end-to-end test `telemetry::` runs this same scenario.

use std::time::Duration;

use serde_json::{Value, json};
use tsunagu_tests::receiver::Receiver;
use tsunagu_tests::simulator::{CallerScript, PhoneScript};
use tsunagu_tests::stack::{Options, Stack};

const BUYER: &str = "090-1234-5678";
const SELLER: &str = "080-9876-5432";
const STRANGER: &str = "070-1111-2222";

struct Demo {
    stack: Stack,
    shown: usize,
    /// Every session's call log, as `GET /v1/sessions/{sid}/interactions` showed it.
    logs: Vec<Value>,
}

/// The demo's own figures, from the call logs and the scenario, that the metrics must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub cost_yen: f64,
    pub billed_minutes: u64,
    pub legs: usize,
    /// Legs that are calls of their own: inbound calls and V字発信 legs, not dialled legs.
    pub calls: usize,
    pub warnings: u64,
    pub extensions: u64,
}

/// What a run leaves: the demo's totals and every EMF document the functions wrote.
pub struct Run {
    pub totals: Totals,
    pub metrics: tsunagu::telemetry::MemorySink,
    /// The events the platform took, each once.
    pub events: Vec<Value>,
    /// Every request the platform's endpoint received, retries included, with its
    /// signature checked.
    pub deliveries: Vec<tsunagu_tests::receiver::Received>,
}

impl Demo {
    fn step(&self, text: &str) {
        println!("\n▶ {text}");
    }

    /// Prints what happened in the simulator since the last call.
    fn timeline(&mut self) {
        let entries = self.stack.sim().transcript();
        let account_path = format!(
            "/2010-04-01/Accounts/{}/",
            tsunagu_tests::stack::ACCOUNT_SID
        );
        for entry in &entries[self.shown.min(entries.len())..] {
            let line = entry
                .to_string()
                .replace(&self.stack.url, "")
                .replace(&account_path, "");
            println!("    {}", without_queries(&line));
        }
        self.shown = entries.len();
    }

    fn check(&self, ok: bool, what: &str) -> Result<(), String> {
        if ok {
            println!("    ✓ {what}");
            Ok(())
        } else {
            Err(format!("demo expectation failed: {what}"))
        }
    }
}

/// Timeline rows stay readable without the session and participant SIDs in every URL.
fn without_queries(line: &str) -> String {
    line.split(' ')
        .map(|word| word.split_once('?').map_or(word, |(path, _)| path))
        .collect::<Vec<_>>()
        .join(" ")
}

fn e164(national: &str) -> String {
    tsunagu::phone::PhoneNumber::parse(national)
        .map(|n| n.to_string())
        .unwrap_or_default()
}

fn masked(national: &str) -> String {
    tsunagu::phone::PhoneNumber::parse(national)
        .map(|n| n.masked().to_string())
        .unwrap_or_default()
}

/// The whole scenario, printed; an `Err` when the stack did not do what a step says.
pub async fn run() -> Result<Run, String> {
    // The platform's event endpoint: every event arrives here, signed.
    let receiver = Receiver::start(tsunagu_tests::stack::CALLBACK_SIGNING_KEY).await;
    let stack = Stack::start(Options {
        env: vec![("EVENT_CALLBACK_URL".into(), receiver.url.clone())],
        ..Options::default()
    })
    .await?;
    println!("Tsunagu demo — masked calls on the local stack");
    println!(
        "  gateway   {}  (every route of template.yaml, real handlers)",
        stack.url
    );
    println!(
        "  emulator  {}  (DynamoDB table {}, Secrets Manager)",
        tsunagu_tests::stack::emulator_url()?,
        stack.table
    );
    println!(
        "  Twilio    {}  (Voice simulator, virtual clock)",
        stack.sim().base_url()
    );
    let mut demo = Demo {
        stack,
        shown: 0,
        logs: Vec::new(),
    };

    demo.step("The platform adds two proxy numbers to the pool");
    for n in ["050-3123-4567", "050-3123-4568"] {
        let body = demo.stack.add_proxy_number(n).await;
        println!("    POST /v1/numbers {n} → {}", body["phone_number"]);
    }

    demo.step(&format!(
        "It creates a recorded session between a buyer ({BUYER}) and a seller ({SELLER}), who hears why the 050 number calls"
    ));
    let (status, session) = demo
        .stack
        .api(
            "POST",
            "/v1/sessions",
            Some(json!({
                "unique_name": "order-1234",
                "ttl": 3600,
                "record": true,
                "participants": [
                    {"identifier": BUYER, "friendly_name": "購入者"},
                    {"identifier": SELLER, "friendly_name": "出品者",
                     "announcement": "〇〇アプリのお取引についてのお電話です。"}
                ]
            })),
        )
        .await;
    demo.check(
        status == 201,
        &format!("201 Created: session {}", session["sid"]),
    )?;
    let sid = session["sid"].as_str().unwrap_or_default().to_owned();
    let proxy_of = |i: usize| {
        session["participants"][i]["proxy_identifier"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (buyer_proxy, seller_proxy) = (proxy_of(0), proxy_of(1));
    println!(
        "    buyer dials {buyer_proxy}, seller dials {seller_proxy}; neither sees the other's number"
    );

    let sim = demo.stack.sim().clone();
    demo.step(
        "The buyer calls the proxy number; the seller answers after 3 s and they talk for 65 s",
    );
    sim.set_phone(
        &e164(SELLER),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(65)),
    );
    sim.dial_in(&e164(BUYER), &buyer_proxy, CallerScript::default())
        .await;
    demo.stack.finish_calls().await;
    demo.timeline();
    let bridged = sim
        .calls()
        .iter()
        .any(|c| c.to == e164(SELLER) && c.from == seller_proxy && c.duration_secs == 65);
    demo.check(
        bridged,
        &format!("the seller saw {seller_proxy}, never the buyer's number"),
    )?;
    let seller_heard = sim.heard_by(&e164(SELLER));
    demo.check(
        seller_heard.first().map(String::as_str)
            == Some("〇〇アプリのお取引についてのお電話です。")
            && seller_heard.len() == 2,
        "the seller heard the announcement, then the recording notice, before being connected",
    )?;
    let recording = sim.recordings().into_iter().next();
    let stored = match &recording {
        Some(r) => demo
            .stack
            .app
            .store
            .get_recording(&sid, r.call_sid.as_deref().unwrap_or_default())
            .await
            .ok()
            .flatten(),
        None => None,
    };
    demo.check(
        stored.as_ref().is_some_and(|s| s.channels == 2),
        &format!(
            "the recording ({} s, two channels) is stored on the call's interaction: {}",
            stored.as_ref().map_or(0, |s| s.duration),
            stored.as_ref().map_or("", |s| s.sid.as_str())
        ),
    )?;

    demo.step(
        "The seller calls back the number they saw; the buyer answers and they talk for 20 s",
    );
    sim.set_phone(
        &e164(BUYER),
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(20)),
    );
    sim.dial_in(&e164(SELLER), &seller_proxy, CallerScript::default())
        .await;
    demo.stack.finish_calls().await;
    demo.timeline();
    let reached = sim
        .calls()
        .iter()
        .any(|c| c.to == e164(BUYER) && c.from == buyer_proxy);
    demo.check(reached, &format!("the buyer saw {buyer_proxy}"))?;

    demo.step(&format!("A stranger ({STRANGER}) calls the proxy number"));
    sim.dial_in(&e164(STRANGER), &buyer_proxy, CallerScript::default())
        .await;
    demo.stack.finish_calls().await;
    demo.timeline();
    let refused = !sim.heard_by(&e164(STRANGER)).is_empty()
        && !sim.calls().iter().any(|c| {
            c.from == buyer_proxy && c.direction == "outbound-dial" && c.to == e164(STRANGER)
        });
    demo.check(
        refused,
        "no session for the stranger: a short message and the call ends",
    )?;

    demo.step("The platform closes the session");
    let (status, closed) = demo
        .stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    demo.check(
        status == 200 && closed["status"] == "closed",
        &format!(
            "status {}, closed_reason {}",
            closed["status"], closed["closed_reason"]
        ),
    )?;

    demo.step("The buyer calls the proxy number again");
    let calls_before = sim.calls().len();
    sim.dial_in(&e164(BUYER), &buyer_proxy, CallerScript::default())
        .await;
    demo.stack.finish_calls().await;
    demo.timeline();
    let dialled = sim.calls()[calls_before..]
        .iter()
        .any(|c| c.direction == "outbound-dial");
    demo.check(!dialled, "the closed session routes nothing")?;

    demo.step("The call log (GET /v1/sessions/{sid}/interactions), numbers masked");
    let (status, log) = demo
        .stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    demo.check(status == 200, "200 OK")?;
    print_log(&log);
    demo.logs.push(log.clone());
    let total = log["total_cost"].as_f64().unwrap_or_default();
    // 65 s and 20 s to mobiles: 2 + 1 billed minutes at 16.2; the callers' legs at 1 JPY/min.
    demo.check(
        (total - (2.0 * 16.2 + 16.2 + 2.0 + 1.0)).abs() < 1e-9,
        &format!(
            "total {total} JPY = 3 outbound minutes to mobiles at 16.2 + 3 inbound minutes at 1"
        ),
    )?;
    v_calls(&mut demo).await?;
    let extensions = time_limit(&mut demo).await?;
    let totals = metrics(&mut demo, extensions)?;
    let events = platform_events(&demo, &receiver, &totals).await?;
    let deliveries = receiver.received();
    println!(
        "\nDone: {} masked as {} and {} as {} throughout.",
        BUYER,
        masked(BUYER),
        SELLER,
        masked(SELLER)
    );
    Ok(Run {
        totals,
        metrics: demo.stack.metrics.clone(),
        events,
        deliveries,
    })
}

/// The events the platform received (table stream → queue → deliver-events), each with its
/// signature checked as the README shows; once the last of each session's has come: every
/// leg's `interaction.completed`, every recording's `recording.completed`, and the two
/// sessions' `session.closed` (the order's, closed by the platform; the timed one, expired).
async fn platform_events(
    demo: &Demo,
    receiver: &Receiver,
    totals: &Totals,
) -> Result<Vec<Value>, String> {
    demo.step("Events the platform received at EVENT_CALLBACK_URL (signed, in order per session)");
    let legs = totals.legs;
    let recordings = demo.stack.sim().recordings().len();
    const CLOSED_SESSIONS: usize = 2;
    let count = |r: &[tsunagu_tests::receiver::Received], kind: &str| {
        r.iter().filter(|r| r.event["type"] == kind).count()
    };
    let complete = receiver
        .wait_until(Duration::from_secs(60), |r| {
            count(r, "interaction.completed") >= legs
                && count(r, "recording.completed") >= recordings
                && count(r, "session.closed") >= CLOSED_SESSIONS
        })
        .await;
    let events = receiver.accepted();
    for r in receiver.received() {
        let e = &r.event;
        let sid = e["session_sid"].as_str().unwrap_or_default();
        let detail = match e["type"].as_str().unwrap_or_default() {
            "interaction.completed" => format!(
                "{} s, {} min, {} JPY",
                e["data"]["duration"], e["data"]["billed_minutes"], e["data"]["cost"]
            ),
            "session.closed" => format!("closed_reason {}", e["data"]["closed_reason"]),
            "call.extended" => format!("+{} s to {}", e["data"]["seconds"], e["data"]["deadline"]),
            "call.warning" => format!("deadline {}", e["data"]["deadline"]),
            "participant.added" | "participant.removed" => {
                e["data"]["sid"].as_str().unwrap_or_default().to_owned()
            }
            _ => String::new(),
        };
        println!(
            "    {} {:<22} {}…  {:<44} {}",
            if r.signature_valid {
                "✓ signed"
            } else {
                "✗ UNSIGNED"
            },
            e["type"].as_str().unwrap_or_default(),
            &sid[..sid.len().min(8)],
            detail,
            e["id"].as_str().unwrap_or_default(),
        );
    }
    demo.check(
        receiver.received().iter().all(|r| r.signature_valid),
        "every event's Tsunagu-Signature verifies with the secret's callback_signing_key",
    )?;
    demo.check(
        complete,
        &format!(
            "an interaction.completed for each of the {legs} legs, a recording.completed for \
             each of the {recordings} recordings, a session.closed for each of the \
             {CLOSED_SESSIONS} closed sessions"
        ),
    )?;
    Ok(events)
}

/// What CloudWatch would extract from the functions' EMF documents, against the demo's own
/// figures: the call logs' legs, minutes and yen, and the warnings and extension it staged.
fn metrics(demo: &mut Demo, extensions: u64) -> Result<Totals, String> {
    use tsunagu::telemetry::metrics::name;
    demo.step("Operations: the EMF metrics the functions wrote (namespace Tsunagu), summed");
    let legs: Vec<&Value> = demo
        .logs
        .iter()
        .flat_map(|log| log["interactions"].as_array().into_iter().flatten())
        .collect();
    let totals = Totals {
        cost_yen: demo
            .logs
            .iter()
            .filter_map(|log| log["total_cost"].as_f64())
            .sum(),
        billed_minutes: legs
            .iter()
            .filter_map(|l| l["billed_minutes"].as_u64())
            .sum(),
        legs: legs.len(),
        calls: legs
            .iter()
            .filter(|l| l["twilio_direction"] != "outbound-dial")
            .count(),
        // The ten-minute call: one warning at 7:00 (extended), one at 12:00 (none left).
        warnings: 2,
        extensions,
    };
    let m = &demo.stack.metrics;
    let rows = [
        (name::CALLS, totals.calls as f64, "calls in the logs"),
        (name::LEGS, totals.legs as f64, "legs in the logs"),
        (
            name::BILLED_MINUTES,
            totals.billed_minutes as f64,
            "billed minutes in the logs",
        ),
        (name::COST_YEN, totals.cost_yen, "yen in the logs"),
        (name::WARNINGS, totals.warnings as f64, "warnings given"),
        (
            name::EXTENSIONS,
            totals.extensions as f64,
            "extensions taken",
        ),
    ];
    println!("    {:<16} {:>10} {:>10}", "metric", "EMF sum", "demo");
    for (metric, expected, _) in rows {
        println!("    {:<16} {:>10} {:>10}", metric, m.sum(metric), expected);
    }
    for (metric, expected, what) in rows {
        demo.check(
            (m.sum(metric) - expected).abs() < 1e-9,
            &format!("{metric} = {expected} {what}"),
        )?;
    }
    Ok(totals)
}

/// V字発信: the platform rings both parties itself, in bridge and in conference mode.
async fn v_calls(demo: &mut Demo) -> Result<(), String> {
    demo.step(
        "V字発信: a new session for a consultation; the platform will ring both parties itself",
    );
    let (status, session) = demo
        .stack
        .api(
            "POST",
            "/v1/sessions",
            Some(json!({"unique_name": "consultation-77", "participants": [
                {"identifier": BUYER, "friendly_name": "相談者"}, {"identifier": SELLER, "friendly_name": "専門家"}]})),
        )
        .await;
    demo.check(status == 201, &format!("session {}", session["sid"]))?;
    let sid = session["sid"].as_str().unwrap_or_default().to_owned();
    let sim = demo.stack.sim().clone();

    demo.step("Bridge mode: Twilio calls the buyer; when they answer, the seller is dialled (45 s of talk)");
    sim.set_phone(
        &e164(BUYER),
        PhoneScript::Answer {
            after: Duration::from_secs(4),
            hang_up_after: None,
            digits: vec![],
        },
    );
    sim.set_phone(
        &e164(SELLER),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(45)),
    );
    let (status, placed) = demo
        .stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/calls"),
            Some(json!({"mode": "bridge"})),
        )
        .await;
    demo.check(
        status == 202,
        &format!(
            "202 Accepted: {} call placed",
            placed["calls"].as_array().map_or(0, Vec::len)
        ),
    )?;
    demo.stack.finish_calls().await;
    demo.timeline();

    demo.step("Conference mode: Twilio calls both; they meet in the session's room; the seller hangs up after 90 s");
    sim.set_phone(
        &e164(BUYER),
        PhoneScript::Answer {
            after: Duration::from_secs(2),
            hang_up_after: None,
            digits: vec![],
        },
    );
    sim.set_phone(
        &e164(SELLER),
        PhoneScript::talks(Duration::from_secs(6), Duration::from_secs(90)),
    );
    let (status, placed) = demo
        .stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/calls"),
            Some(json!({"mode": "conference", "call_time_limit": 1800})),
        )
        .await;
    demo.check(
        status == 202,
        &format!(
            "202 Accepted: {} calls placed",
            placed["calls"].as_array().map_or(0, Vec::len)
        ),
    )?;
    demo.stack.finish_calls().await;
    demo.timeline();
    demo.check(
        sim.calls().iter().all(|c| c.ended_at.is_some()),
        "when the seller hung up, the room was ended for the buyer too",
    )?;

    demo.step("The V字発信 log: every leg is Twilio-outbound, so neither user pays their carrier");
    let (_, log) = demo
        .stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    print_log(&log);
    demo.logs.push(log.clone());
    let outbound_only = log["interactions"]
        .as_array()
        .is_some_and(|l| l.len() == 4 && l.iter().all(|i| i["direction"] == "outbound"));
    demo.check(outbound_only, "four legs, all outbound, each with its cost")?;
    Ok(())
}

/// A ten-minute call with the spoken warning, one extension, and the session's end; the
/// number of extensions the session shows.
async fn time_limit(demo: &mut Demo) -> Result<u64, String> {
    demo.step("Time limits: a session that ends in 10 minutes, calls limited to 10 minutes, one 5-minute extension");
    // Start on the sweep's minute, so the warning comes at 7:00 sharp.
    let into_minute = (demo.stack.clock.now() - demo.stack.started)
        .whole_seconds()
        .rem_euclid(60);
    if into_minute > 0 {
        demo.stack
            .sim()
            .advance(Duration::from_secs((60 - into_minute) as u64))
            .await;
    }
    demo.shown = demo.stack.sim().transcript().len();
    let t0 = demo.stack.clock.now();
    let expiry = (t0 + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())?;
    let (status, session) = demo
        .stack
        .api(
            "POST",
            "/v1/sessions",
            Some(json!({"unique_name": "consultation-78", "date_expiry": expiry, "call_time_limit": 600,
                "extension": {"seconds": 300, "max_count": 1},
                "participants": [{"identifier": BUYER}, {"identifier": SELLER}]})),
        )
        .await;
    demo.check(
        status == 201,
        &format!(
            "session {} expires at {}",
            session["sid"], session["date_expiry"]
        ),
    )?;
    let sid = session["sid"].as_str().unwrap_or_default().to_owned();
    let sim = demo.stack.sim().clone();
    // The buyer decides; they press 1 two seconds into each prompt that offers it.
    sim.set_phone(
        &e164(BUYER),
        PhoneScript::Answer {
            after: Duration::from_secs(2),
            hang_up_after: None,
            digits: vec![(Duration::from_secs(2), '1')],
        },
    );
    sim.set_phone(
        &e164(SELLER),
        PhoneScript::Answer {
            after: Duration::from_secs(4),
            hang_up_after: None,
            digits: vec![],
        },
    );
    let (status, _) = demo
        .stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/calls"),
            Some(json!({"mode": "conference"})),
        )
        .await;
    demo.check(
        status == 202,
        "conference V字発信 placed; expiry-warning runs every minute on the simulator's clock",
    )?;

    demo.step("0:00–7:00 they talk; at 7:00 the sweep warns the buyer and holds the seller");
    sim.advance(Duration::from_secs(450)).await;
    demo.timeline();
    let heard = sim.heard_by(&e164(BUYER));
    demo.check(
        heard.iter().any(|t| t.contains("延長しました")),
        "the buyer pressed 1: the call and the session now end at 15:00",
    )?;

    demo.step("12:00 the second warning: no extension left, nobody presses; 15:00 the call ends and the session closes");
    demo.stack.finish_calls().await;
    sim.advance(Duration::from_secs(60)).await;
    demo.timeline();
    let ended = sim
        .calls()
        .iter()
        .filter(|c| c.to == e164(BUYER) || c.to == e164(SELLER))
        .all(|c| c.ended_at.is_some());
    let (_, closed) = demo
        .stack
        .api("GET", &format!("/v1/sessions/{sid}"), None)
        .await;
    demo.check(
        ended && closed["status"] == "closed" && closed["closed_reason"] == "expired",
        &format!(
            "calls ended; session {} ({}) after {} extension",
            closed["status"], closed["closed_reason"], closed["extension_count"]
        ),
    )?;
    let (_, log) = demo
        .stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    print_log(&log);
    demo.logs.push(log);
    Ok(closed["extension_count"].as_u64().unwrap_or_default())
}

fn print_log(log: &Value) {
    println!(
        "    {:<8} {:<10} {:<15} {:<15} {:<10} {:>5} {:>6} {:>8}",
        "time", "leg", "from", "to", "status", "secs", "billed", "JPY"
    );
    for i in log["interactions"].as_array().into_iter().flatten() {
        let time = i["date_created"]
            .as_str()
            .unwrap_or("")
            .get(11..19)
            .unwrap_or("");
        println!(
            "    {:<8} {:<10} {:<15} {:<15} {:<10} {:>5} {:>6} {:>8}",
            time,
            i["direction"].as_str().unwrap_or(""),
            i["from"].as_str().unwrap_or(""),
            i["to"].as_str().unwrap_or(""),
            i["status"].as_str().unwrap_or(""),
            i["duration"].to_string(),
            format!("{} min", i["billed_minutes"]),
            i["cost"].to_string(),
        );
    }
    println!(
        "    total {} {}",
        log["total_cost"],
        log["cost_unit"].as_str().unwrap_or("")
    );
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("\n✗ {e}");
        std::process::exit(1);
    }
}
