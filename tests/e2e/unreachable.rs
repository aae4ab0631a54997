//! Nobody is left hanging: when the other party is busy, does not answer or cannot be
//! called, the caller hears why in Japanese and the call ends — for plain masked calls
//! (their `<Dial action>`), for timed masked calls (which wait in the session's room) and,
//! as before, for V字発信.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tsunagu_tests::simulator::{CallInfo, CallerScript, PhoneScript, Simulator};
use tsunagu_tests::stack::Stack;

const BUSY: &str = "お相手の方は、ただいま話し中です。";
const NO_ANSWER: &str = "お相手の方が応答されませんでした。";
const FAILED: &str = "申し訳ございません。お相手の方におつなぎできませんでした。";
const WAIT: &str = "お相手の方をお呼び出ししています。少々お待ちください。";

/// The other party's phone, what the caller is told, and the other leg's final status.
fn outcomes() -> [(PhoneScript, &'static str, &'static str); 3] {
    [
        (PhoneScript::Busy, BUSY, "busy"),
        (PhoneScript::NoAnswer, NO_ANSWER, "no-answer"),
        (PhoneScript::Fail, FAILED, "failed"),
    ]
}

async fn session(stack: &Stack, body: Value) -> Value {
    stack.add_proxy_number(P1).await;
    let (status, s) = stack.api("POST", "/v1/sessions", Some(body)).await;
    assert_eq!(status, 201, "{s}");
    s
}

fn proxy(s: &Value) -> String {
    s["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The leg placed to B after `after` calls had been made.
fn b_leg(sim: &Simulator, after: usize) -> CallInfo {
    sim.calls()
        .into_iter()
        .skip(after)
        .find(|c| c.to == e164(B))
        .expect("B was called")
}

#[tokio::test]
async fn a_plain_masked_call_tells_the_caller_why_the_other_could_not_be_reached() {
    let stack = stack().await;
    let s = session(&stack, session_body(A, B)).await;
    let sim = stack.sim();
    let a = e164(A);
    for (script, why, outcome) in outcomes() {
        sim.set_phone(&e164(B), script);
        let before = sim.calls().len();
        let caller = sim.dial_in(&a, &proxy(&s), CallerScript::default()).await;
        stack.finish_calls().await;

        assert_eq!(
            sim.heard_by(&a).last().map(String::as_str),
            Some(why),
            "{outcome}"
        );
        assert_eq!(b_leg(sim, before).status, outcome);
        let call = sim.call(&caller).unwrap();
        assert_eq!(
            call.status, "completed",
            "{outcome}: the caller's leg ended"
        );
        let told = call.ended_at.unwrap() - call.answered_at.unwrap();
        assert!(
            told < time::Duration::seconds(10),
            "{outcome}: hung up once told, not left on the line ({told})"
        );
    }
    assert_eq!(sim.heard_by(&a), [BUSY, NO_ANSWER, FAILED]);

    // A call that took place just ends: nothing more is said.
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(30)),
    );
    let caller = sim.dial_in(&a, &proxy(&s), CallerScript::default()).await;
    stack.finish_calls().await;
    assert_eq!(sim.heard_by(&a).len(), 3);
    assert_eq!(sim.call(&caller).unwrap().status, "completed");
}

#[tokio::test]
async fn a_timed_masked_call_tells_the_caller_why_and_leaves_nobody_in_the_room() {
    let stack = stack().await;
    // A time limit and a warning: the caller waits in the session's room while B is called.
    let body =
        json!({"call_time_limit": 600, "participants": [{"identifier": A}, {"identifier": B}]});
    let s = session(&stack, body).await;
    let sid = s["sid"].as_str().unwrap();
    let sim = stack.sim();
    let a = e164(A);
    for (script, why, outcome) in outcomes() {
        sim.set_phone(&e164(B), script);
        let before = sim.calls().len();
        let heard_before = sim.heard_by(&a).len();
        let caller = sim.dial_in(&a, &proxy(&s), CallerScript::default()).await;
        stack.finish_calls().await;

        let heard = sim.heard_by(&a)[heard_before..].to_vec();
        assert_eq!(heard.last().map(String::as_str), Some(why), "{outcome}");
        assert!(
            heard[..heard.len() - 1].iter().all(|t| t == WAIT),
            "{outcome}: only the wait message before: {heard:?}"
        );
        assert_eq!(b_leg(sim, before).status, outcome);
        let call = sim.call(&caller).unwrap();
        assert_eq!(
            call.status, "completed",
            "{outcome}: the caller's leg ended"
        );
        let waited = call.ended_at.unwrap() - call.started_at;
        assert!(
            waited < time::Duration::seconds(60),
            "{outcome}: told within the ring time, not hours later ({waited})"
        );
        let room = sim.conferences().pop().unwrap();
        assert_eq!(
            (room.status.as_str(), room.participants.len()),
            ("completed", 0),
            "{outcome}: no one left in the room: {room:?}"
        );
        let session = stack.app.store.get_session(sid).await.unwrap().unwrap();
        assert!(
            session.live_call.is_none() && session.current_conference.is_none(),
            "{outcome}: the session is free for the next call: {session:?}"
        );
    }
}

#[tokio::test]
async fn a_timed_call_whose_caller_hangs_up_while_the_other_rings_stops_the_ringing() {
    let stack = stack().await;
    let body =
        json!({"call_time_limit": 600, "participants": [{"identifier": A}, {"identifier": B}]});
    let s = session(&stack, body).await;
    let sim = stack.sim();
    // B would ring for the whole dial timeout and then, answering late, find nobody.
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(25), Duration::from_secs(600)),
    );
    let caller = CallerScript {
        hang_up_after: Some(Duration::from_secs(10)),
        ..CallerScript::default()
    };
    sim.dial_in(&e164(A), &proxy(&s), caller).await;
    stack.finish_calls().await;
    let b = b_leg(sim, 0);
    assert_eq!(b.status, "canceled", "{b:?}");
    assert_eq!(b.answered_at, None, "B never answered into an empty room");
    assert_eq!((b.ended_at.unwrap() - b.started_at).whole_seconds(), 10);
    assert!(sim.conferences().iter().all(|c| c.participants.is_empty()));
}

#[tokio::test]
async fn v_calls_still_tell_the_first_party_the_other_is_unreachable() {
    for mode in ["bridge", "conference"] {
        let stack = stack().await;
        let s = session(&stack, session_body(A, B)).await;
        let sim = stack.sim();
        sim.set_phone(&e164(B), PhoneScript::Busy);
        let path = format!("/v1/sessions/{}/calls", s["sid"].as_str().unwrap());
        let (status, placed) = stack.api("POST", &path, Some(json!({"mode": mode}))).await;
        assert_eq!(status, 202, "{placed}");
        stack.finish_calls().await;
        let heard = sim.heard_by(&e164(A));
        assert_eq!(
            heard.last().map(String::as_str),
            Some("お相手の方は、ただいま電話に出ることができません。"),
            "{mode}: {heard:?}"
        );
        assert!(
            sim.calls().iter().all(|c| c.ended_at.is_some()),
            "{mode}: every leg ended"
        );
    }
}
