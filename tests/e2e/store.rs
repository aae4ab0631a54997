//! The store and the secret cache through the real AWS SDK against the emulator: the
//! conditional writes behind I2/I3, callbacks that arrive late or twice, idempotency
//! records, and a rotated auth token.

use std::time::Duration;

use crate::common::*;
use tsunagu::model::{CallStatus, Interaction, ProxyNumber, Session, SessionStatus};
use tsunagu::phone::{NumberClass, PhoneNumber};
use tsunagu::pricing::Direction;
use tsunagu::store::{Claim, Recorded, RouteCheck, StoreError};
use tsunagu_tests::stack::Stack;

fn n(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

async fn open_session(stack: &Stack, ttl: u64) -> Session {
    let store = &stack.app.store;
    let now = stack.app.now();
    for p in [P1] {
        store
            .add_number(&ProxyNumber {
                phone_number: n(p),
                is_reserved: false,
                in_use: 0,
                date_created: now,
                date_updated: now,
            })
            .await
            .unwrap();
    }
    let mut session = session_fixture(now, A, B, P1);
    session.ttl = ttl;
    store.create_session(&session, now).await.unwrap();
    session
}

fn leg(session: &Session, call_sid: &str, status: CallStatus, duration: u64) -> Interaction {
    Interaction {
        sid: tsunagu::ids::new_sid("KI"),
        session_sid: session.sid.clone(),
        call_sid: call_sid.into(),
        parent_call_sid: Some("CAparent".into()),
        direction: Direction::Outbound,
        twilio_direction: tsunagu::model::TwilioDirection::OutboundDial,
        from_masked: "+8150****4567".into(),
        to_masked: "+8180****5432".into(),
        from_participant_sid: None,
        to_participant_sid: None,
        callee_class: NumberClass::Mobile,
        status,
        duration,
        billed_minutes: duration.div_ceil(60),
        cost_milli_yen: duration.div_ceil(60) * 16_200,
        date_created: 0,
        date_updated: 0,
        date_ended: None,
        recording: Default::default(),
    }
}

#[tokio::test]
async fn callbacks_out_of_order_or_twice_never_move_a_leg_backwards() {
    let stack = stack().await;
    let store = &stack.app.store;
    let session = open_session(&stack, 0).await;
    let now = stack.app.now();

    assert_eq!(
        store
            .record_leg(&leg(&session, "CA1", CallStatus::Ringing, 0), now, 86_400)
            .await
            .unwrap(),
        Recorded::Updated
    );
    assert_eq!(
        store
            .record_leg(
                &leg(&session, "CA1", CallStatus::Completed, 65),
                now,
                86_400
            )
            .await
            .unwrap(),
        Recorded::Updated
    );
    // Twilio retries and reorders: an older status and a second final one change nothing.
    assert_eq!(
        store
            .record_leg(
                &leg(&session, "CA1", CallStatus::InProgress, 0),
                now,
                86_400
            )
            .await
            .unwrap(),
        Recorded::Stale
    );
    assert_eq!(
        store
            .record_leg(&leg(&session, "CA1", CallStatus::Busy, 0), now, 86_400)
            .await
            .unwrap(),
        Recorded::Stale
    );
    let stored = store
        .get_interaction(&session.sid, "CA1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.status, stored.duration, stored.cost_milli_yen),
        (CallStatus::Completed, 65, 32_400)
    );

    let after = store.get_session(&session.sid).await.unwrap().unwrap();
    assert_eq!(after.status, SessionStatus::InProgress);
    assert_eq!(after.date_last_interaction, Some(now));
}

#[tokio::test]
async fn closing_is_one_transaction_and_only_one_close_wins() {
    let stack = stack().await;
    let store = &stack.app.store;
    let session = open_session(&stack, 0).await;
    let now = stack.app.now();
    let (first, second) = tokio::join!(
        store.close_session(&session, "closed-by-api", now, now + 90),
        store.close_session(&session, "expired", now, now + 90),
    );
    let outcomes = [first.is_ok(), second.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "exactly one close wins: {first:?} {second:?}"
    );
    let loser = if first.is_ok() { second } else { first };
    assert!(matches!(loser, Err(StoreError::ConditionFailed)));
    let closed = store.get_session(&session.sid).await.unwrap().unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    assert!(store.get_route(&n(P1), &n(A)).await.unwrap().is_none());
    assert_eq!(
        store.get_number(&n(P1)).await.unwrap().unwrap().in_use,
        0,
        "released once, not twice"
    );

    // A callback for a call that outlived the session is still logged, for its cost.
    let late = store
        .record_leg(
            &leg(&session, "CA9", CallStatus::Completed, 30),
            now,
            86_400,
        )
        .await
        .unwrap();
    assert_eq!(late, Recorded::SessionClosed);
    assert_eq!(
        store
            .get_session(&session.sid)
            .await
            .unwrap()
            .unwrap()
            .status,
        SessionStatus::Closed,
        "closed stays closed"
    );
    // A callback naming a session that never existed is refused.
    let mut ghost = session.clone();
    ghost.sid = "KC00000000000000000000000000000000".into();
    assert!(matches!(
        store
            .record_leg(&leg(&ghost, "CA8", CallStatus::Completed, 1), now, 1)
            .await,
        Err(StoreError::ConditionFailed)
    ));
}

#[tokio::test]
async fn an_inbound_leg_needs_an_open_active_session() {
    let stack = stack().await;
    let store = &stack.app.store;
    let session = open_session(&stack, 60).await;
    let now = stack.app.now();
    let (p1, a) = (n(P1), n(A));
    let route = (&p1, &a);
    let mut inbound = leg(&session, "CA1", CallStatus::InProgress, 0);
    inbound.parent_call_sid = None;
    // Past the ttl with no interaction since creation: refused.
    assert!(
        !store
            .start_inbound_leg(&inbound, route, None, now + 61, 86_400)
            .await
            .unwrap()
    );
    assert!(
        store
            .start_inbound_leg(&inbound, route, None, now + 30, 86_400)
            .await
            .unwrap()
    );
    assert_eq!(
        store.session_of_call("CA1").await.unwrap().as_deref(),
        Some(session.sid.as_str())
    );
    // The same webhook again (Twilio retried): accepted, logged once.
    assert!(
        store
            .start_inbound_leg(&inbound, route, None, now + 31, 86_400)
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_interactions(&session.sid).await.unwrap().len(),
        1
    );
    // Activity restarted the ttl: 60 s after the last interaction, not after creation.
    let mut second = leg(&session, "CA2", CallStatus::InProgress, 0);
    second.parent_call_sid = None;
    assert!(
        store
            .start_inbound_leg(&second, route, None, now + 85, 86_400)
            .await
            .unwrap()
    );
    assert!(
        !store
            .start_inbound_leg(
                &leg(&session, "CA3", CallStatus::InProgress, 0),
                route,
                None,
                now + 200,
                86_400
            )
            .await
            .unwrap()
    );
}

/// The one write `inbound-call` makes for a plain call, against the emulator: it proves the
/// route live and returns it, says why not when it is not (without a second read), and a
/// close ordered before it wins.
#[tokio::test]
async fn a_call_is_admitted_by_one_conditional_write_on_its_route() {
    let stack = stack().await;
    let store = &stack.app.store;
    let session = open_session(&stack, 60).await;
    let now = stack.app.now();
    let (p1, a, b) = (n(P1), n(A), n(B));
    let RouteCheck::Open(route, prior) = store.admit_route(&p1, &a, "CA1", now + 10).await.unwrap()
    else {
        panic!("an open session's route is live");
    };
    assert_eq!(route.session_sid, session.sid);
    assert_eq!(route.other_identifier, b);
    assert_eq!(route.last_call_sid.as_deref(), Some("CA1"));
    assert_eq!(route.last_call_at, Some(now + 10));
    assert_eq!(
        route.inactive_after,
        Some(now + 70),
        "the route's ttl restarted"
    );
    assert_eq!(prior.last_call_sid, None);
    assert_eq!(prior.inactive_after, Some(now + 60), "as created");
    let stored = store.get_route(&p1, &a).await.unwrap().unwrap();
    assert_eq!(stored, route, "what came back is what is stored");
    // A call the platform blocked: its note is taken back, and only its own.
    let RouteCheck::Open(_, before_blocked) =
        store.admit_route(&p1, &a, "CA9", now + 20).await.unwrap()
    else {
        panic!("still live");
    };
    assert!(
        !store
            .forget_call(&p1, &a, "CA8", &before_blocked)
            .await
            .unwrap(),
        "not its note"
    );
    assert!(
        store
            .forget_call(&p1, &a, "CA9", &before_blocked)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_route(&p1, &a).await.unwrap().unwrap(),
        route,
        "back to CA1's note"
    );
    // Past the route's copy of the ttl: the route as it was, without a second request.
    let idle = store.admit_route(&p1, &a, "CA2", now + 71).await.unwrap();
    assert!(
        matches!(&idle, RouteCheck::Idle(r) if r.last_call_sid.as_deref() == Some("CA1")),
        "{idle:?}"
    );
    // A stranger has no route.
    let stranger = store
        .admit_route(&p1, &n("090-5555-6666"), "CA3", now)
        .await
        .unwrap();
    assert_eq!(stranger, RouteCheck::Missing);
    // Closing deletes the routes in the close transaction: a call ordered after it is refused.
    store
        .close_session(&session, "closed-by-api", now + 20, now + 90)
        .await
        .unwrap();
    let after_close = store.admit_route(&p1, &b, "CA4", now + 21).await.unwrap();
    assert_eq!(after_close, RouteCheck::Missing);
    assert!(
        store.get_route(&p1, &b).await.unwrap().is_none(),
        "nothing was created"
    );
}

/// A session with a `date_expiry`: its route refuses calls from that instant, before the
/// sweep has closed it.
#[tokio::test]
async fn a_route_past_its_date_expiry_is_ended() {
    let stack = stack().await;
    let store = &stack.app.store;
    let now = stack.app.now();
    store
        .add_number(&ProxyNumber {
            phone_number: n(P1),
            is_reserved: false,
            in_use: 0,
            date_created: now,
            date_updated: now,
        })
        .await
        .unwrap();
    let mut session = session_fixture(now, A, B, P1);
    session.date_expiry = Some(now + 100);
    store.create_session(&session, now).await.unwrap();
    let check = store
        .admit_route(&n(P1), &n(A), "CA1", now + 100)
        .await
        .unwrap();
    assert!(
        matches!(check, RouteCheck::Ended(r) if r.last_call_sid.is_none()),
        "unchanged"
    );
}

#[tokio::test]
async fn idempotency_records_move_from_claimed_to_completed() {
    let stack = stack().await;
    let store = &stack.app.store;
    let now = stack.app.now();
    assert_eq!(
        store
            .claim_idempotency_key("k1", "h1", now, 3600, 60)
            .await
            .unwrap(),
        Claim::New
    );
    assert_eq!(
        store
            .claim_idempotency_key("k1", "h1", now, 3600, 60)
            .await
            .unwrap(),
        Claim::InProgress {
            request_hash: "h1".into()
        }
    );
    store
        .complete_idempotency_key("k1", 201, "{\"sid\":\"KC1\"}")
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency_key("k1", "h1", now + 10, 3600, 60)
            .await
            .unwrap(),
        Claim::Completed {
            request_hash: "h1".into(),
            status: 201,
            body: "{\"sid\":\"KC1\"}".into()
        }
    );
    // Expired records are checked in code, whatever DynamoDB's TTL deletion is doing.
    assert_eq!(
        store
            .claim_idempotency_key("k1", "h2", now + 3601, 3600, 60)
            .await
            .unwrap(),
        Claim::New
    );
    // An abandoned claim (the function died) is taken over after its in-progress window.
    assert_eq!(
        store
            .claim_idempotency_key("k2", "h", now, 3600, 60)
            .await
            .unwrap(),
        Claim::New
    );
    assert_eq!(
        store
            .claim_idempotency_key("k2", "h", now + 61, 3600, 60)
            .await
            .unwrap(),
        Claim::New
    );
    // A failed request releases its key.
    store.release_idempotency_key("k2").await.unwrap();
    assert_eq!(
        store
            .claim_idempotency_key("k2", "h", now + 62, 3600, 60)
            .await
            .unwrap(),
        Claim::New
    );
}

#[tokio::test]
async fn a_rotated_auth_token_is_picked_up_after_one_failed_signature() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let url = format!("{}/twilio/voice/inbound", stack.url);
    let form = vec![
        ("CallSid".to_string(), "CA5".to_string()),
        ("From".into(), "+817011112222".into()),
        ("To".into(), "+815031234567".into()),
    ];
    let send = |token: &str| {
        let signature = tsunagu::signature::compute(token, &url, &form);
        stack
            .http
            .post(&url)
            .header("x-twilio-signature", signature)
            .form(&form)
            .send()
    };
    assert_eq!(
        send(tsunagu_tests::stack::AUTH_TOKEN)
            .await
            .unwrap()
            .status(),
        200,
        "cached token works"
    );

    let secrets = aws_sdk_secretsmanager::Client::new(&stack.aws);
    secrets
        .put_secret_value()
        .secret_id(format!("tsunagu/twilio/{}", stack.table))
        .secret_string(r#"{"account_sid":"AC0123456789abcdef0123456789abcdef","auth_token":"rotated-token-0000000000000000000"}"#)
        .send()
        .await
        .unwrap();
    // Right after a fetch the cache refuses to refetch (a flood of bad signatures must not
    // become a flood of Secrets Manager calls)...
    assert_eq!(
        send("rotated-token-0000000000000000000")
            .await
            .unwrap()
            .status(),
        403
    );
    // ...but once that short window has passed, one failed check refetches and succeeds.
    // (Each function keeps its own cache, as each Lambda container does.)
    stack.gateway.apps["inbound-call"]
        .secrets
        .age_for_test(Duration::from_secs(31))
        .await;
    assert_eq!(
        send("rotated-token-0000000000000000000")
            .await
            .unwrap()
            .status(),
        200
    );
    // During the rotation the previous token (AWSPREVIOUS) is still accepted: Twilio may
    // sign with either until the operator promotes the new one there.
    assert_eq!(
        send(tsunagu_tests::stack::AUTH_TOKEN)
            .await
            .unwrap()
            .status(),
        200,
        "the previous token still works"
    );
    // A second rotation moves AWSPREVIOUS onto the first rotated token: the original one goes.
    secrets
        .put_secret_value()
        .secret_id(format!("tsunagu/twilio/{}", stack.table))
        .secret_string(r#"{"account_sid":"AC0123456789abcdef0123456789abcdef","auth_token":"rotated-token-1111111111111111111"}"#)
        .send()
        .await
        .unwrap();
    stack.gateway.apps["inbound-call"]
        .secrets
        .age_for_test(Duration::from_secs(301))
        .await;
    for (token, status) in [
        ("rotated-token-1111111111111111111", 200),
        ("rotated-token-0000000000000000000", 200),
        (tsunagu_tests::stack::AUTH_TOKEN, 403),
    ] {
        assert_eq!(send(token).await.unwrap().status(), status, "{token}");
    }
}

/// The review's outage: Secrets Manager stops answering one function (its endpoint is a
/// relay the test cuts; the emulator goes on serving the other tests). A token cached
/// before the outage goes on deciding: forged requests are refused with 403, signed ones
/// get their TwiML, and the failed refresh is not repeated for every forged request.
#[tokio::test]
async fn with_secrets_manager_gone_forged_webhooks_get_403_and_signed_ones_twiml() {
    let relay = tsunagu_tests::relay::Relay::start(&tsunagu_tests::stack::emulator_url().unwrap())
        .await
        .unwrap();
    let stack = stack_with(tsunagu_tests::stack::Options {
        secrets_endpoint: Some(relay.url.clone()),
        ..Default::default()
    })
    .await;
    stack.add_proxy_number(P1).await;
    let (status, _) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201);
    let url = format!("{}/twilio/voice/inbound", stack.url);
    let send = |call: &str, from: &str, signature: Option<&str>| {
        let form = vec![
            ("CallSid".to_string(), call.to_string()),
            ("From".into(), e164(from)),
            ("To".into(), e164(P1)),
        ];
        let signature = signature.map(str::to_owned).unwrap_or_else(|| {
            tsunagu::signature::compute(tsunagu_tests::stack::AUTH_TOKEN, &url, &form)
        });
        stack
            .http
            .post(&url)
            .header("x-twilio-signature", signature)
            .form(&form)
            .send()
    };
    let forged = Some("Zm9yZ2VkIHNpZ25hdHVyZQ==");
    let twiml = |body: &str| body.starts_with("<?xml") && body.contains("<Response>");

    let first = send("CA00000000000000000000000000000001", A, None)
        .await
        .unwrap();
    assert_eq!(first.status(), 200, "the token is fetched and cached");
    relay.cut();

    // The refresh a mismatch may trigger is due, but Secrets Manager is gone: still 403.
    let cache = &stack.gateway.apps["inbound-call"].secrets;
    cache
        .age_for_test(tsunagu::secrets::MIN_FORCED_REFRESH_INTERVAL)
        .await;
    let r = send("CA00000000000000000000000000000002", A, forged)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let tried = relay.refused();
    assert!(tried > 0, "the refresh was attempted");
    for i in 0..20 {
        let r = send(&format!("CA1000000000000000000000000000{i:04}"), A, forged)
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    assert_eq!(
        relay.refused(),
        tried,
        "the failed refresh counts in the limiter"
    );

    // Even past the cache's five minutes, the cached token decides both ways.
    cache.age_for_test(tsunagu::secrets::CACHE_FOR).await;
    let r = send("CA00000000000000000000000000000003", B, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(twiml(&body) && body.contains("<Dial"), "{body}");
    let r = send("CA00000000000000000000000000000004", B, forged)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
