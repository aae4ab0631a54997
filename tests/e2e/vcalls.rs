//! V字発信 end to end: the platform asks Tsunagu to ring both parties; the simulator plays
//! their phones and Twilio's REST API, conferences included.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tsunagu_tests::simulator::PhoneScript;
use tsunagu_tests::stack::{ACCOUNT_SID, Stack};

async fn session_for_calls(stack: &Stack) -> Value {
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201, "{s}");
    s
}

async fn v_call(stack: &Stack, sid: &str, body: Value) -> (u16, Value) {
    stack
        .api("POST", &format!("/v1/sessions/{sid}/calls"), Some(body))
        .await
}

async fn log(stack: &Stack, sid: &str) -> Vec<Value> {
    let (_, log) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    log["interactions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn bridge_mode_rings_a_then_dials_b_with_the_proxy_as_caller_id() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    let sim = stack.sim();
    sim.set_phone(
        &e164(A),
        PhoneScript::Answer {
            after: Duration::from_secs(4),
            hang_up_after: None,
            digits: vec![],
        },
    );
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(65)),
    );

    let (status, placed) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!(status, 202, "{placed}");
    assert_eq!(placed["mode"], "bridge");
    assert_eq!(
        placed["calls"].as_array().unwrap().len(),
        1,
        "bridge mode places one REST call"
    );
    stack.finish_calls().await;

    let calls = sim.calls();
    let a_leg = calls
        .iter()
        .find(|c| c.direction == "outbound-api")
        .unwrap();
    assert_eq!(
        (a_leg.to.as_str(), a_leg.from.as_str()),
        (e164(A).as_str(), e164(P1).as_str()),
        "A sees the proxy number"
    );
    let b_leg = calls
        .iter()
        .find(|c| c.direction == "outbound-dial")
        .unwrap();
    assert_eq!(
        (b_leg.to.as_str(), b_leg.from.as_str()),
        (e164(B).as_str(), e164(P1).as_str()),
        "B sees the proxy number"
    );
    assert_eq!(b_leg.duration_secs, 65);

    // Issue 12's audit: A's answer costs bridge-twiml a read of the session (open?) and the
    // clock's conditional start — not a second read; the after-dial step costs nothing.
    assert_eq!(
        stack.dynamodb_requests("bridge-twiml"),
        ["GetItem", "UpdateItem"]
    );

    let legs = log(&stack, &sid(&s)).await;
    assert_eq!(legs.len(), 2, "{legs:?}");
    assert!(
        legs.iter()
            .all(|l| l["direction"] == "outbound" && l["status"] == "completed"),
        "both legs are Twilio-outbound: {legs:?}"
    );
    let b = legs
        .iter()
        .find(|l| l["twilio_direction"] == "outbound-dial")
        .unwrap();
    assert_eq!(b["cost"], 32.4);
    let a = legs
        .iter()
        .find(|l| l["twilio_direction"] == "outbound-api")
        .unwrap();
    assert_eq!(
        a["cost"], 32.4,
        "A's leg (65 s of talk after B's 3 s of ringing) is two minutes to a mobile"
    );
    let (_, got) = stack
        .api("GET", &format!("/v1/sessions/{}", sid(&s)), None)
        .await;
    assert_eq!(
        got["total_cost"], 64.8,
        "the session's total is on the session too"
    );
    assert!(
        got["live_call"].is_null(),
        "the bridge call is over, so the session has no live call: {got}"
    );
}

#[tokio::test]
async fn conference_mode_puts_both_in_the_room_and_ends_it_when_one_hangs_up() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    let sim = stack.sim();
    // A hangs up first, after two minutes; B would stay on forever.
    sim.set_phone(
        &e164(A),
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(120)),
    );
    sim.set_phone(
        &e164(B),
        PhoneScript::Answer {
            after: Duration::from_secs(5),
            hang_up_after: None,
            digits: vec![],
        },
    );

    let (status, placed) = v_call(
        &stack,
        &sid(&s),
        json!({"mode": "conference", "call_time_limit": 1800}),
    )
    .await;
    assert_eq!(status, 202, "{placed}");
    assert_eq!(placed["calls"].as_array().unwrap().len(), 2);
    assert_eq!(placed["call_time_limit"], 1800);

    // Both legs are in the room before A hangs up; the room is recorded on the session.
    sim.advance(Duration::from_secs(30)).await;
    let room = sim.conferences().into_iter().next().expect("a conference");
    assert_eq!(room.participants.len(), 2, "{room:?}");
    assert!(
        room.room.starts_with("tsunagu-") && !room.room.contains(&sid(&s)),
        "room name not derived from user data"
    );
    let conference = stack
        .app
        .store
        .get_conference(&sid(&s), &room.sid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        conference.legs.len(),
        2,
        "both participants' CallSids are stored: {conference:?}"
    );

    stack.finish_calls().await;
    let room = sim.conference(&room.sid).unwrap();
    assert_eq!(room.status, "completed");
    assert!(
        sim.calls().iter().all(|c| c.status == "completed"),
        "B was not left alone in silence"
    );
    let legs = log(&stack, &sid(&s)).await;
    assert_eq!(legs.len(), 2);
    // Both legs went through the room, so each started minute costs the mobile rate plus
    // the conference fee: A talked 120 s, B was in the room from its answer at 5 s until
    // A left at 122 s (117 s); two minutes each × (16.2 + 0.3) = 33 yen.
    for l in &legs {
        assert_eq!(
            (
                l["status"].as_str(),
                l["billed_minutes"].as_u64(),
                l["cost"].as_f64()
            ),
            (Some("completed"), Some(2), Some(33.0)),
            "{l}"
        );
    }
    let ended = stack
        .app
        .store
        .get_conference(&sid(&s), &room.sid)
        .await
        .unwrap()
        .unwrap();
    assert!(ended.ended_at.is_some(), "conference-end recorded");
}

/// Twilio's `participant-leave` says itself whether the call is over
/// (`ParticipantCallStatus`, since 2023-10-25): the room is ended for the other without
/// reading the call first. An older callback without it is checked by reading the call.
#[tokio::test]
async fn a_hang_up_in_the_room_is_read_from_the_callback_or_else_from_the_call() {
    for details in [true, false] {
        let stack = stack().await;
        let s = session_for_calls(&stack).await;
        let sim = stack.sim();
        sim.set_participant_leave_details(details);
        sim.set_phone(
            &e164(A),
            PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(120)),
        );
        sim.set_phone(
            &e164(B),
            PhoneScript::Answer {
                after: Duration::from_secs(5),
                hang_up_after: None,
                digits: vec![],
            },
        );
        let (status, _) = v_call(&stack, &sid(&s), json!({"mode": "conference"})).await;
        assert_eq!(status, 202);
        stack.finish_calls().await;

        let b_leg = sim.calls().into_iter().find(|c| c.to == e164(B)).unwrap();
        assert_eq!(
            (b_leg.status.as_str(), b_leg.duration_secs),
            ("completed", 117),
            "B left the room with A (details: {details})"
        );
        let call_reads: Vec<_> = sim
            .rest_requests()
            .into_iter()
            .filter(|(method, path)| method == "GET" && path.contains("/Calls/"))
            .collect();
        let a_leg = sim.calls().into_iter().find(|c| c.to == e164(A)).unwrap();
        // Without the details each leave costs a read: A's, then B's as the room ends.
        let expected: Vec<(String, String)> = if details {
            vec![]
        } else {
            [&a_leg.sid, &b_leg.sid]
                .map(|call| {
                    let path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call}.json");
                    ("GET".to_owned(), path)
                })
                .to_vec()
        };
        assert_eq!(call_reads, expected, "details: {details}");
    }
}

#[tokio::test]
async fn a_busy_first_party_means_the_other_is_never_called() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    stack.sim().set_phone(&e164(A), PhoneScript::Busy);
    let (status, _) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!(status, 202);
    stack.finish_calls().await;
    assert!(
        !stack.sim().calls().iter().any(|c| c.to == e164(B)),
        "B never rang"
    );
    let legs = log(&stack, &sid(&s)).await;
    assert_eq!(legs.len(), 1);
    assert_eq!(
        (legs[0]["status"].as_str(), legs[0]["cost"].as_f64()),
        (Some("busy"), Some(0.0)),
        "the log says why"
    );
}

#[tokio::test]
async fn an_unanswered_second_party_releases_the_first_from_the_room() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    let sim = stack.sim();
    sim.set_phone(&e164(B), PhoneScript::NoAnswer);
    let (status, _) = v_call(&stack, &sid(&s), json!({"mode": "conference"})).await;
    assert_eq!(status, 202);
    stack.finish_calls().await;
    let heard = sim.heard_by(&e164(A));
    assert!(
        heard
            .iter()
            .any(|t| t.contains("電話に出ることができません")),
        "A is told: {heard:?}"
    );
    assert!(sim.calls().iter().all(|c| c.ended_at.is_some()));
    let legs = log(&stack, &sid(&s)).await;
    assert!(legs.iter().any(|l| l["status"] == "no-answer"), "{legs:?}");
}

#[tokio::test]
async fn twilio_errors_are_retried_when_safe_and_surfaced_otherwise() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    let sim = stack.sim();

    // 429 is "not processed": retried, and exactly one call is placed.
    sim.fail_next_rest("POST Calls.json", 429, 20429, "Too Many Requests");
    let (status, placed) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!(status, 202, "{placed}");
    assert_eq!(sim.calls().len(), 1);
    stack.finish_calls().await;
    let placed_so_far = sim.calls().len();

    // A refused number comes back as 502 with Twilio's code; nothing is left ringing.
    sim.fail_next_rest(
        "POST Calls.json",
        400,
        21211,
        &format!("The 'To' number {} is not a valid phone number.", e164(A)),
    );
    let (status, problem) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!(
        (status, problem["twilio_code"].as_u64()),
        (502, Some(21211)),
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("not a valid phone number"), "{detail}");
    // Twilio's text quoted the number in full; the detail (and the log) shows it masked.
    assert!(
        !detail.contains(&e164(A)) && detail.contains("+8190****5678"),
        "{detail}"
    );
    assert_eq!(sim.calls().len(), placed_so_far, "no new call");

    // A 500 on the second leg (its outcome unknown, so not retried): the first is hung up.
    sim.fail_next_call_to(&e164(B), 500, 20500, "Internal Server Error");
    let (status, problem) = v_call(&stack, &sid(&s), json!({"mode": "conference"})).await;
    assert_eq!(status, 502, "{problem}");
    sim.settle().await;
    let first = sim.calls().into_iter().rfind(|c| c.to == e164(A)).unwrap();
    assert!(
        first.ended_at.is_some(),
        "the first leg was cancelled: {first:?}"
    );
    assert_eq!(
        sim.calls()
            .iter()
            .filter(|c| c.to == e164(B) && c.direction == "outbound-api")
            .count(),
        0
    );
    stack.finish_calls().await;

    // The session stays usable: the lock was released and no leg is left live.
    let (status, placed) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!(status, 202, "{placed}");
}

#[tokio::test]
async fn a_v_call_twilio_refuses_leaves_no_live_call_and_the_next_one_starts() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    let sim = stack.sim();
    let live_call = || async {
        let session = stack
            .app
            .store
            .get_session(&sid(&s))
            .await
            .unwrap()
            .unwrap();
        session.live_call
    };

    // The first party's number is refused: no call at all.
    sim.fail_next_call_to(&e164(A), 400, 21211, "Invalid 'To' Phone Number");
    let (status, problem) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!(status, 502, "{problem}");
    assert_eq!(live_call().await, None, "the bridge never was");

    // The second leg of a conference is refused: the first is hung up again.
    sim.fail_next_call_to(&e164(B), 400, 21211, "Invalid 'To' Phone Number");
    let (status, problem) = v_call(&stack, &sid(&s), json!({"mode": "conference"})).await;
    assert_eq!(status, 502, "{problem}");
    stack.finish_calls().await;
    assert_eq!(live_call().await, None, "the conference never was");

    // The session is as it was: a new V-call starts, and its live call is its own.
    sim.set_phone(
        &e164(A),
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(30)),
    );
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(30)),
    );
    let (status, placed) = v_call(
        &stack,
        &sid(&s),
        json!({"mode": "bridge", "call_time_limit": 900}),
    )
    .await;
    assert_eq!(status, 202, "{placed}");
    let live = live_call().await.expect("the new call is live");
    assert_eq!((live.mode.as_str(), live.limit), ("bridge", 900));
    stack.finish_calls().await;
}

#[tokio::test]
async fn refusals_closed_live_and_unknown_sessions_and_idempotent_retries() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;

    let (status, p) = v_call(
        &stack,
        "KC00000000000000000000000000000000",
        json!({"mode": "bridge"}),
    )
    .await;
    assert_eq!((status, p["code"].as_u64()), (404, Some(20404)));
    let (status, p) = v_call(&stack, &sid(&s), json!({"mode": "sms"})).await;
    assert_eq!((status, p["code"].as_u64()), (400, Some(80701)));
    let (status, p) = v_call(
        &stack,
        &sid(&s),
        json!({"mode": "bridge", "first": "070-0000-0000"}),
    )
    .await;
    assert_eq!((status, p["code"].as_u64()), (400, Some(80701)));

    // An idempotent retry returns the first answer without ringing anyone again.
    let post = || {
        stack
            .http
            .post(format!("{}/v1/sessions/{}/calls", stack.url, sid(&s)))
            .header("idempotency-key", "call-1")
            .json(&json!({"mode": "conference"}))
            .send()
    };
    let first: Value = post().await.unwrap().json().await.unwrap();
    let again = post().await.unwrap();
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["calls"], again["calls"]);
    assert_eq!(stack.sim().calls().len(), 2);

    // While that call is live, another is refused.
    let (status, p) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!((status, p["code"].as_u64()), (409, Some(140902)), "{p}");

    stack
        .api("DELETE", &format!("/v1/sessions/{}", sid(&s)), None)
        .await;
    let (status, p) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!((status, p["code"].as_u64()), (409, Some(80607)), "{p}");
}

#[tokio::test]
async fn conference_callbacks_twice_and_out_of_order_are_harmless() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    let url = format!(
        "{}/twilio/voice/conference-status?session={}",
        stack.url,
        sid(&s)
    );
    let send = |event: &str, call: &str, label: &str| {
        let form: Vec<(String, String)> = [
            ("ConferenceSid", "CF55555555555555555555555555555555"),
            ("FriendlyName", "room"),
            ("StatusCallbackEvent", event),
            ("CallSid", call),
            ("ParticipantLabel", label),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let signature = tsunagu::signature::compute(tsunagu_tests::stack::AUTH_TOKEN, &url, &form);
        stack
            .http
            .post(&url)
            .header("x-twilio-signature", signature)
            .form(&form)
            .send()
    };
    let (a, b) = (
        s["participants"][0]["sid"].as_str().unwrap(),
        s["participants"][1]["sid"].as_str().unwrap(),
    );
    // B's join arrives before the conference-start, and A's join twice.
    for (event, call, label) in [
        ("participant-join", "CAbbbb", b),
        ("conference-start", "", ""),
        ("participant-join", "CAaaaa", a),
        ("participant-join", "CAaaaa", a),
    ] {
        assert_eq!(send(event, call, label).await.unwrap().status(), 200);
    }
    let conference = stack
        .app
        .store
        .get_conference(&sid(&s), "CF55555555555555555555555555555555")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conference.legs.len(), 2);
    assert_eq!(conference.legs[a], "CAaaaa");
    let session = stack
        .app
        .store
        .get_session(&sid(&s))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        session.current_conference.as_deref(),
        Some("CF55555555555555555555555555555555")
    );

    assert_eq!(send("conference-end", "", "").await.unwrap().status(), 200);
    // A join replayed after the end does not bring the conference back.
    assert_eq!(
        send("participant-join", "CAcccc", b)
            .await
            .unwrap()
            .status(),
        200
    );
    let conference = stack
        .app
        .store
        .get_conference(&sid(&s), "CF55555555555555555555555555555555")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conference.legs[b], "CAbbbb");
    assert!(conference.ended_at.is_some());
    assert_eq!(
        stack
            .app
            .store
            .get_session(&sid(&s))
            .await
            .unwrap()
            .unwrap()
            .current_conference,
        None
    );
}

#[tokio::test]
async fn the_v_call_webhooks_refuse_bad_signatures() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    for path in [
        "/twilio/voice/bridge",
        "/twilio/voice/conference",
        "/twilio/voice/conference-status",
    ] {
        let url = format!("{}{path}?session={}", stack.url, sid(&s));
        let r = stack
            .http
            .post(&url)
            .header("x-twilio-signature", "d3Jvbmc=")
            .form(&[("CallSid", "CA1")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let r = stack
            .http
            .post(&url)
            .form(&[("CallSid", "CA1")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path} unsigned");
    }
}

#[tokio::test]
async fn a_session_closed_meanwhile_is_not_bridged_or_joined() {
    let stack = stack().await;
    let s = session_for_calls(&stack).await;
    let participant = s["participants"][0]["sid"].as_str().unwrap();
    stack
        .api("DELETE", &format!("/v1/sessions/{}", sid(&s)), None)
        .await;
    for path in ["/twilio/voice/bridge", "/twilio/voice/conference"] {
        let url = format!(
            "{}{path}?session={}&participant={participant}&limit=600",
            stack.url,
            sid(&s)
        );
        let form = vec![(
            "CallSid".to_string(),
            "CA77777777777777777777777777777777".to_string(),
        )];
        let signature = tsunagu::signature::compute(tsunagu_tests::stack::AUTH_TOKEN, &url, &form);
        let r = stack
            .http
            .post(&url)
            .header("x-twilio-signature", signature)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let twiml = r.text().await.unwrap();
        assert!(
            twiml.contains("終了しました") && twiml.contains("<Hangup/>"),
            "{path}: {twiml}"
        );
        assert!(!twiml.contains("<Dial"), "{path}: {twiml}");
    }
}

#[tokio::test]
async fn a_number_added_through_the_api_is_the_accounts_own_caller_id() {
    let stack = stack().await;
    let sim = stack.sim();
    assert!(sim.numbers().is_empty());
    // Exactly what a platform sends (the README's first example), nothing else.
    let (status, added) = stack
        .api("POST", "/v1/numbers", Some(json!({"phone_number": P1})))
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(
        sim.numbers(),
        vec![e164(P1)],
        "provisioned before the API answered"
    );
    let (status, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201, "{s}");

    let (status, placed) = v_call(&stack, &sid(&s), json!({"mode": "bridge"})).await;
    assert_eq!(
        status, 202,
        "Twilio accepted the pool number as caller ID: {placed}"
    );
    let first = sim.calls().into_iter().next().expect("a call was placed");
    assert_eq!((first.from, first.to), (e164(P1), e164(A)));
}
