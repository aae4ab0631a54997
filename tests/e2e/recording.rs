//! Recording with consent and per-participant announcements, end to end: what each party
//! hears and when, the recording Twilio makes, and its status callback stored on the call's
//! interaction (once, however often Twilio retries).

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tsunagu::model::DEFAULT_RECORDING_ANNOUNCEMENT;
use tsunagu_tests::receiver::Receiver;
use tsunagu_tests::simulator::{CallerScript, Event, PhoneScript};
use tsunagu_tests::stack::{AUTH_TOKEN, CALLBACK_SIGNING_KEY, Stack};

const ANNOUNCEMENT: &str = "〇〇アプリのお取引についてのお電話です。";
/// The first party's, in the bridge V-calls.
const A_ANNOUNCEMENT: &str = "〇〇アプリからお電話をおつなぎします。";

async fn create(stack: &Stack, body: Value) -> Value {
    let (status, s) = stack.api("POST", "/v1/sessions", Some(body)).await;
    assert_eq!(status, 201, "{s}");
    s
}

/// `body` with `extra`'s fields added (or replaced).
fn with_fields(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Index in the transcript of the first event `matches` accepts.
fn position(stack: &Stack, matches: impl Fn(&Event) -> bool) -> Option<usize> {
    stack
        .sim()
        .transcript()
        .iter()
        .position(|e| matches(&e.event))
}

/// Index in the transcript of the last event `matches` accepts.
fn last_position(stack: &Stack, matches: impl Fn(&Event) -> bool) -> Option<usize> {
    stack
        .sim()
        .transcript()
        .iter()
        .rposition(|e| matches(&e.event))
}

fn said_to(phone: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::Said { to, .. } if to == phone)
}

fn joined_room(phone: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::ConferenceJoined { who, .. } if who == phone)
}

/// A masked call from A to B in a recorded session (with `extra`'s fields) where B has an
/// announcement: B answers after 3 s and talks 40 s; run to its end. The session as
/// created, and A's call.
async fn recorded_masked_call(stack: &Stack, extra: Value) -> (Value, String) {
    stack.add_proxy_number(P1).await;
    let s = create(
        stack,
        with_fields(
            json!({"record": true, "participants": [
                {"identifier": A},
                {"identifier": B, "announcement": ANNOUNCEMENT}]}),
            extra,
        ),
    )
    .await;
    let p = s["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let sim = stack.sim();
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(40)),
    );
    let caller = sim.dial_in(&e164(A), &p, CallerScript::default()).await;
    stack.finish_calls().await;
    (s, caller)
}

/// Places a V-call of session `sid` in `mode` and runs every call to its end.
async fn v_call(stack: &Stack, sid: &str, mode: &str) {
    let (status, placed) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/calls"),
            Some(json!({ "mode": mode })),
        )
        .await;
    assert_eq!(status, 202, "{placed}");
    stack.finish_calls().await;
}

/// A bridge V-call in a session (with `extra`'s fields) where each party has an
/// announcement: A answers after 2 s and stays 60 s, B answers after 3 s and talks 30 s;
/// run to its end. The session as created.
async fn announced_bridge_v_call(stack: &Stack, extra: Value) -> Value {
    stack.add_proxy_number(P1).await;
    let s = create(
        stack,
        with_fields(
            json!({"participants": [
                {"identifier": A, "announcement": A_ANNOUNCEMENT},
                {"identifier": B, "announcement": ANNOUNCEMENT}]}),
            extra,
        ),
    )
    .await;
    let sim = stack.sim();
    sim.set_phone(
        &e164(A),
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(60)),
    );
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(30)),
    );
    v_call(stack, &sid(&s), "bridge").await;
    s
}

/// A signed recording status callback, as Twilio posts it, straight to the stack.
/// The simulator posted `recording_sid`'s status callback, and Tsunagu answered it 200.
fn assert_callback_answered(stack: &Stack, recording_sid: &str) {
    assert!(
        stack.sim().transcript().iter().any(|e| matches!(&e.event,
            Event::RecordingCallback { recording_sid: sid, status: 200, .. } if sid == recording_sid)),
        "the callback of {recording_sid} was answered 200"
    );
}

async fn post_recording_callback(stack: &Stack, session: &str, form: &[(&str, String)]) -> u16 {
    let url = format!(
        "{}/twilio/voice/recording-status?session={session}",
        stack.url
    );
    let params: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let signature = tsunagu::signature::compute(AUTH_TOKEN, &url, &params);
    let answer = stack
        .http
        .post(&url)
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body = answer.text().await.unwrap();
    assert!(body.contains("<Response"), "TwiML-safe answer: {body}");
    status
}

#[tokio::test]
async fn a_recorded_call_is_announced_to_both_and_its_recording_stored_once() {
    let stack = stack().await;
    let (s, parent) = recorded_masked_call(&stack, json!({})).await;
    let sid = sid(&s);
    assert_eq!(s["record"], true);
    assert_eq!(s["recording_announcement"], DEFAULT_RECORDING_ANNOUNCEMENT);
    assert_eq!(s["participants"][1]["announcement"], ANNOUNCEMENT);
    let (a, b) = (e164(A), e164(B));
    let sim = stack.sim();

    // A hears the notice before B is dialled; B hears the announcement, then the notice,
    // both before the bridge, and A hears neither of B's.
    assert_eq!(sim.heard_by(&a), vec![DEFAULT_RECORDING_ANNOUNCEMENT]);
    assert_eq!(
        sim.heard_by(&b),
        vec![ANNOUNCEMENT, DEFAULT_RECORDING_ANNOUNCEMENT]
    );
    let said_to_b = position(&stack, |e| matches!(e, Event::Said { to, .. } if *to == b));
    let rung = position(&stack, |e| matches!(e, Event::Ringing { to } if *to == b));
    let bridged = position(&stack, |e| matches!(e, Event::Bridged { .. }));
    let said_to_a = position(&stack, |e| matches!(e, Event::Said { to, .. } if *to == a));
    assert!(said_to_a < rung, "A is told before B rings");
    assert!(
        said_to_b.is_some() && said_to_b < bridged,
        "B hears it before the bridge"
    );

    // Twilio recorded the call in two channels from the bridge, and posted the recording.
    let recordings = sim.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let recording = &recordings[0];
    assert_eq!(recording.call_sid.as_deref(), Some(parent.as_str()));
    assert_eq!(recording.channels, 2);
    assert!(recording.sid.starts_with("RE") && recording.url.starts_with(&sim.base_url()));
    assert!(recording.duration_secs > 0 && recording.duration_secs < 40);
    assert_callback_answered(&stack, &recording.sid);
    let stored = stack
        .app
        .store
        .get_recording(&sid, &parent)
        .await
        .unwrap()
        .expect("stored on the caller's interaction");
    assert_eq!(
        (
            stored.sid.as_str(),
            stored.duration,
            stored.channels,
            stored.url.as_str()
        ),
        (
            recording.sid.as_str(),
            recording.duration_secs,
            2,
            recording.url.as_str()
        )
    );
    // The call log shows it on the caller's leg; the media stays at Twilio's URL.
    let (_, log) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    let shown = log["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["call_sid"] == parent.as_str())
        .map(|l| l["recording"].clone())
        .expect("the caller's leg is logged");
    assert_eq!(
        shown,
        serde_json::json!({
            "sid": recording.sid, "duration": recording.duration_secs,
            "channels": 2, "url": recording.url,
        }),
        "{log}"
    );

    // Twilio retries the callback, and another one arrives for the same call: still 200,
    // and the first recording stays as stored.
    let form = |rec_sid: &str, duration: u64| {
        vec![
            ("AccountSid", tsunagu_tests::stack::ACCOUNT_SID.to_owned()),
            ("CallSid", parent.clone()),
            ("RecordingSid", rec_sid.to_owned()),
            (
                "RecordingUrl",
                format!("https://api.twilio.com/Recordings/{rec_sid}"),
            ),
            ("RecordingStatus", "completed".to_owned()),
            ("RecordingDuration", duration.to_string()),
            ("RecordingChannels", "2".to_owned()),
        ]
    };
    let retried = form(&recording.sid, recording.duration_secs);
    assert_eq!(post_recording_callback(&stack, &sid, &retried).await, 200);
    let other = form("RE00000000000000000000000000000000", 999);
    assert_eq!(post_recording_callback(&stack, &sid, &other).await, 200);
    let again = stack.app.store.get_recording(&sid, &parent).await.unwrap();
    assert_eq!(again.as_ref(), Some(&stored));
}

#[tokio::test]
async fn a_recorded_timed_call_runs_through_the_recorded_room_announced_to_both_and_stored_once() {
    let stack = stack().await;
    // A call time limit makes the call timed: it runs through the session's room.
    let (s, caller) = recorded_masked_call(&stack, json!({"call_time_limit": 600})).await;
    let sid = sid(&s);
    let (a, b) = (e164(A), e164(B));
    let sim = stack.sim();
    let rooms = sim.conferences();
    assert_eq!(rooms.len(), 1, "through the room, no Dial: {rooms:?}");

    // A hears the notice before joining (then the wait message, alone in the room); B,
    // called into the room, hears the announcement, then the notice, before joining.
    let heard_by_a = sim.heard_by(&a);
    assert_eq!(
        heard_by_a.first().map(String::as_str),
        Some(DEFAULT_RECORDING_ANNOUNCEMENT),
        "{heard_by_a:?}"
    );
    assert!(
        !heard_by_a.iter().any(|t| t == ANNOUNCEMENT),
        "B's announcement is B's alone: {heard_by_a:?}"
    );
    assert!(position(&stack, said_to(&a)) < position(&stack, joined_room(&a)));
    assert_eq!(
        sim.heard_by(&b),
        [ANNOUNCEMENT, DEFAULT_RECORDING_ANNOUNCEMENT]
    );
    let b_joined = position(&stack, joined_room(&b));
    assert!(
        b_joined.is_some() && last_position(&stack, said_to(&b)) < b_joined,
        "B hears both before joining"
    );

    // The room was recorded (one mixed channel), not a Dial.
    let recordings = sim.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let recording = &recordings[0];
    assert_eq!(
        recording.conference_sid.as_deref(),
        Some(rooms[0].sid.as_str())
    );
    assert_eq!(
        (recording.call_sid.as_deref(), recording.channels),
        (None, 1)
    );
    assert!(recording.duration_secs > 0 && recording.duration_secs <= 40);
    assert_callback_answered(&stack, &recording.sid);

    // Stored once, on the caller's leg (the session's first participant in the room), and
    // again as it was after Twilio retries the callback.
    let stored = stack
        .app
        .store
        .get_recording(&sid, &caller)
        .await
        .unwrap()
        .expect("stored on the caller's leg");
    assert_eq!(
        (stored.sid.as_str(), stored.duration, stored.channels),
        (recording.sid.as_str(), recording.duration_secs, 1)
    );
    let retried = [
        ("AccountSid", tsunagu_tests::stack::ACCOUNT_SID.to_owned()),
        ("ConferenceSid", rooms[0].sid.clone()),
        ("RecordingSid", recording.sid.clone()),
        ("RecordingUrl", recording.url.clone()),
        ("RecordingStatus", "completed".to_owned()),
        ("RecordingDuration", recording.duration_secs.to_string()),
        ("RecordingChannels", "1".to_owned()),
    ];
    assert_eq!(post_recording_callback(&stack, &sid, &retried).await, 200);
    let (_, log) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    let legs = log["interactions"].as_array().unwrap();
    assert_eq!(legs.len(), 2, "A's and B's: {log}");
    let with_recording: Vec<&Value> = legs.iter().filter(|l| !l["recording"].is_null()).collect();
    assert_eq!(with_recording.len(), 1, "{log}");
    assert_eq!(with_recording[0]["call_sid"], caller.as_str(), "{log}");
    assert_eq!(
        with_recording[0]["recording"]["sid"],
        recording.sid.as_str()
    );
}

#[tokio::test]
async fn an_unsigned_or_wrongly_signed_recording_status_is_refused_and_stores_nothing() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    // Not recorded, so the only recording callbacks are the test's own.
    let s = create(&stack, session_body(A, B)).await;
    let sid = sid(&s);
    let proxy = s["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let sim = stack.sim();
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(20)),
    );
    let parent = sim.dial_in(&e164(A), &proxy, CallerScript::default()).await;
    stack.finish_calls().await;
    let recording_sid = "RE12121212121212121212121212121212";
    let form = [
        ("AccountSid", tsunagu_tests::stack::ACCOUNT_SID.to_owned()),
        ("CallSid", parent.clone()),
        ("RecordingSid", recording_sid.to_owned()),
        (
            "RecordingUrl",
            format!("https://api.twilio.com/Recordings/{recording_sid}"),
        ),
        ("RecordingStatus", "completed".to_owned()),
        ("RecordingDuration", "18".to_owned()),
        ("RecordingChannels", "2".to_owned()),
    ];
    let params: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let url = format!("{}/twilio/voice/recording-status?session={sid}", stack.url);
    // Signed with another token, and signed right but for another session's URL.
    let other_token = tsunagu::signature::compute("not-the-auth-token-000000000000", &url, &params);
    let other_session = tsunagu::signature::compute(
        AUTH_TOKEN,
        &url.replace(&sid, "KC00000000000000000000000000000000"),
        &params,
    );
    let before = item_count(&stack).await;
    for signature in [
        None,
        Some("bm90IGEgc2lnbmF0dXJl"),
        Some(other_token.as_str()),
        Some(other_session.as_str()),
    ] {
        let mut request = stack.http.post(&url).form(&params);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 403, "signature {signature:?}");
    }
    assert_eq!(
        stack.app.store.get_recording(&sid, &parent).await.unwrap(),
        None
    );
    assert_eq!(
        item_count(&stack).await,
        before,
        "refused callbacks wrote nothing"
    );

    // The same callback, signed, is stored: what was refused would have been.
    assert_eq!(post_recording_callback(&stack, &sid, &form).await, 200);
    let stored = stack.app.store.get_recording(&sid, &parent).await.unwrap();
    assert_eq!(stored.map(|r| r.sid), Some(recording_sid.to_owned()));
}

#[tokio::test]
async fn each_party_of_a_recorded_v_call_hears_their_announcement_and_the_room_is_recorded() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let audio = "https://cdn.example.jp/announcements/tsunagu.mp3";
    let s = create(
        &stack,
        json!({"record": true, "recording_announcement": "録音します。",
               "participants": [
                   {"identifier": A, "announcement": ANNOUNCEMENT},
                   {"identifier": B, "announcement_url": audio}]}),
    )
    .await;
    let sid = s["sid"].as_str().unwrap().to_owned();
    assert_eq!(s["participants"][1]["announcement_url"], audio);
    let (a, b) = (e164(A), e164(B));
    let sim = stack.sim();
    sim.set_phone(
        &a,
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(90)),
    );
    sim.set_phone(
        &b,
        PhoneScript::talks(Duration::from_secs(4), Duration::from_secs(600)),
    );
    v_call(&stack, &sid, "conference").await;

    assert_eq!(sim.heard_by(&a)[..2], [ANNOUNCEMENT, "録音します。"]);
    assert_eq!(
        sim.heard_by(&b).first().map(String::as_str),
        Some("録音します。")
    );
    let played_to_b = position(
        &stack,
        |e| matches!(e, Event::Played { to, url } if *to == b && url == audio),
    );
    let b_joined = position(
        &stack,
        |e| matches!(e, Event::ConferenceJoined { who, .. } if *who == b),
    );
    assert!(
        played_to_b.is_some() && played_to_b < b_joined,
        "B hears the audio, then joins"
    );

    // The room's recording (one channel) names the conference; it is kept on A's leg.
    let recordings = sim.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    assert!(recordings[0].conference_sid.is_some() && recordings[0].call_sid.is_none());
    assert_eq!(recordings[0].channels, 1);
    let a_leg = sim
        .calls()
        .into_iter()
        .find(|c| c.to == a)
        .expect("A was called")
        .sid;
    let stored = stack
        .app
        .store
        .get_recording(&sid, &a_leg)
        .await
        .unwrap()
        .expect("stored on A's leg");
    assert_eq!(stored.sid, recordings[0].sid);
    assert_eq!(stored.channels, 1);
}

#[tokio::test]
async fn bad_announcements_are_refused_and_change_nothing() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let before = item_count(&stack).await;
    let with = |extra: Value| {
        let mut b = json!({"identifier": B});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        json!({"participants": [{"identifier": A}, b]})
    };
    let cases = [
        (
            with(json!({"announcement": "あ".repeat(201)})),
            "participants[1].announcement",
        ),
        (
            with(json!({"announcement": ANNOUNCEMENT, "announcement_url": "https://x.jp/a.mp3"})),
            "not both",
        ),
        (
            with(json!({"announcement_url": "http://x.jp/a.mp3"})),
            "https",
        ),
        (
            json!({"record": false, "recording_announcement": "録音します。",
                   "participants": [{"identifier": A}, {"identifier": B}]}),
            "record",
        ),
    ];
    for (body, needle) in cases {
        let (status, problem) = stack.api("POST", "/v1/sessions", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["code"], 80701, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{problem}"
        );
    }
    assert_eq!(item_count(&stack).await, before, "nothing was written");
}

#[tokio::test]
async fn a_bridge_v_call_announces_to_the_first_before_dialling_and_to_the_other_on_answering() {
    let stack = stack().await;
    let s = announced_bridge_v_call(&stack, json!({})).await;
    assert!(
        s.get("record").is_none(),
        "a session that does not record shows no record: {s}"
    );
    let (a, b) = (e164(A), e164(B));
    let sim = stack.sim();

    // No recording notice without `record`, only each party's own announcement.
    assert_eq!(sim.heard_by(&a), [A_ANNOUNCEMENT]);
    assert_eq!(sim.heard_by(&b), [ANNOUNCEMENT]);
    let told_a = position(&stack, |e| matches!(e, Event::Said { to, .. } if *to == a));
    let b_rings = position(&stack, |e| matches!(e, Event::Ringing { to } if *to == b));
    let told_b = position(&stack, |e| matches!(e, Event::Said { to, .. } if *to == b));
    let bridged = position(&stack, |e| matches!(e, Event::Bridged { .. }));
    assert!(told_a < b_rings && told_b.is_some() && told_b < bridged);
    assert!(sim.recordings().is_empty(), "nothing recorded");
}

#[tokio::test]
async fn a_recorded_bridge_v_call_is_announced_to_each_and_its_recording_reaches_the_platform() {
    let receiver = Receiver::start(CALLBACK_SIGNING_KEY).await;
    let stack = stack_sending_to(&receiver, &[]).await;
    let s = announced_bridge_v_call(&stack, json!({"record": true})).await;
    let sid = sid(&s);
    let (a, b) = (e164(A), e164(B));
    let sim = stack.sim();

    // Each hears their announcement, then the notice: A before B is dialled, B on
    // answering, before the bridge.
    assert_eq!(
        sim.heard_by(&a),
        [A_ANNOUNCEMENT, DEFAULT_RECORDING_ANNOUNCEMENT]
    );
    assert_eq!(
        sim.heard_by(&b),
        [ANNOUNCEMENT, DEFAULT_RECORDING_ANNOUNCEMENT]
    );
    let b_rings = position(&stack, |e| matches!(e, Event::Ringing { to } if *to == b));
    let bridged = position(&stack, |e| matches!(e, Event::Bridged { .. }));
    assert!(b_rings.is_some() && last_position(&stack, said_to(&a)) < b_rings);
    assert!(bridged.is_some() && last_position(&stack, said_to(&b)) < bridged);

    // The Dial on A's call recorded both, one channel each.
    let a_leg = sim
        .calls()
        .into_iter()
        .find(|c| c.to == a)
        .expect("A was called")
        .sid;
    let recordings = sim.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let recording = &recordings[0];
    assert_eq!(recording.call_sid.as_deref(), Some(a_leg.as_str()));
    assert_eq!(recording.channels, 2);
    assert!(recording.duration_secs > 0 && recording.duration_secs <= 30);
    let stored = stack
        .app
        .store
        .get_recording(&sid, &a_leg)
        .await
        .unwrap()
        .expect("stored on A's leg");
    assert_eq!(
        (stored.sid.as_str(), stored.duration, stored.channels),
        (recording.sid.as_str(), recording.duration_secs, 2)
    );

    // And the platform is told, signed, once.
    let told = receiver
        .wait_until(Duration::from_secs(60), |r| {
            r.iter().any(|r| r.event["type"] == "recording.completed")
        })
        .await;
    let events = receiver.accepted();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(told, "{types:?}");
    assert!(receiver.received().iter().all(|r| r.signature_valid));
    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "recording.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{types:?}");
    let event = completed[0];
    assert_eq!(event["session_sid"], sid.as_str());
    assert_eq!(
        (
            &event["data"]["recording_sid"],
            &event["data"]["call_sid"],
            &event["data"]["channels"],
            &event["data"]["duration"],
            &event["data"]["url"],
        ),
        (
            &json!(recording.sid),
            &json!(a_leg),
            &json!(2),
            &json!(recording.duration_secs),
            &json!(recording.url),
        )
    );
    // After A's leg started, as the session lived it.
    let a_started = events
        .iter()
        .position(|e| e["type"] == "interaction.started" && e["data"]["call_sid"] == a_leg.as_str())
        .expect("A's leg started");
    let recorded = events
        .iter()
        .position(|e| e["type"] == "recording.completed")
        .unwrap();
    assert!(a_started < recorded, "{types:?}");
    assert_eq!(
        event["data"]["interaction_sid"], events[a_started]["data"]["sid"],
        "on A's leg"
    );
}
