//! A slow Twilio: every REST answer takes 6 s of real time, longer than a webhook may wait.
//! Each webhook that calls Twilio's REST API while Twilio waits on it still answers with
//! TwiML well within Twilio's 15 s and Lambda's 10 s; the API stays under Lambda's 10 s.
//! These scenarios cost real seconds, so there are few of them.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};
use tsunagu_tests::simulator::{CallerScript, Event, PhoneScript, Simulator, WebhookTiming};
use tsunagu_tests::stack::Options;

/// Longer than any REST attempt a webhook or the API may wait for.
const SLOW_TWILIO: Duration = Duration::from_secs(6);
/// What every webhook must meet, measured around the request by the simulator.
const WEBHOOK_WITHIN: Duration = Duration::from_secs(8);
/// Lambda's timeout for the API functions (template.yaml).
const LAMBDA_TIMEOUT: Duration = Duration::from_secs(10);
/// A webhook that took at least this long really waited on the slow party.
const WAITED: Duration = Duration::from_secs(3);

fn no_sweep() -> Options {
    Options {
        sweep_every: None,
        ..Options::default()
    }
}

/// The webhooks made since `mark`: each answered 200 within `WEBHOOK_WITHIN`, and nothing
/// Twilio received was unusable as TwiML.
fn answered_in_time(sim: &Simulator, mark: usize) -> Vec<WebhookTiming> {
    let made = sim.webhook_timings().split_off(mark);
    for w in &made {
        assert_eq!(w.status, 200, "a webhook answered with an error: {w:?}");
        assert!(w.took < WEBHOOK_WITHIN, "a webhook was too slow: {w:?}");
    }
    let errors: Vec<_> = sim
        .transcript()
        .into_iter()
        .filter(|e| matches!(e.event, Event::ApplicationError { .. }))
        .collect();
    assert!(errors.is_empty(), "unusable answers: {errors:?}");
    made
}

/// The slowest webhook to `path` among `made`, which must have waited on the slow party (so
/// the scenario really took the slow path).
fn waited<'a>(made: &'a [WebhookTiming], path: &str) -> &'a WebhookTiming {
    let slowest = made
        .iter()
        .filter(|w| w.url.contains(path))
        .max_by_key(|w| w.took)
        .unwrap_or_else(|| panic!("no webhook to {path}: {made:?}"));
    assert!(slowest.took >= WAITED, "{path} never waited: {made:?}");
    slowest
}

/// A timed masked call: Tsunagu must call B into the room, but both the platform's
/// intercept URL and Twilio are slow. The caller hears the apology, in time.
#[tokio::test]
async fn a_timed_inbound_call_gets_the_apology_in_time() {
    // An intercept endpoint that would let the call through, after 6 s.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let intercept = format!("http://{}/intercept", listener.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/intercept",
        axum::routing::post(|| async {
            tokio::time::sleep(SLOW_TWILIO).await;
            axum::http::StatusCode::OK
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let stack = stack_with(Options {
        env: vec![("INTERCEPT_CALLBACK_URL".into(), intercept)],
        ..no_sweep()
    })
    .await;
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(json!({"call_time_limit": 600, "participants": [{"identifier": A}, {"identifier": B}]})),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let proxy = s["participants"][0]["proxy_identifier"].as_str().unwrap();

    let sim = stack.sim();
    sim.set_rest_latency(SLOW_TWILIO);
    let mark = sim.webhook_timings().len();
    sim.dial_in(&e164(A), proxy, CallerScript::default()).await;
    let made = answered_in_time(sim, mark);
    waited(&made, "/twilio/voice/inbound");
    let heard = sim.heard_by(&e164(A));
    assert!(
        heard.contains(&stack.app.config.prompts.apology),
        "the caller is told: {heard:?}"
    );
}

/// The deciding party presses 1 while Twilio is slow: the extension holds and they are back
/// in the call in time; then the platform closes the session, with both legs to end.
#[tokio::test]
async fn the_extension_answer_and_a_close_with_two_live_legs_stay_in_time() {
    let stack = stack_with(no_sweep()).await;
    let t0 = stack.clock.now();
    let expiry = (t0 + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let a = PhoneScript::Answer {
        after: Duration::from_secs(2),
        hang_up_after: None,
        digits: vec![(Duration::from_secs(2), '1')],
    };
    let b = PhoneScript::Answer {
        after: Duration::from_secs(5),
        hang_up_after: None,
        digits: vec![],
    };
    let session = json!({
        "date_expiry": expiry, "call_time_limit": 600,
        "extension": {"seconds": 300, "max_count": 1},
        "participants": [{"identifier": A}, {"identifier": B}]
    });
    let s = conference_v_call(&stack, session, a, b).await;
    let sim = stack.sim();
    // The warning at 7:00, given while Twilio is still quick.
    sim.advance(Duration::from_secs(420)).await;
    let report = stack.sweep_at(stack.clock.now()).await;
    assert_eq!(report["warned"], 1, "{report}");

    sim.set_rest_latency(SLOW_TWILIO);
    let mark = sim.webhook_timings().len();
    sim.advance(Duration::from_secs(10)).await;
    let made = answered_in_time(sim, mark);
    // Leaving the room for the prompt needs no REST read: participant-leave says itself
    // whether A hung up (ParticipantCallStatus), so conference-status doesn't wait on Twilio.
    assert!(
        made.iter()
            .filter(|w| w.url.contains("/twilio/voice/conference-status"))
            .all(|w| w.took < WAITED),
        "{made:?}"
    );
    waited(&made, "/twilio/voice/extension/answer");
    let heard = sim.heard_by(&e164(A));
    assert!(
        heard.iter().any(|t| t.contains("5分延長しました")),
        "{heard:?}"
    );
    let extended = stack
        .app
        .store
        .get_session(&sid(&s))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(extended.extension_count, 1);
    let room = sim.conferences().pop().unwrap();
    assert!(
        room.participants.iter().any(|p| p.phone == e164(A)),
        "A is back in the room: {room:?}"
    );

    // The API's REST attempts share one deadline: two legs to end cannot take 2 × 5 s.
    let started = Instant::now();
    let closed = stack
        .http
        .delete(format!("{}/v1/sessions/{}", stack.url, sid(&s)))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(closed.status(), 200);
    assert!(took < LAMBDA_TIMEOUT, "the close took {took:?}");
    assert!(took >= WAITED, "the close never waited on Twilio: {took:?}");
    let body: Value = closed.json().await.unwrap();
    assert_eq!(body["status"], "closed", "{body}");
}

/// B never answers a conference V-call while Twilio is slow: the status callback that
/// releases A from the room must ask Twilio, and still answers in time.
#[tokio::test]
async fn an_unanswered_party_is_reported_in_time() {
    let stack = stack_with(no_sweep()).await;
    let a = PhoneScript::Answer {
        after: Duration::from_secs(2),
        hang_up_after: None,
        digits: vec![],
    };
    conference_v_call(&stack, session_body(A, B), a, PhoneScript::NoAnswer).await;
    let sim = stack.sim();
    sim.set_rest_latency(SLOW_TWILIO);
    let mark = sim.webhook_timings().len();
    sim.advance(Duration::from_secs(45)).await;
    let made = answered_in_time(sim, mark);
    // B's final callback makes Tsunagu tell A why, through Twilio.
    waited(&made, "/twilio/voice/status");
    assert!(
        sim.calls()
            .iter()
            .any(|c| c.to == e164(B) && c.status == "no-answer"),
        "{:?}",
        sim.calls()
    );
}
