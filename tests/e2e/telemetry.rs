//! Operations: the demo's scenario (`make demo`, tests/src/bin/tsunagu-demo.rs) run as is,
//! and the EMF documents its functions wrote compared with its own totals.

use serde_json::json;
use tsunagu::telemetry::metrics::{declares, name};

use crate::common::{A, B, P1, e164, session_body, sid, stack};

#[allow(dead_code)] // its `main` is the binary's, unused here
#[path = "../src/bin/tsunagu-demo.rs"]
mod demo;

#[tokio::test]
async fn the_demos_metrics_match_its_own_totals() {
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
