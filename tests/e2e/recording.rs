//! Recording with consent and per-participant announcements, end to end: what each party
//! hears and when, the recording Twilio makes, and its status callback stored on the call's
//! interaction (once, however often Twilio retries).

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tsunagu::model::DEFAULT_RECORDING_ANNOUNCEMENT;
use tsunagu_tests::simulator::{CallerScript, Event, PhoneScript};
use tsunagu_tests::stack::{AUTH_TOKEN, Stack};

const ANNOUNCEMENT: &str = "〇〇アプリのお取引についてのお電話です。";

async fn create(stack: &Stack, body: Value) -> Value {
    let (status, s) = stack.api("POST", "/v1/sessions", Some(body)).await;
    assert_eq!(status, 201, "{s}");
    s
}

/// Index in the transcript of the first event `matches` accepts.
fn position(stack: &Stack, matches: impl Fn(&Event) -> bool) -> Option<usize> {
    stack
        .sim()
        .transcript()
        .iter()
        .position(|e| matches(&e.event))
}

/// A signed recording status callback, as Twilio posts it, straight to the stack.
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
    stack.add_proxy_number(P1).await;
    let s = create(
        &stack,
        json!({"record": true, "participants": [
            {"identifier": A},
            {"identifier": B, "announcement": ANNOUNCEMENT}]}),
    )
    .await;
    let sid = s["sid"].as_str().unwrap().to_owned();
    assert_eq!(s["record"], true);
    assert_eq!(s["recording_announcement"], DEFAULT_RECORDING_ANNOUNCEMENT);
    assert_eq!(s["participants"][1]["announcement"], ANNOUNCEMENT);
    let (a, b) = (e164(A), e164(B));
    let p = s["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let sim = stack.sim();
    sim.set_phone(
        &b,
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(40)),
    );
    let parent = sim.dial_in(&a, &p, CallerScript::default()).await;
    stack.finish_calls().await;

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
    assert!(
        sim.transcript().iter().any(|e| matches!(&e.event,
            Event::RecordingCallback { recording_sid, status: 200, .. } if *recording_sid == recording.sid)),
        "the callback was answered 200"
    );
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
    let (status, placed) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/calls"),
            Some(json!({"mode": "conference"})),
        )
        .await;
    assert_eq!(status, 202, "{placed}");
    stack.finish_calls().await;

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
    stack.add_proxy_number(P1).await;
    let s = create(
        &stack,
        json!({"participants": [
            {"identifier": A, "announcement": "〇〇アプリからお電話をおつなぎします。"},
            {"identifier": B, "announcement": ANNOUNCEMENT}]}),
    )
    .await;
    let sid = s["sid"].as_str().unwrap().to_owned();
    assert!(
        s.get("record").is_none(),
        "a session that does not record shows no record: {s}"
    );
    let (a, b) = (e164(A), e164(B));
    let sim = stack.sim();
    sim.set_phone(
        &a,
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(60)),
    );
    sim.set_phone(
        &b,
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(30)),
    );
    let (status, placed) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/calls"),
            Some(json!({"mode": "bridge"})),
        )
        .await;
    assert_eq!(status, 202, "{placed}");
    stack.finish_calls().await;

    // No recording notice without `record`, only each party's own announcement.
    assert_eq!(sim.heard_by(&a), ["〇〇アプリからお電話をおつなぎします。"]);
    assert_eq!(sim.heard_by(&b), [ANNOUNCEMENT]);
    let told_a = position(&stack, |e| matches!(e, Event::Said { to, .. } if *to == a));
    let b_rings = position(&stack, |e| matches!(e, Event::Ringing { to } if *to == b));
    let told_b = position(&stack, |e| matches!(e, Event::Said { to, .. } if *to == b));
    let bridged = position(&stack, |e| matches!(e, Event::Bridged { .. }));
    assert!(told_a < b_rings && told_b.is_some() && told_b < bridged);
    assert!(sim.recordings().is_empty(), "nothing recorded");
}
