//! The platform's events end to end: the table's stream → publish-events → the FIFO queue →
//! deliver-events → a receiver that checks every signature (tests/src/receiver.rs), with
//! Lambda's event source mappings played by the local stack (tests/src/event_sources.rs).
//! Waits are on what the receiver or the queue shows, bounded in real time.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tsunagu::delivery::DELIVERY_TIMEOUT;
use tsunagu_tests::iam::Denial;
use tsunagu_tests::receiver::Receiver;
use tsunagu_tests::simulator::{CallerScript, PhoneScript};
use tsunagu_tests::stack::{CALLBACK_SIGNING_KEY, Options, REGION};
use tsunagu_tests::template;

/// Generous: the mappings poll four times a second and retries back off from one second.
const WITHIN: Duration = Duration::from_secs(60);

/// Polls `check` until it gives a value or `WITHIN` has passed: for conditions only the
/// emulator shows (a queue's contents, a denial), which notify nobody.
async fn eventually<T, F, Fut>(mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut every = tokio::time::interval(Duration::from_millis(200));
    while tokio::time::Instant::now() < deadline {
        every.tick().await;
        if let Some(found) = check().await {
            return Some(found);
        }
    }
    None
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn has(events: &[Value], kind: &str) -> bool {
    events.iter().any(|e| e["type"] == kind)
}

/// Where `kind` first appears, for order checks.
fn position(events: &[Value], kind: &str) -> usize {
    events
        .iter()
        .position(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", types(events)))
}

fn phone(after: u64, digits: &[(u64, char)]) -> PhoneScript {
    PhoneScript::Answer {
        after: Duration::from_secs(after),
        hang_up_after: None,
        digits: digits
            .iter()
            .map(|(t, d)| (Duration::from_secs(*t), *d))
            .collect(),
    }
}

#[tokio::test]
async fn a_whole_timed_session_reaches_the_platform_signed_and_in_order() {
    let receiver = Receiver::start(CALLBACK_SIGNING_KEY).await;
    let stack = stack_sending_to(&receiver, &[]).await;
    // Ten minutes with one five-minute extension: A presses 1 at the warning (7:00), the
    // call ends at 15:00 with the session, which the sweep closes as expired.
    let t0 = stack.clock.now();
    let expiry = (t0 + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let s = conference_v_call(
        &stack,
        json!({
            "date_expiry": expiry, "call_time_limit": 600,
            "extension": {"seconds": 300, "max_count": 1},
            "participants": [{"identifier": A}, {"identifier": B}]
        }),
        phone(2, &[(2, '1')]),
        phone(5, &[]),
    )
    .await;
    let session_sid = sid(&s);
    stack.finish_calls().await;
    stack.sim().advance(Duration::from_secs(120)).await;

    let closed = receiver
        .wait_until(WITHIN, |r| {
            r.iter().any(|r| r.event["type"] == "session.closed")
                && r.iter()
                    .filter(|r| r.event["type"] == "interaction.completed")
                    .count()
                    == 2
        })
        .await;
    let got = receiver.accepted();
    assert!(
        closed,
        "no session.closed or not both legs: {:?}",
        types(&got)
    );

    for r in receiver.received() {
        assert!(r.signature_valid, "unsigned or badly signed: {}", r.body);
    }
    let ids: std::collections::HashSet<&str> =
        got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "each id once");
    for e in &got {
        assert_eq!(e["session_sid"], session_sid.as_str(), "{e}");
        assert!(e["id"].as_str().unwrap().starts_with("EV"), "{e}");
        assert!(tsunagu::clock::parse_iso(e["created"].as_str().unwrap()).is_some());
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(
            keys.len(),
            5,
            "exactly id, type, created, session_sid, data: {e}"
        );
    }
    for kind in [
        "session.created",
        "participant.added",
        "interaction.started",
        "call.warning",
        "call.extended",
        "session.updated",
        "interaction.completed",
        "session.closed",
    ] {
        assert!(has(&got, kind), "{kind} missing from {:?}", types(&got));
    }
    // In the order the session lived it (one FIFO group per session). At the deadline the
    // sweep closes the session as it ends the call, so the legs' completions (written from
    // Twilio's final callbacks) may come either side of session.closed.
    let order = [
        "session.created",
        "participant.added",
        "interaction.started",
        "call.warning",
        "call.extended",
        "interaction.completed",
    ];
    for pair in order
        .windows(2)
        .chain([["call.extended", "session.closed"].as_slice()])
    {
        assert!(
            position(&got, pair[0]) < position(&got, pair[1]),
            "{} before {}: {:?}",
            pair[0],
            pair[1],
            types(&got)
        );
    }
    let closed = &got[position(&got, "session.closed")];
    assert_eq!(closed["data"]["closed_reason"], "expired");
    let extended = &got[position(&got, "call.extended")];
    assert_eq!(extended["data"]["seconds"], 300);
    let completed: Vec<&Value> = got
        .iter()
        .filter(|e| e["type"] == "interaction.completed")
        .collect();
    assert_eq!(completed.len(), 2, "A's leg and B's");
    for c in completed {
        assert!(c["data"]["duration"].as_u64().unwrap() > 0, "{c}");
        assert!(c["data"]["billed_minutes"].as_u64().unwrap() > 0, "{c}");
        assert!(
            c["data"]["cost"].is_string() || c["data"]["cost"].is_number(),
            "{c}"
        );
    }
    assert_eq!(stack.take_denials(), Vec::<Denial>::new());
}

#[tokio::test]
async fn participants_a_recording_a_reopening_and_a_closing_update_arrive_in_order() {
    let receiver = Receiver::start(CALLBACK_SIGNING_KEY).await;
    let stack = stack_sending_to(&receiver, &[]).await;
    stack.add_proxy_number(P1).await;
    // Proxy's flow: a session first, its participants after; every call recorded.
    let (code, s) = stack
        .api("POST", "/v1/sessions", Some(json!({"record": true})))
        .await;
    assert_eq!(code, 201, "{s}");
    let session_sid = sid(&s);
    let mut participants = Vec::new();
    for who in [A, B] {
        let (code, p) = stack
            .api(
                "POST",
                &format!("/v1/sessions/{session_sid}/participants"),
                Some(json!({"identifier": who})),
            )
            .await;
        assert_eq!(code, 201, "{p}");
        participants.push(p);
    }
    let proxy = participants[0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let sim = stack.sim();
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(20)),
    );
    sim.dial_in(&e164(A), &proxy, CallerScript::default()).await;
    stack.finish_calls().await;
    let b_sid = participants[1]["sid"].as_str().unwrap();
    let (code, _) = stack
        .api(
            "DELETE",
            &format!("/v1/sessions/{session_sid}/participants/{b_sid}"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let (code, _) = stack
        .api("DELETE", &format!("/v1/sessions/{session_sid}"), None)
        .await;
    assert_eq!(code, 200);
    let (code, reopened) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{session_sid}"),
            Some(json!({"status": "in-progress"})),
        )
        .await;
    assert_eq!(code, 200, "{reopened}");
    // Closed again, this time through the update route rather than DELETE.
    let (code, closed) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{session_sid}"),
            Some(json!({"status": "closed"})),
        )
        .await;
    assert_eq!(
        (code, &closed["status"]),
        (200, &json!("closed")),
        "{closed}"
    );

    let closings = |r: &[tsunagu_tests::receiver::Received]| {
        r.iter()
            .filter(|r| r.answered == 200 && r.event["type"] == "session.closed")
            .count()
    };
    let arrived = receiver
        .wait_until(WITHIN, |r| {
            closings(r) == 2 && r.iter().any(|r| r.event["type"] == "recording.completed")
        })
        .await;
    let got = receiver.accepted();
    assert!(arrived, "{:?}", types(&got));
    assert!(receiver.received().iter().all(|r| r.signature_valid));
    let order = [
        "session.created",
        "participant.added",
        "interaction.started",
        "participant.removed",
        "session.closed",
        "session.updated",
    ];
    for pair in order.windows(2) {
        assert!(
            position(&got, pair[0]) < position(&got, pair[1]),
            "{} before {}: {:?}",
            pair[0],
            pair[1],
            types(&got)
        );
    }
    let added: Vec<&Value> = got
        .iter()
        .filter(|e| e["type"] == "participant.added")
        .collect();
    assert_eq!(added.len(), 2, "{:?}", types(&got));
    // The second session.closed, after the reopening, is the update's: signed, with why.
    let last_closed = got
        .iter()
        .rposition(|e| e["type"] == "session.closed")
        .unwrap();
    assert!(
        position(&got, "session.updated") < last_closed,
        "{:?}",
        types(&got)
    );
    assert_eq!(
        got[last_closed]["data"]["closed_reason"], "closed-by-api",
        "{}",
        got[last_closed]
    );
    let removed = &got[position(&got, "participant.removed")];
    assert_eq!(removed["data"]["sid"], b_sid, "{removed}");
    let recording = &got[position(&got, "recording.completed")];
    assert!(
        recording["data"]["recording_sid"]
            .as_str()
            .is_some_and(|s| s.starts_with("RE")),
        "{recording}"
    );
    assert_eq!(recording["data"]["channels"], 2, "{recording}");
    assert!(
        position(&got, "interaction.started") < position(&got, "recording.completed"),
        "{:?}",
        types(&got)
    );
    assert_eq!(
        got.iter()
            .filter(|e| e["type"] == "interaction.completed")
            .count(),
        2,
        "the caller's leg and the dialled one: {:?}",
        types(&got)
    );
    assert_eq!(stack.take_denials(), Vec::<Denial>::new());
}

/// A session created on a stack sending to `receiver`; waits until its three events
/// (session.created, both participant.added) were each answered 200, and gives every
/// request that arrived.
async fn a_session_created_and_its_three_events_taken(
    receiver: &Receiver,
) -> Vec<tsunagu_tests::receiver::Received> {
    let stack = stack_sending_to(receiver, &[]).await;
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201, "{s}");

    let all_three = receiver
        .wait_until(WITHIN, |r| {
            r.iter()
                .filter(|r| r.answered == 200)
                .map(|r| r.event["id"].clone())
                .collect::<std::collections::HashSet<_>>()
                .len()
                >= 3
        })
        .await;
    let received = receiver.received();
    assert!(all_three, "{received:?}");
    received
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_each_event_once_after_de_duplication() {
    let receiver = Receiver::start(CALLBACK_SIGNING_KEY).await;
    receiver.answer_next(&[500, 500]);
    let received = a_session_created_and_its_three_events_taken(&receiver).await;
    // The first event was refused twice, then taken; nothing overtook it meanwhile.
    let first = &received[0].event;
    assert_eq!(first["type"], "session.created");
    let answers: Vec<u16> = received
        .iter()
        .filter(|r| r.event["id"] == first["id"])
        .map(|r| r.answered)
        .collect();
    assert_eq!(
        answers,
        [500, 500, 200],
        "the same id each time: {:?}",
        received
            .iter()
            .map(|r| (r.event["type"].clone(), r.answered))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        received[..3].iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    // Exponential backoff through the visibility timeout: the stack's
    // EVENT_RETRY_BASE_SECONDS is 1, so the event comes back after at least 1 s, then 2 s.
    // Only lower bounds: a loaded machine makes retries later, never earlier.
    let gaps: Vec<Duration> = received[..3]
        .windows(2)
        .map(|w| w[1].arrived - w[0].arrived)
        .collect();
    assert!(
        gaps[0] >= Duration::from_secs(1) - CLOCK_SLACK,
        "first retry after {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_secs(2) - CLOCK_SLACK,
        "second retry waited twice as long: {gaps:?}"
    );
    let accepted = receiver.accepted();
    assert_eq!(
        types(&accepted),
        ["session.created", "participant.added", "participant.added"]
    );
    assert!(received.iter().all(|r| r.signature_valid));
}

/// The emulator's and the receiver's clocks, and the start of a request against its
/// arrival, may differ by a little: a margin for lower bounds on real-time gaps.
const CLOCK_SLACK: Duration = Duration::from_millis(100);

#[tokio::test]
async fn an_event_the_receiver_does_not_answer_in_time_comes_again_and_is_taken_once() {
    let receiver = Receiver::start(CALLBACK_SIGNING_KEY).await;
    // Far past deliver-events' limit, so the retry comes while this request still waits.
    receiver.stall_next(DELIVERY_TIMEOUT * 12);
    let received = a_session_created_and_its_three_events_taken(&receiver).await;
    let first = &received[0];
    assert_eq!(first.event["type"], "session.created");
    let attempts: Vec<&tsunagu_tests::receiver::Received> = received
        .iter()
        .filter(|r| r.event["id"] == first.event["id"])
        .collect();
    assert_eq!(attempts.len(), 2, "{received:?}");
    // The second came while the first was still unanswered: Tsunagu stopped waiting.
    assert_eq!(
        attempts.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [0, 200]
    );
    assert_eq!(attempts[1].body, attempts[0].body, "the same event");
    assert_eq!(
        received[1].event["id"], first.event["id"],
        "nothing of the session overtook it"
    );
    // It gave up only at its limit, then backed off (EVENT_RETRY_BASE_SECONDS, 1 here).
    let gap = attempts[1].arrived - attempts[0].arrived;
    assert!(
        gap >= DELIVERY_TIMEOUT + Duration::from_secs(1) - CLOCK_SLACK,
        "retried after {gap:?}"
    );
    assert_eq!(
        types(&receiver.accepted()),
        ["session.created", "participant.added", "participant.added"],
        "each event once"
    );
    assert!(received.iter().all(|r| r.signature_valid));
}

#[tokio::test]
async fn events_are_signed_with_make_ups_callback_signing_key_not_the_default() {
    const PLATFORM_KEY: &str = "whsec-chosen-by-the-platform-0123456789";
    let receiver = Receiver::start(PLATFORM_KEY).await;
    // `make up` as a platform developer starts it, with their own key; on free ports and a
    // table of its own, as every test stack.
    let make_up = Options::from_make_up_environment([
        ("EVENT_CALLBACK_URL".to_owned(), receiver.url.clone()),
        ("CALLBACK_SIGNING_KEY".to_owned(), PLATFORM_KEY.to_owned()),
    ]);
    let stack = stack_with(Options {
        gateway_port: 0,
        simulator_port: 0,
        table_name: None,
        ..make_up
    })
    .await;
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201, "{s}");

    // session.created and both participant.added.
    let arrived = receiver.wait_until(WITHIN, |r| r.len() >= 3).await;
    let received = receiver.received();
    assert!(arrived, "{received:?}");
    for r in &received {
        assert!(r.signature_valid, "not under the configured key: {r:?}");
        assert_eq!(
            tsunagu_tests::receiver::verify(CALLBACK_SIGNING_KEY, &r.signature, r.body.as_bytes()),
            None,
            "verifies under the default key too: {r:?}"
        );
    }
}

/// The repository's template with the event queue's `maxReceiveCount` set to `n`.
fn template_with_max_receives(n: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(template::default_path()).unwrap();
    assert!(
        text.contains("maxReceiveCount: 8"),
        "the template's redrive moved"
    );
    let path = std::env::temp_dir().join(format!(
        "tsunagu-template-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(
        &path,
        text.replace("maxReceiveCount: 8", &format!("maxReceiveCount: {n}")),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn an_event_the_platform_never_takes_ends_in_the_dead_letter_queue() {
    let receiver = Receiver::start(CALLBACK_SIGNING_KEY).await;
    receiver.answer_next(&[503; 50]);
    let path = template_with_max_receives(2);
    let stack = stack_with(Options {
        env: vec![
            ("EVENT_CALLBACK_URL".into(), receiver.url.clone()),
            // Retry at once: this test is about where the event ends, not when.
            ("EVENT_RETRY_BASE_SECONDS".into(), "0".into()),
        ],
        template: Some(path.clone()),
        ..Options::default()
    })
    .await;
    let _ = std::fs::remove_file(&path);
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201, "{s}");

    // Observed through the dead-letter queue itself, as the alarm's metric would be.
    let sqs = aws_sdk_sqs::Client::new(&stack.aws);
    let dead = eventually(|| async {
        let got = sqs
            .receive_message()
            .queue_url(&stack.event_dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        (!got.is_empty()).then_some(got)
    })
    .await
    .expect("nothing reached the dead-letter queue");
    let event: Value = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    assert_eq!(event["type"], "session.created");
    let tries = receiver
        .received()
        .iter()
        .filter(|r| r.event["id"] == event["id"])
        .count();
    assert_eq!(tries, 2, "posted maxReceiveCount times, then given up");
}

#[tokio::test]
async fn publish_events_without_sqs_send_message_is_refused_by_local_iam() {
    // The template without publish-events' SendMessage on the event queue.
    let text = std::fs::read_to_string(template::default_path()).unwrap();
    let granted = "            - Sid: QueueEvents\n              Effect: Allow\n              Action:\n                - sqs:SendMessage\n";
    assert!(text.contains(granted), "the template's grant moved");
    let path = std::env::temp_dir().join(format!(
        "tsunagu-template-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(
        &path,
        text.replace(
            granted,
            "            - Sid: QueueEvents\n              Effect: Allow\n              Action:\n                - sqs:GetQueueUrl\n",
        ),
    )
    .unwrap();
    let receiver = Receiver::start(CALLBACK_SIGNING_KEY).await;
    let stack = stack_with(Options {
        env: vec![("EVENT_CALLBACK_URL".into(), receiver.url.clone())],
        template: Some(path.clone()),
        ..Options::default()
    })
    .await;
    let _ = std::fs::remove_file(&path);
    stack.add_proxy_number(P1).await;
    let (status, _) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201);
    let expected = Denial {
        function: "publish-events".into(),
        action: "sqs:SendMessage".into(),
        resource: tsunagu_tests::iam::sqs_queue_arn(REGION, &stack.event_queue_url),
    };
    let denials = std::sync::Mutex::new(Vec::new());
    let refused = eventually(|| async {
        let mut seen = denials.lock().unwrap();
        seen.extend(stack.take_denials());
        seen.contains(&expected).then_some(())
    })
    .await;
    assert!(refused.is_some(), "{:?}", denials.lock().unwrap());
    assert!(
        receiver.received().is_empty(),
        "nothing reached the platform"
    );
}
