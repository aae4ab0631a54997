//! Time limits end to end: the minute sweep on the simulator's clock, the spoken warning
//! three minutes before a call's deadline, press 1 to extend, and closing at expiry.

use std::time::Duration;

use crate::common::*;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use serde_json::{Value, json};
use tsunagu::model::{LiveCall, ProxyNumber, Session, SessionStatus};
use tsunagu::phone::PhoneNumber;
use tsunagu_tests::simulator::{CallerScript, PhoneScript};
use tsunagu_tests::stack::{Options, Stack};

const WARNING: &str = "残り3分です。延長する場合は1を押してください";

fn phone(after: u64, hang_up_after: Option<u64>, digits: &[(u64, char)]) -> PhoneScript {
    PhoneScript::Answer {
        after: Duration::from_secs(after),
        hang_up_after: hang_up_after.map(Duration::from_secs),
        digits: digits
            .iter()
            .map(|(t, d)| (Duration::from_secs(*t), *d))
            .collect(),
    }
}

/// A session whose calls last ten minutes, ending with the session itself, with one
/// five-minute extension; then a conference V-call, placed at the stack's start (t0).
async fn ten_minute_conference(
    stack: &Stack,
    a: PhoneScript,
    b: PhoneScript,
) -> (Value, time::OffsetDateTime) {
    let t0 = stack.clock.now();
    let expiry = (t0 + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let session = json!({
        "date_expiry": expiry, "call_time_limit": 600,
        "extension": {"seconds": 300, "max_count": 1},
        "participants": [{"identifier": A}, {"identifier": B}]
    });
    let s = conference_v_call(stack, session, a, b).await;
    (s, t0)
}

async fn session(stack: &Stack, s: &Value) -> Session {
    stack.app.store.get_session(&sid(s)).await.unwrap().unwrap()
}

fn count(heard: &[String], needle: &str) -> usize {
    heard.iter().filter(|t| t.contains(needle)).count()
}

/// Advances the simulator to `t0 + secs`.
async fn advance_to(stack: &Stack, t0: time::OffsetDateTime, secs: i64) {
    let target = t0 + time::Duration::seconds(secs);
    let now = stack.clock.now();
    if target > now {
        stack.sim().advance((target - now).unsigned_abs()).await;
    }
}

#[tokio::test]
async fn warned_at_seven_minutes_extended_by_one_then_ended_at_the_deadline() {
    let stack = stack().await;
    let (s, t0) =
        ten_minute_conference(&stack, phone(2, None, &[(2, '1')]), phone(5, None, &[])).await;
    let (a, b) = (e164(A), e164(B));

    advance_to(&stack, t0, 419).await;
    assert_eq!(
        count(&stack.sim().heard_by(&a), WARNING),
        0,
        "no warning before 7:00"
    );
    advance_to(&stack, t0, 421).await;
    assert_eq!(
        count(&stack.sim().heard_by(&a), WARNING),
        1,
        "the deciding party hears the warning at 7:00"
    );
    assert!(
        stack
            .sim()
            .heard_by(&b)
            .iter()
            .any(|t| t.contains("お相手の方に延長を確認しています")),
        "the other party hears that the deciding party is being asked"
    );

    advance_to(&stack, t0, 450).await;
    assert!(
        stack
            .sim()
            .heard_by(&a)
            .iter()
            .any(|t| t.contains("5分延長しました")),
        "{:?}",
        stack.sim().heard_by(&a)
    );
    let extended = session(&stack, &s).await;
    assert_eq!(extended.extension_count, 1);
    let deadline = extended
        .live_call
        .as_ref()
        .and_then(|l| l.deadline)
        .unwrap();
    assert_eq!(deadline - t0.unix_timestamp(), 900, "ten minutes plus five");
    assert_eq!(
        extended.date_expiry,
        Some(deadline),
        "the session's end moved with the call's"
    );
    let room = stack.sim().conferences().pop().unwrap();
    assert_eq!(
        room.participants.len(),
        2,
        "both back in the room: {room:?}"
    );
    assert!(
        room.participants.iter().all(|p| !p.hold),
        "the other party is off hold: {room:?}"
    );

    // Second warning at 12:00: no extension left, so nothing to press.
    advance_to(&stack, t0, 725).await;
    let heard = stack.sim().heard_by(&a);
    assert!(
        heard
            .iter()
            .any(|t| t.contains("残り3分です。") && !t.contains("1を押")),
        "{heard:?}"
    );
    assert_eq!(session(&stack, &s).await.extension_count, 1);

    stack.finish_calls().await;
    for call in stack.sim().calls() {
        let ended = call.ended_at.unwrap();
        assert_eq!(
            (ended - t0).whole_seconds(),
            900,
            "{} ended at the deadline",
            call.sid
        );
    }
    let closed = session(&stack, &s).await;
    assert_eq!(
        (closed.status, closed.closed_reason.as_deref()),
        (SessionStatus::Closed, Some("expired"))
    );
    let (_, log) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}/interactions", sid(&s)),
            None,
        )
        .await;
    assert_eq!(log["interactions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn overlapping_and_repeated_sweeps_give_the_warning_once() {
    let stack = stack_with(Options {
        sweep_every: None,
        ..Options::default()
    })
    .await;
    let (s, t0) = ten_minute_conference(&stack, phone(2, None, &[]), phone(3, None, &[])).await;
    advance_to(&stack, t0, 421).await;
    let at = stack.clock.now();
    let (first, second) = tokio::join!(stack.sweep_at(at), stack.sweep_at(at));
    let third = stack.sweep_at(at).await;
    let warned: u64 = [first, second, third]
        .iter()
        .map(|r| r["warned"].as_u64().unwrap())
        .sum();
    assert_eq!(warned, 1, "one warning per deadline (I4)");
    stack.sim().settle().await;
    assert_eq!(count(&stack.sim().heard_by(&e164(A)), WARNING), 1);
    let live = session(&stack, &s).await.live_call.unwrap();
    assert_eq!(live.warned_for, live.deadline);
}

#[tokio::test]
async fn pressing_another_key_or_nothing_ends_the_call_as_planned() {
    for digits in [vec![(2, '2')], vec![]] {
        let stack = stack().await;
        let (s, t0) =
            ten_minute_conference(&stack, phone(2, None, &digits), phone(5, None, &[])).await;
        advance_to(&stack, t0, 440).await;
        let heard = stack.sim().heard_by(&e164(A));
        assert!(
            heard.iter().any(|t| t.contains("まもなく通話を終了します")),
            "{digits:?}: {heard:?}"
        );
        assert_eq!(session(&stack, &s).await.extension_count, 0);
        stack.finish_calls().await;
        assert!(
            stack
                .sim()
                .calls()
                .iter()
                .all(|c| (c.ended_at.unwrap() - t0).whole_seconds() == 600),
            "ended at 10:00"
        );
    }
}

#[tokio::test]
async fn with_no_extension_left_the_warning_offers_none() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let (_, s) = stack
        .api("POST", "/v1/sessions", Some(json!({"call_time_limit": 600, "extension": {"seconds": 300, "max_count": 0}, "participants": [{"identifier": A}, {"identifier": B}]})))
        .await;
    stack.sim().set_phone(&e164(A), phone(2, None, &[(1, '1')]));
    stack
        .api(
            "POST",
            &format!("/v1/sessions/{}/calls", sid(&s)),
            Some(json!({"mode": "conference"})),
        )
        .await;
    // A joins at 0:02, so the deadline is 10:02 and the warning falls to the 8:00 sweep.
    stack.sim().advance(Duration::from_secs(500)).await;
    let heard = stack.sim().heard_by(&e164(A));
    assert!(
        heard.iter().any(|t| t.contains("残り3分です。")),
        "{heard:?}"
    );
    assert_eq!(
        count(&heard, "1を押"),
        0,
        "no offer that cannot be kept: {heard:?}"
    );
    assert_eq!(session(&stack, &s).await.extension_count, 0);
}

#[tokio::test]
async fn the_deciding_party_hanging_up_during_the_prompt_ends_the_room() {
    let stack = stack().await;
    // A hangs up 423 s after answering (at 7:05), while the prompt is playing.
    let (s, t0) =
        ten_minute_conference(&stack, phone(2, Some(423), &[]), phone(5, None, &[])).await;
    advance_to(&stack, t0, 430).await;
    let calls = stack.sim().calls();
    assert!(
        calls.iter().all(|c| c.ended_at.is_some()),
        "the held party is not left alone: {calls:?}"
    );
    assert_eq!(stack.sim().conferences().pop().unwrap().status, "completed");
    assert_eq!(session(&stack, &s).await.extension_count, 0);
}

#[tokio::test]
async fn a_close_during_the_prompt_wins_over_the_extension() {
    let stack = stack().await;
    let (s, t0) =
        ten_minute_conference(&stack, phone(2, None, &[(6, '1')]), phone(5, None, &[])).await;
    advance_to(&stack, t0, 422).await;
    let (status, closed) = stack
        .api("DELETE", &format!("/v1/sessions/{}", sid(&s)), None)
        .await;
    assert_eq!((status, closed["status"].as_str()), (200, Some("closed")));
    advance_to(&stack, t0, 460).await;
    let after = session(&stack, &s).await;
    assert_eq!(after.extension_count, 0, "no extension after the close");
    assert_eq!(after.closed_reason.as_deref(), Some("closed-by-api"));
    assert!(stack.sim().calls().iter().all(|c| c.ended_at.is_some()));
}

/// A session whose calls last ten minutes; then a bridge V-call in which A answers after
/// two seconds and B after three, placed at t0.
async fn ten_minute_bridge(stack: &Stack) -> (Value, time::OffsetDateTime) {
    stack.add_proxy_number(P1).await;
    let (_, s) = stack
        .api("POST", "/v1/sessions", Some(json!({"call_time_limit": 600, "participants": [{"identifier": A}, {"identifier": B}]})))
        .await;
    stack.sim().set_phone(&e164(A), phone(2, None, &[]));
    stack.sim().set_phone(&e164(B), phone(3, None, &[]));
    let t0 = stack.clock.now();
    let (status, placed) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{}/calls", sid(&s)),
            Some(json!({"mode": "bridge"})),
        )
        .await;
    assert_eq!(status, 202, "{placed}");
    (s, t0)
}

#[tokio::test]
async fn bridge_calls_are_recorded_as_no_warning_possible() {
    let stack = stack().await;
    let (s, _) = ten_minute_bridge(&stack).await;
    stack.sim().advance(Duration::from_secs(500)).await;
    let live = session(&stack, &s).await.live_call.unwrap();
    assert_eq!(
        live.warning,
        Some(tsunagu::model::WarningOutcome::NotPossibleBridge)
    );
    assert_eq!(count(&stack.sim().heard_by(&e164(A)), WARNING), 0);
    stack.finish_calls().await;
    let b_leg = stack
        .sim()
        .calls()
        .into_iter()
        .find(|c| c.direction == "outbound-dial")
        .unwrap();
    assert_eq!(b_leg.duration_secs, 600, "<Dial timeLimit> ends it");
}

#[tokio::test]
async fn an_api_extension_moves_a_live_bridges_twilio_limits_too() {
    let stack = stack().await;
    let (s, t0) = ten_minute_bridge(&stack).await;
    advance_to(&stack, t0, 300).await;
    let before = session(&stack, &s)
        .await
        .live_call
        .unwrap()
        .deadline
        .unwrap();
    let (status, extended) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{}/extend", sid(&s)),
            Some(json!({"seconds": 300})),
        )
        .await;
    assert_eq!(status, 200, "{extended}");
    let deadline = session(&stack, &s)
        .await
        .live_call
        .unwrap()
        .deadline
        .unwrap();
    assert_eq!(deadline, before + 300);

    // Past the old limit the two still talk: neither Twilio limit cut them.
    advance_to(&stack, t0, 700).await;
    assert!(
        stack.sim().calls().iter().all(|c| c.ended_at.is_none()),
        "{:?}",
        stack.sim().calls()
    );
    stack.finish_calls().await;
    let b_leg = stack
        .sim()
        .calls()
        .into_iter()
        .find(|c| c.direction == "outbound-dial")
        .unwrap();
    let ended = b_leg.ended_at.unwrap().unix_timestamp();
    // The sweep ends the call at its first run from the new deadline (once a minute).
    assert!(
        (deadline..deadline + 60).contains(&ended),
        "ended {} s after the deadline",
        ended - deadline
    );
}

#[tokio::test]
async fn a_timed_masked_call_runs_through_the_room_and_gets_the_warning() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let (_, s) = stack
        .api("POST", "/v1/sessions", Some(json!({"call_time_limit": 600, "participants": [{"identifier": A}, {"identifier": B}]})))
        .await;
    let p = s["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.sim().set_phone(&e164(B), phone(3, None, &[]));
    stack
        .sim()
        .dial_in(
            &e164(A),
            &p,
            CallerScript {
                hang_up_after: None,
                digits: vec![(2, '1')]
                    .into_iter()
                    .map(|(t, d)| (Duration::from_secs(t), d))
                    .collect(),
            },
        )
        .await;
    stack.sim().advance(Duration::from_secs(30)).await;
    let room = stack
        .sim()
        .conferences()
        .pop()
        .expect("the caller waits in the session's room");
    assert_eq!(room.participants.len(), 2, "B was called into it: {room:?}");
    let b_leg = stack
        .sim()
        .calls()
        .into_iter()
        .find(|c| c.to == e164(B))
        .unwrap();
    assert_eq!(b_leg.from, p, "B sees the proxy number");
    // Issue 12's audit: the timed path's requests — the route's write, one transaction that
    // logs the caller's leg and notes the live call, and B's leg logged once placed.
    assert_eq!(
        stack.dynamodb_requests("inbound-call"),
        ["UpdateItem", "TransactWriteItems", "TransactWriteItems"]
    );
    // The call's clock starts when the conference does, once B is in it (3 s): the warning
    // is due at 7:03 and its schedule gives it then. Running on to 8:10 also leaves room
    // for the minute sweep (8:00), so this test does not depend on the timers' punctuality
    // (exact_timers_warn_notify_and_end_on_time_extension_included checks that).
    stack.sim().advance(Duration::from_secs(460)).await;
    assert_eq!(
        count(&stack.sim().heard_by(&e164(A)), WARNING),
        1,
        "{:?}",
        stack.sim().heard_by(&e164(A))
    );
    stack.sim().advance(Duration::from_secs(30)).await;
    assert_eq!(
        session(&stack, &s).await.extension_count,
        1,
        "the caller pressed 1"
    );

    // Both legs went through the room, the caller's own inbound leg included, so each
    // started minute carries the conference fee: A's at 1 + 0.3 = 1.3 yen, B's (a mobile)
    // at 16.2 + 0.3 = 16.5 yen.
    stack.finish_calls().await;
    let (_, log) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}/interactions", sid(&s)),
            None,
        )
        .await;
    let legs = log["interactions"].as_array().unwrap();
    assert_eq!(legs.len(), 2, "{log}");
    for leg in legs {
        let minutes = leg["billed_minutes"].as_u64().unwrap();
        let per_minute_milli = match leg["twilio_direction"].as_str() {
            Some("inbound") => 1_300,
            Some("outbound-api") => 16_500,
            other => panic!("unexpected leg {other:?}: {leg}"),
        };
        assert!(minutes > 10, "the call ran past its first deadline: {leg}");
        assert_eq!(
            (leg["cost"].as_f64().unwrap() * 1000.0).round() as u64,
            minutes * per_minute_milli,
            "{leg}"
        );
    }
}

#[tokio::test]
async fn inactivity_closes_a_session_only_once_its_call_has_ended() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let (_, s) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(json!({"ttl": 120, "participants": [{"identifier": A}, {"identifier": B}]})),
        )
        .await;
    let t0 = stack.clock.now();
    stack.sim().set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(300)),
    );
    stack
        .sim()
        .dial_in(
            &e164(A),
            s["participants"][0]["proxy_identifier"].as_str().unwrap(),
            CallerScript::default(),
        )
        .await;
    advance_to(&stack, t0, 250).await;
    assert!(
        session(&stack, &s).await.status.is_open(),
        "not closed while the call is live"
    );
    advance_to(&stack, t0, 600).await;
    let closed = session(&stack, &s).await;
    assert_eq!(
        (closed.status, closed.closed_reason.as_deref()),
        (SessionStatus::Closed, Some("expired"))
    );
    let (_, log) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}/interactions", sid(&s)),
            None,
        )
        .await;
    assert!(
        log["interactions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["status"] == "completed"),
        "the call finished normally"
    );
}

fn due_session(now: i64, i: usize, expiry: Option<i64>, live: Option<LiveCall>) -> Session {
    let mut session = session_fixture(now, &format!("+8190{i:08}"), &format!("+8180{i:08}"), P1);
    session.status = SessionStatus::InProgress;
    session.date_expiry = expiry;
    session.date_last_interaction = Some(now);
    session.call_time_limit = Some(600);
    session.live_call = live;
    session
}

/// Writes session items straight into the table, filed as due at `due`: test set-up at a
/// scale the emulator's transactions (a deep copy of the table per item) cannot reach.
async fn seed_due(stack: &Stack, sessions: &[Session], due: i64) {
    let client = aws_sdk_dynamodb::Client::new(&stack.aws);
    for chunk in sessions.chunks(25) {
        let writes = chunk
            .iter()
            .map(|session| {
                let mut item: std::collections::HashMap<String, AttributeValue> =
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
                item.insert("due_at".into(), AttributeValue::N(due.to_string()));
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build()
            })
            .collect();
        let out = client
            .batch_write_item()
            .request_items(&stack.table, writes)
            .send()
            .await
            .unwrap();
        assert!(out.unprocessed_items.unwrap_or_default().is_empty());
    }
}

#[tokio::test]
async fn one_sweep_handles_five_thousand_due_sessions_by_query() {
    let stack = stack_with(Options {
        sweep_every: None,
        ..Options::default()
    })
    .await;
    let now = stack.app.now();
    // Five thousand bridge calls whose warning time has come: each one is a visit, a
    // conditional claim (I4) and a re-filing.
    const N: usize = 5_000;
    let live = LiveCall {
        mode: tsunagu::model::CallMode::Bridge,
        limit: 600,
        deadline: Some(now + 170),
        warned_for: None,
        warning: None,
        noticed_for: None,
    };
    let sessions: Vec<Session> = (0..N)
        .map(|i| due_session(now, i, None, Some(live.clone())))
        .collect();
    seed_due(&stack, &sessions, now - 10).await;

    // One run handles them all unless its time budget (domain::expiry::TIME_BUDGET) runs
    // out first, which this one-request-at-a-time emulator on a loaded machine can make
    // happen; then the rest stays due and the next run takes it up. Either way each
    // session is handled exactly once (I4).
    let mut handled = 0;
    for run in 1.. {
        let report = stack
            .sweep_at(time::OffsetDateTime::from_unix_timestamp(now).unwrap())
            .await;
        assert_eq!(report["failed"], 0, "{report}");
        // Eight shards of the due index, a page or two each: queried, never scanned.
        assert!(report["queries"].as_u64().unwrap() <= 24, "{report}");
        let done = report["no_warning_possible"].as_u64().unwrap() as usize;
        let deferred = report["deferred"].as_u64().unwrap_or(0) as usize;
        assert_eq!(
            report["due"].as_u64().unwrap() as usize,
            done + deferred,
            "{report}"
        );
        handled += done;
        if report.get("stopped_early").is_none() && deferred == 0 {
            break;
        }
        assert!(run < 10 && done > 0, "each run makes progress: {report}");
    }
    assert_eq!(handled, N, "every session handled once");
    let again = stack
        .sweep_at(time::OffsetDateTime::from_unix_timestamp(now + 1).unwrap())
        .await;
    assert_eq!(
        (again["due"].as_u64(), again["no_warning_possible"].as_u64()),
        (Some(0), Some(0)),
        "re-filed for their deadline: {again}"
    );
}

#[tokio::test]
async fn sessions_past_their_end_without_calls_are_closed_in_one_sweep() {
    let stack = stack_with(Options {
        sweep_every: None,
        ..Options::default()
    })
    .await;
    let store = &stack.app.store;
    let now = stack.app.now();
    store
        .add_number(&ProxyNumber {
            phone_number: PhoneNumber::parse(P1).unwrap(),
            is_reserved: false,
            in_use: 0,
            date_created: now,
            date_updated: now,
        })
        .await
        .unwrap();
    const N: usize = 60;
    for i in 0..N {
        store
            .create_session(&due_session(now, i, Some(now + 60), None), now)
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .get_number(&PhoneNumber::parse(P1).unwrap())
            .await
            .unwrap()
            .unwrap()
            .in_use,
        N as u64
    );
    let report = stack
        .sweep_at(time::OffsetDateTime::from_unix_timestamp(now + 61).unwrap())
        .await;
    assert_eq!(
        (report["due"].as_u64(), report["closed"].as_u64()),
        (Some(N as u64), Some(N as u64)),
        "{report}"
    );
    assert_eq!(
        store
            .get_number(&PhoneNumber::parse(P1).unwrap())
            .await
            .unwrap()
            .unwrap()
            .in_use,
        0,
        "every route released"
    );
    let again = stack
        .sweep_at(time::OffsetDateTime::from_unix_timestamp(now + 62).unwrap())
        .await;
    assert_eq!(again["due"], 0, "closed sessions leave the index: {again}");
}

#[tokio::test]
async fn the_sweep_bounds_its_concurrency_towards_twilio() {
    let stack = stack_with(Options {
        sweep_every: None,
        ..Options::default()
    })
    .await;
    stack.add_proxy_number(P1).await;
    // Twenty timed calls whose warnings fall due in the same sweep.
    for i in 0..20 {
        let (a, b) = (format!("090-7000-{i:04}"), format!("080-7000-{i:04}"));
        let (status, s) = stack
            .api("POST", "/v1/sessions", Some(json!({"call_time_limit": 600, "participants": [{"identifier": a}, {"identifier": b}]})))
            .await;
        assert_eq!(status, 201, "{s}");
        stack
            .api(
                "POST",
                &format!("/v1/sessions/{}/calls", sid(&s)),
                Some(json!({"mode": "conference"})),
            )
            .await;
    }
    stack.sim().advance(Duration::from_secs(425)).await;
    stack.sim().set_rest_latency(Duration::from_millis(30));
    let before = stack.sim().max_rest_in_flight();
    let report = stack.sweep_at(stack.clock.now()).await;
    assert_eq!(report["warned"], 20, "{report}");
    let peak = stack.sim().max_rest_in_flight();
    assert!(
        peak.max(before) <= tsunagu::domain::expiry::CONCURRENCY,
        "at most {} requests at once, saw {peak}",
        tsunagu::domain::expiry::CONCURRENCY
    );
    assert!(peak >= 2, "the sweep does work in parallel: {peak}");
}

// Both parties told: what each phone heard, in order, from the warning to the outcome.

/// What `phone` heard from `t0 + from` seconds on, in order.
fn heard_since(stack: &Stack, phone: &str, t0: time::OffsetDateTime, from: i64) -> Vec<String> {
    let since = t0 + time::Duration::seconds(from);
    stack
        .sim()
        .transcript()
        .into_iter()
        .filter(|entry| entry.at >= since)
        .filter_map(|entry| match entry.event {
            tsunagu_tests::simulator::Event::Said { to, text, .. } if to == phone => Some(text),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn both_parties_hear_the_warning_and_the_extension() {
    let stack = stack().await;
    let (_, t0) =
        ten_minute_conference(&stack, phone(2, None, &[(2, '1')]), phone(5, None, &[])).await;
    let (a, b) = (e164(A), e164(B));
    advance_to(&stack, t0, 460).await;
    assert_eq!(
        heard_since(&stack, &a, t0, 400),
        [
            "通話終了まで残り3分です。延長する場合は1を押してください。",
            "通話を5分延長しました。残りは8分です。",
        ]
    );
    assert_eq!(
        heard_since(&stack, &b, t0, 400),
        [
            // A answered within seconds: B is told before the hold message comes round.
            "通話終了まで残り3分です。お相手の方に延長を確認しています。",
            "通話を5分延長しました。残りは8分です。",
        ]
    );
    let room = stack.sim().conferences().pop().unwrap();
    assert_eq!(room.participants.len(), 2, "both in the room: {room:?}");
    assert!(room.participants.iter().all(|p| !p.hold), "{room:?}");
}

#[tokio::test]
async fn both_parties_hear_that_the_call_ends_when_nobody_presses_1() {
    let stack = stack().await;
    let (_, t0) = ten_minute_conference(&stack, phone(2, None, &[]), phone(5, None, &[])).await;
    let (a, b) = (e164(A), e164(B));
    advance_to(&stack, t0, 460).await;
    assert_eq!(
        heard_since(&stack, &a, t0, 400),
        [
            "通話終了まで残り3分です。延長する場合は1を押してください。",
            "延長はしませんでした。まもなく通話を終了します。",
        ]
    );
    assert_eq!(
        heard_since(&stack, &b, t0, 400),
        [
            "通話終了まで残り3分です。お相手の方に延長を確認しています。",
            "少々お待ちください。",
            "まもなく通話を終了します。",
        ]
    );
    stack.finish_calls().await;
    assert!(
        stack
            .sim()
            .calls()
            .iter()
            .all(|c| (c.ended_at.unwrap() - t0).whole_seconds() == 600),
        "ended at 10:00 as before"
    );
}

#[tokio::test]
async fn with_the_decider_not_in_the_room_the_room_hears_the_time_left() {
    let stack = stack().await;
    let (s, t0) = ten_minute_conference(&stack, phone(2, None, &[]), phone(5, None, &[])).await;
    let (a, b) = (e164(A), e164(B));
    advance_to(&stack, t0, 60).await;
    // The deciding party's participant-join callback was lost: the record does not
    // know A's leg, so A cannot be asked.
    let decider = session(&stack, &s).await.decider().unwrap().sid.clone();
    let conference = session(&stack, &s).await.current_conference.unwrap();
    aws_sdk_dynamodb::Client::new(&stack.aws)
        .update_item()
        .table_name(&stack.table)
        .key("pk", AttributeValue::S(format!("SESSION#{}", sid(&s))))
        .key("sk", AttributeValue::S(format!("CONF#{conference}")))
        .update_expression("REMOVE #leg")
        .expression_attribute_names("#leg", format!("leg_{decider}"))
        .send()
        .await
        .unwrap();
    advance_to(&stack, t0, 460).await;
    // Nobody is asked or held: both, in the room, hear the time left from the room.
    assert_eq!(
        heard_since(&stack, &a, t0, 400),
        ["通話終了まで残り3分です。"]
    );
    assert_eq!(
        heard_since(&stack, &b, t0, 400),
        ["通話終了まで残り3分です。"]
    );
    let live = session(&stack, &s).await.live_call.unwrap();
    assert_eq!(
        live.warning,
        Some(tsunagu::model::WarningOutcome::NotPossibleAbsent)
    );
    stack.finish_calls().await;
    assert!(
        stack
            .sim()
            .calls()
            .iter()
            .all(|c| (c.ended_at.unwrap() - t0).whole_seconds() == 600),
        "ended at 10:00"
    );
}

#[tokio::test]
async fn max_cost_warns_and_ends_the_call_before_its_cost_would_pass_it() {
    let stack = stack_with(Options {
        sweep_every: None,
        ..Options::default()
    })
    .await;
    let t0 = stack.clock.now();
    // Two mobiles through the room: 16.2 + 0.3 yen a minute each, 33 yen a minute in all.
    // 100 yen buys three minutes; the ten-minute limit never comes. A presses 1 at the
    // warning, which would take the call past the cap.
    let s = conference_v_call(
        &stack,
        json!({
            "call_time_limit": 600, "warning_lead": 60, "max_cost": 100,
            "extension": {"seconds": 300, "max_count": 1},
            "participants": [{"identifier": A}, {"identifier": B}]
        }),
        phone(2, None, &[(2, '1')]),
        phone(5, None, &[]),
    )
    .await;
    assert_eq!(s["max_cost"], 100, "{s}");
    let (a, b) = (e164(A), e164(B));
    advance_to(&stack, t0, 10).await;
    let deadline = session(&stack, &s)
        .await
        .live_call
        .and_then(|l| l.deadline)
        .expect("the clock started");
    // The fourth minute of the legs (billed from their creation at t0) starts at t0 + 180.
    let from_t0 = deadline - t0.unix_timestamp();
    assert!(
        (170..=180 - tsunagu::domain::deadline::END_MARGIN_SECONDS).contains(&from_t0),
        "cost deadline t0 + {from_t0}, not the limit's ten minutes"
    );

    advance_to(&stack, t0, from_t0 - 61).await;
    let early = stack.sweep_at(stack.clock.now()).await;
    assert_eq!(early["warned"], 0, "{early}");
    advance_to(&stack, t0, from_t0 - 60).await;
    let warned = stack.sweep_at(stack.clock.now()).await;
    assert_eq!(
        warned["warned"], 1,
        "warned warning_lead before the deadline: {warned}"
    );
    advance_to(&stack, t0, from_t0 - 30).await;
    let heard = stack.sim().heard_by(&a);
    assert_eq!(
        count(&heard, "残り1分です。延長する場合は1を押してください"),
        1,
        "{heard:?}"
    );
    assert!(
        heard.iter().any(|t| t
            .contains("ご利用上限額に達するため、延長はできません。まもなく通話を終了します。")),
        "pressing 1 cannot lift the call past max_cost: {heard:?}"
    );
    assert!(
        stack
            .sim()
            .heard_by(&b)
            .iter()
            .any(|t| t.contains("まもなく通話を終了します")),
        "{:?}",
        stack.sim().heard_by(&b)
    );
    let after = session(&stack, &s).await;
    assert_eq!(after.extension_count, 0);
    assert_eq!(after.live_call.and_then(|l| l.deadline), Some(deadline));
    // Nor may the platform extend it past the cap through the API.
    let (code, problem) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{}/extend", sid(&s)),
            Some(json!({"seconds": 60})),
        )
        .await;
    assert_eq!((code, &problem["code"]), (409, &json!(140904)), "{problem}");
    assert_eq!(
        session(&stack, &s).await.live_call.and_then(|l| l.deadline),
        Some(deadline),
        "nothing moved"
    );

    advance_to(&stack, t0, from_t0).await;
    let ended = stack.sweep_at(stack.clock.now()).await;
    assert_eq!(ended["calls_ended"], 1, "{ended}");
    stack.finish_calls().await;
    for call in stack.sim().calls() {
        assert_eq!(
            (call.ended_at.unwrap() - t0).whole_seconds(),
            from_t0,
            "{} ended at the cost deadline",
            call.sid
        );
    }
    let (_, log) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}/interactions", sid(&s)),
            None,
        )
        .await;
    assert_eq!(log["interactions"].as_array().unwrap().len(), 2, "{log}");
    let total = log["total_cost"].as_f64().unwrap();
    assert!(
        total > 0.0 && total <= 100.0,
        "the call cost {total} yen: {log}"
    );
}

/// When `phone` first heard something containing `needle`, in seconds since the epoch.
fn first_heard(stack: &Stack, phone: &str, needle: &str) -> Option<i64> {
    stack
        .sim()
        .transcript()
        .into_iter()
        .find_map(|entry| match entry.event {
            tsunagu_tests::simulator::Event::Said { to, text, .. }
                if to == phone && text.contains(needle) =>
            {
                Some(entry.at.unix_timestamp())
            }
            _ => None,
        })
}

/// The session's schedules in the stack's group: name → the instant of its `at(…)`.
async fn schedules_of(stack: &Stack, session_sid: &str) -> Vec<(String, i64)> {
    let client = aws_sdk_scheduler::Client::new(&stack.aws);
    let listed = client
        .list_schedules()
        .group_name(&stack.schedule_group)
        .name_prefix(session_sid)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for summary in listed.schedules() {
        let name = summary.name().unwrap().to_owned();
        let got = client
            .get_schedule()
            .group_name(&stack.schedule_group)
            .name(&name)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.action_after_completion(),
            Some(&aws_sdk_scheduler::types::ActionAfterCompletion::Delete)
        );
        assert_eq!(
            got.flexible_time_window().map(|w| w.mode()),
            Some(&aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
        );
        let at = tsunagu_tests::timers::parse_at(got.schedule_expression().unwrap()).unwrap();
        out.push((name, at));
    }
    out.sort();
    out
}

/// A conference call whose deadline falls between two minute sweeps: 10 min 35 s after both
/// are connected, one five-minute extension.
async fn off_the_minute_conference(stack: &Stack, a: PhoneScript) -> (Value, i64) {
    let session = json!({
        "call_time_limit": 635,
        "extension": {"seconds": 300, "max_count": 1},
        "participants": [{"identifier": A}, {"identifier": B}]
    });
    let s = conference_v_call(stack, session, a, phone(5, None, &[])).await;
    stack.sim().advance(Duration::from_secs(30)).await;
    let deadline = session_deadline(stack, &s)
        .await
        .expect("the clock is running");
    (s, deadline)
}

async fn session_deadline(stack: &Stack, s: &Value) -> Option<i64> {
    session(stack, s).await.live_call.and_then(|l| l.deadline)
}

/// Advances the simulator to the epoch instant `at`.
async fn advance_to_instant(stack: &Stack, at: i64) {
    let now = stack.clock.now().unix_timestamp();
    if at > now {
        stack
            .sim()
            .advance(Duration::from_secs((at - now) as u64))
            .await;
    }
}

#[tokio::test]
async fn exact_timers_warn_notify_and_end_on_time_extension_included() {
    let stack = stack().await;
    let (s, deadline) = off_the_minute_conference(&stack, phone(2, None, &[(2, '1')])).await;
    let (a, b) = (e164(A), e164(B));
    let session_sid = sid(&s);
    let schedule = |kind: &str| format!("{session_sid}-{kind}");
    // The three steps are schedules in the emulator while the call is live.
    assert_eq!(
        schedules_of(&stack, &session_sid).await,
        vec![
            (schedule("end"), deadline),
            (schedule("notice"), deadline - 20),
            (schedule("warning"), deadline - 180),
        ]
    );
    // The sweep alone would warn up to 59 s late; the schedule warns within 2 s.
    advance_to_instant(&stack, deadline - 170).await;
    let warned = first_heard(&stack, &a, "延長する場合は1を押してください").expect("warned");
    assert!(
        (deadline - 180..=deadline - 178).contains(&warned),
        "warned {} s before the deadline",
        deadline - warned
    );
    // A pressed 1: the deadline and the remaining schedules move with it.
    let extended = deadline + 300;
    assert_eq!(session_deadline(&stack, &s).await, Some(extended));
    assert_eq!(
        schedules_of(&stack, &session_sid).await,
        vec![
            (schedule("end"), extended),
            (schedule("notice"), extended - 20),
            (schedule("warning"), extended - 180),
        ]
    );
    // Twenty seconds before the end, both hear the notice.
    advance_to_instant(&stack, extended - 15).await;
    for phone in [&a, &b] {
        let noticed = first_heard(&stack, phone, "あと20秒で通話が終わります").expect("noticed");
        assert!(
            (extended - 20..=extended - 18).contains(&noticed),
            "{phone} heard the notice {} s before the end",
            extended - noticed
        );
    }
    both_calls_end_within_2_s_of(&stack, extended).await;
    // Each schedule ran once and was deleted (ActionAfterCompletion DELETE), or was
    // removed with the call.
    assert_eq!(schedules_of(&stack, &session_sid).await, vec![]);
    assert!(session(&stack, &s).await.live_call.is_none());
}

#[tokio::test]
async fn a_lost_schedule_still_gets_the_call_ended_by_the_minute_sweep() {
    let stack = stack().await;
    let (s, deadline) = off_the_minute_conference(&stack, phone(2, None, &[(2, '1')])).await;
    // Extended at the warning: the legs' Twilio TimeLimit now lies two minutes past the new
    // deadline, so only Tsunagu can end the call on time.
    advance_to_instant(&stack, deadline - 170).await;
    let deadline = deadline + 300;
    assert_eq!(session_deadline(&stack, &s).await, Some(deadline));
    let session_sid = sid(&s);
    let client = aws_sdk_scheduler::Client::new(&stack.aws);
    for kind in ["warning", "notice", "end"] {
        client
            .delete_schedule()
            .group_name(&stack.schedule_group)
            .name(format!("{session_sid}-{kind}"))
            .send()
            .await
            .unwrap();
    }
    stack.finish_calls().await;
    for call in stack.sim().calls() {
        let late = call.ended_at.unwrap().unix_timestamp() - deadline;
        assert!(
            (0..60).contains(&late),
            "{} ended {late} s after its deadline",
            call.sid
        );
    }
    let live = session(&stack, &s).await.live_call;
    assert!(live.is_none(), "the sweep forgot the call: {live:?}");
    // The notice has only its timer: without it, nobody hears it.
    assert_eq!(first_heard(&stack, &e164(A), "あと20秒"), None);
}

#[tokio::test]
async fn a_closed_session_deletes_its_schedules() {
    let stack = stack().await;
    let (s, _) = off_the_minute_conference(&stack, phone(2, None, &[])).await;
    let session_sid = sid(&s);
    assert_eq!(schedules_of(&stack, &session_sid).await.len(), 3);
    let (status, _) = stack
        .api("DELETE", &format!("/v1/sessions/{session_sid}"), None)
        .await;
    assert!((200..300).contains(&status), "{status}");
    assert_eq!(schedules_of(&stack, &session_sid).await, vec![]);
    stack.finish_calls().await;
}

#[tokio::test]
async fn an_api_extension_moves_a_live_rooms_schedules_and_its_end() {
    let stack = stack().await;
    // Nobody presses 1: only the API moves the deadline.
    let (s, deadline) = off_the_minute_conference(&stack, phone(2, None, &[])).await;
    let session_sid = sid(&s);
    let schedule = |kind: &str| format!("{session_sid}-{kind}");
    // Two minutes more keeps the end between two minute sweeps, 20 s or more from each.
    let (status, extended) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{session_sid}/extend"),
            Some(json!({"seconds": 120})),
        )
        .await;
    assert_eq!(status, 200, "{extended}");
    let moved = deadline + 120;
    assert_eq!(session_deadline(&stack, &s).await, Some(moved));
    assert_eq!(
        schedules_of(&stack, &session_sid).await,
        vec![
            (schedule("end"), moved),
            (schedule("notice"), moved - 20),
            (schedule("warning"), moved - 180),
        ]
    );
    // The warning comes for the new deadline, not the old one.
    advance_to_instant(&stack, moved - 170).await;
    let warned = first_heard(&stack, &e164(A), "延長する場合は1を押してください").expect("warned");
    assert!(
        (moved - 180..=moved - 178).contains(&warned),
        "warned {} s before the new deadline",
        moved - warned
    );
    both_calls_end_within_2_s_of(&stack, moved).await;
    assert_eq!(schedules_of(&stack, &session_sid).await, vec![]);
}

/// Once the calls have run their course, both legs ended within 2 s after `deadline` (Unix
/// seconds on the simulator's clock).
async fn both_calls_end_within_2_s_of(stack: &Stack, deadline: i64) {
    stack.finish_calls().await;
    let calls = stack.sim().calls();
    assert_eq!(calls.len(), 2);
    for call in calls {
        let ended = call.ended_at.unwrap().unix_timestamp();
        assert!(
            (deadline..=deadline + 2).contains(&ended),
            "{} ended {} s after its deadline",
            call.sid,
            ended - deadline
        );
    }
}

/// With Twilio elsewhere (no simulator), the stack keeps time on the wall clock: its
/// functions' "now" moves, and the minute sweep runs as the timers' safety net.
#[tokio::test]
async fn without_the_simulator_the_stack_keeps_wall_clock_time_and_sweeps() {
    let stack = stack_with(Options {
        // Nothing listens there; this test places no call.
        twilio_api_base_url: Some("http://127.0.0.1:9".into()),
        // A sweep every second rather than every minute, so the test waits seconds.
        sweep_every: Some(Duration::from_secs(1)),
        ..Options::default()
    })
    .await;
    assert!(stack.sim.is_none());
    let wall = || time::OffsetDateTime::now_utc().unix_timestamp();
    let started = wall();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let now = stack.app.now();
    assert!(
        (started + 2..=wall()).contains(&now),
        "the functions' clock stood still: {} s since the start",
        now - started
    );

    // A session that ends 2 s from now, with no call: only the sweep can close it.
    let store = &stack.app.store;
    store
        .add_number(&ProxyNumber {
            phone_number: PhoneNumber::parse(P1).unwrap(),
            is_reserved: false,
            in_use: 0,
            date_created: now,
            date_updated: now,
        })
        .await
        .unwrap();
    let session = due_session(now, 0, Some(now + 2), None);
    store.create_session(&session, now).await.unwrap();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(15);
    let closed = loop {
        let read = store.get_session(&session.sid).await.unwrap().unwrap();
        if !read.status.is_open() || tokio::time::Instant::now() > give_up {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (closed.status, closed.closed_reason.as_deref()),
        (SessionStatus::Closed, Some("expired")),
        "{closed:?}"
    );
}
