//! Operations: the demo's scenario (`make demo`, tests/src/bin/tsunagu-demo.rs) run as is,
//! the EMF documents its functions wrote compared with its own totals, and the events its
//! platform received checked.

use serde_json::{Value, json};
use tsunagu::telemetry::metrics::{declares, name};

use crate::common::{A, B, P1, e164, session_body, sid, stack};

#[allow(dead_code)] // its `main` is the binary's, unused here
#[path = "../src/bin/tsunagu-demo.rs"]
mod demo;

#[tokio::test]
async fn the_demos_metrics_match_its_own_totals_and_its_platform_got_every_event() {
    let run = demo::run().await.expect("the demo runs through");
    let (t, m) = (&run.totals, &run.metrics);
    // The scenario as staged: calls were made, cost money, and one warning was extended.
    assert!(t.calls >= 6 && t.legs > t.calls, "{t:?}");
    assert!(t.cost_yen > 0.0 && t.billed_minutes > 0, "{t:?}");
    assert_eq!((t.warnings, t.extensions), (2, 1), "{t:?}");

    assert_eq!(m.sum(name::CALLS), t.calls as f64);
    assert_eq!(m.sum(name::LEGS), t.legs as f64);
    assert_eq!(m.sum(name::BILLED_MINUTES), t.billed_minutes as f64);
    assert!(
        (m.sum(name::COST_YEN) - t.cost_yen).abs() < 1e-9,
        "{} ≠ {}",
        m.sum(name::COST_YEN),
        t.cost_yen
    );
    assert_eq!(m.sum(name::WARNINGS), 2.0);
    assert_eq!(m.sum(name::EXTENSIONS), 1.0);
    // Every call ended one way or another, and the outcomes add up to the calls.
    let outcomes: f64 = ["completed", "busy", "no-answer", "failed", "canceled"]
        .iter()
        .map(|o| m.sum_where(name::CALLS, "outcome", o))
        .sum();
    assert_eq!(outcomes, t.calls as f64);
    // Nothing went wrong with Twilio or the webhooks' signatures on the happy path.
    assert_eq!(m.sum(name::TWILIO_ERRORS), 0.0);
    assert_eq!(m.sum(name::SIGNATURE_FAILURES), 0.0);

    let docs = m.documents();
    // The sweep ran every minute of the ten-minute call and reported its lag each time,
    // never more than the minute between two runs.
    let lags: Vec<f64> = docs
        .iter()
        .filter(|d| declares(d, name::SWEEP_LAG))
        .filter_map(|d| d[name::SWEEP_LAG].as_f64())
        .collect();
    assert!(lags.len() >= 10, "{lags:?}");
    assert!(lags.iter().all(|l| (0.0..=60.0).contains(l)), "{lags:?}");
    for doc in &docs {
        assert_valid_emf(doc);
        // Named after the function that wrote it, as on Lambda.
        assert!(
            doc["function_name"].as_str().is_some_and(|f| !f.is_empty()),
            "{doc}"
        );
    }
    let by = |f: &str| docs.iter().filter(|d| d["function_name"] == f).count();
    assert!(by("call-status") > 0 && by("expiry-warning") > 0 && by("extension") == 1);

    assert_the_platform_got_the_demos_events(&run);
}

/// The demo's platform (its EVENT_CALLBACK_URL) received every event of each session the
/// scenario staged, signed, once each, in the order the session lived it.
fn assert_the_platform_got_the_demos_events(run: &demo::Run) {
    assert!(!run.deliveries.is_empty());
    for d in &run.deliveries {
        assert!(
            d.signature_valid,
            "not signed with the secret's key: {}",
            d.body
        );
    }

    // The recorded masked-call session: a call each way (two legs each), both
    // recorded, then closed by the platform.
    let order = events_of(&run.events, "order-1234");
    let legs = assert_each_leg_started_then_completed(&order);
    assert_eq!(legs, 4, "{:?}", types(&order));
    assert_eq!(
        others(&order),
        [
            "session.created",
            "participant.added",
            "participant.added",
            "recording.completed",
            "recording.completed",
            "session.closed"
        ]
    );
    let names: Vec<&Value> = order
        .iter()
        .filter(|e| e["type"] == "participant.added")
        .map(|e| &e["data"]["friendly_name"])
        .collect();
    assert_eq!(names, [&json!("購入者"), &json!("出品者")]);
    for (i, recording) in order
        .iter()
        .enumerate()
        .filter(|(_, e)| e["type"] == "recording.completed")
    {
        // On the caller's leg, which started before it.
        let leg = order[..i]
            .iter()
            .find(|e| {
                e["type"] == "interaction.started"
                    && e["data"]["sid"] == recording["data"]["interaction_sid"]
            })
            .unwrap_or_else(|| panic!("{recording}: no leg started before"));
        assert_eq!(leg["data"]["direction"], "inbound", "{leg}");
        assert_eq!(recording["data"]["call_sid"], leg["data"]["call_sid"]);
        assert_eq!(recording["data"]["channels"], 2, "{recording}");
        assert!(
            recording["data"]["recording_sid"]
                .as_str()
                .is_some_and(|s| s.starts_with("RE")),
            "{recording}"
        );
    }
    let closed = order.last().unwrap();
    assert_eq!(closed["data"]["closed_reason"], "closed-by-api", "{closed}");

    // The V-call session: a bridge (two legs) and a conference (two), still open.
    let consultation = events_of(&run.events, "consultation-77");
    assert_eq!(assert_each_leg_started_then_completed(&consultation), 4);
    assert_eq!(
        others(&consultation),
        ["session.created", "participant.added", "participant.added"]
    );

    // The timed session: warned at 7:00, extended by the buyer, warned again with no
    // extension left, closed at its (extended) expiry. Its two legs end with it, so their
    // completions may come either side of session.closed.
    let timed = events_of(&run.events, "consultation-78");
    assert_eq!(assert_each_leg_started_then_completed(&timed), 2);
    assert_eq!(
        others(&timed),
        [
            "session.created",
            "participant.added",
            "participant.added",
            "call.warning",
            "call.extended",
            "session.updated",
            "call.warning",
            "session.closed"
        ]
    );
    let first_warning = position(&timed, "call.warning");
    assert!(
        timed[..first_warning]
            .iter()
            .filter(|e| e["type"] == "interaction.started")
            .count()
            == 2,
        "both legs started before the warning: {:?}",
        types(&timed)
    );
    let extended = &timed[position(&timed, "call.extended")];
    assert_eq!(extended["data"]["seconds"], 300, "{extended}");
    let updated = &timed[position(&timed, "session.updated")];
    assert_eq!(
        updated["data"]["date_expiry"], extended["data"]["deadline"],
        "the session now ends with the call"
    );
    let closed = &timed[position(&timed, "session.closed")];
    assert_eq!(closed["data"]["closed_reason"], "expired", "{closed}");

    assert_eq!(
        order.len() + consultation.len() + timed.len(),
        run.events.len(),
        "no event of any other session"
    );
}

/// The events of the session created with `unique_name`, in the order they arrived.
fn events_of<'a>(events: &'a [Value], unique_name: &str) -> Vec<&'a Value> {
    let created = events
        .iter()
        .find(|e| e["type"] == "session.created" && e["data"]["unique_name"] == unique_name)
        .unwrap_or_else(|| panic!("no session.created for {unique_name}"));
    let events: Vec<&Value> = events
        .iter()
        .filter(|e| e["session_sid"] == created["session_sid"])
        .collect();
    assert_eq!(events[0]["type"], "session.created", "created first");
    events
}

fn types<'a>(events: &[&'a Value]) -> Vec<&'a str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The types of the events that are not about one leg, in order.
fn others<'a>(events: &[&'a Value]) -> Vec<&'a str> {
    types(events)
        .into_iter()
        .filter(|t| !t.starts_with("interaction."))
        .collect()
}

fn position(events: &[&Value], kind: &str) -> usize {
    events
        .iter()
        .position(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", types(events)))
}

/// Each leg (call) got interaction.started, then interaction.completed, once each, after
/// the session's participants were added; the number of legs.
fn assert_each_leg_started_then_completed(events: &[&Value]) -> usize {
    let after_participants = events
        .iter()
        .rposition(|e| e["type"] == "participant.added")
        .expect("participants added");
    let mut legs: Vec<(&Value, Vec<&str>)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let kind = e["type"].as_str().unwrap();
        if !kind.starts_with("interaction.") {
            continue;
        }
        assert!(i > after_participants, "{:?}", types(events));
        let call = &e["data"]["call_sid"];
        match legs.iter_mut().find(|(c, _)| *c == call) {
            Some((_, seen)) => seen.push(kind),
            None => legs.push((call, vec![kind])),
        }
    }
    for (call, seen) in &legs {
        assert_eq!(
            seen,
            &["interaction.started", "interaction.completed"],
            "{call}"
        );
    }
    legs.len()
}

#[tokio::test]
async fn each_refused_webhook_counts_one_signature_failure() {
    let stack = stack().await;
    let url = format!("{}/twilio/voice/inbound", stack.url);
    let form = [
        ("CallSid", "CA99999999999999999999999999999999"),
        ("From", "+819012345678"),
    ];
    let unsigned = stack.http.post(&url).form(&form).send().await.unwrap();
    let forged = stack
        .http
        .post(&url)
        .header("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (unsigned.status().as_u16(), forged.status().as_u16()),
        (403, 403)
    );
    assert_eq!(stack.metrics.sum(name::SIGNATURE_FAILURES), 2.0);
    let doc = &stack.metrics.documents()[0];
    assert_valid_emf(doc);
    assert_eq!(doc["function_name"], "inbound-call");
}

#[tokio::test]
async fn twilios_error_answers_are_counted_by_class_and_code_retries_included() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201, "{s}");
    let sim = stack.sim();
    let calls = format!("/v1/sessions/{}/calls", sid(&s));
    // A 503 is "not processed": retried, and the call is placed; the 503 still counts.
    sim.fail_next_rest("POST Calls.json", 503, 20503, "Service Unavailable");
    let (status, body) = stack
        .api("POST", &calls, Some(json!({"mode": "bridge"})))
        .await;
    assert_eq!(status, 202, "{body}");
    stack.finish_calls().await;
    // A refused number: one 4xx with its code.
    sim.fail_next_call_to(
        &e164(A),
        400,
        21211,
        "The 'To' number is not a valid phone number.",
    );
    let (status, body) = stack
        .api("POST", &calls, Some(json!({"mode": "bridge"})))
        .await;
    assert_eq!(status, 502, "{body}");

    let m = &stack.metrics;
    assert_eq!(m.sum_where(name::TWILIO_ERRORS, "status_class", "5xx"), 1.0);
    assert_eq!(m.sum_where(name::TWILIO_ERRORS, "status_class", "4xx"), 1.0);
    assert_eq!(m.sum_where(name::TWILIO_ERRORS, "code", "20503"), 1.0);
    assert_eq!(m.sum_where(name::TWILIO_ERRORS, "code", "21211"), 1.0);
    assert_eq!(m.sum(name::TWILIO_ERRORS), 2.0);
    for doc in m
        .documents()
        .iter()
        .filter(|d| declares(d, name::TWILIO_ERRORS))
    {
        assert_valid_emf(doc);
        assert_eq!(doc["function_name"], "start-v-call");
    }
}

/// What the EMF specification requires of each document (see `tsunagu::telemetry::metrics`).
fn assert_valid_emf(doc: &serde_json::Value) {
    let aws = &doc["_aws"];
    assert!(aws["Timestamp"].is_i64(), "Timestamp in ms: {doc}");
    for d in aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics")
    {
        assert_eq!(d["Namespace"], "Tsunagu", "{doc}");
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            for key in set.as_array().expect("a dimension set") {
                assert!(doc[key.as_str().unwrap()].is_string(), "{doc}");
            }
        }
        for metric in d["Metrics"].as_array().expect("Metrics") {
            assert!(doc[metric["Name"].as_str().unwrap()].is_number(), "{doc}");
        }
    }
}
