//! Masked calls end to end: the simulator dials the proxy numbers, the gateway hands the
//! signed webhooks to the real handlers, the emulator keeps the state.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tsunagu_tests::simulator::{CallerScript, PhoneScript, WITHHELD};
use tsunagu_tests::stack::Options;

async fn session(
    stack: &tsunagu_tests::stack::Stack,
    body: serde_json::Value,
) -> serde_json::Value {
    let (status, s) = stack.api("POST", "/v1/sessions", Some(body)).await;
    assert_eq!(status, 201, "{s}");
    s
}

fn proxy(s: &serde_json::Value, i: usize) -> String {
    s["participants"][i]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_masked_call_goes_both_ways_and_is_logged_with_its_cost() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    let sid = s["sid"].as_str().unwrap();
    let (a, b, p) = (e164(A), e164(B), proxy(&s, 0));
    let sim = stack.sim();

    // A calls the proxy number; B answers after 3 s and talks 65 s.
    sim.set_phone(
        &b,
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(65)),
    );
    let parent = sim.dial_in(&a, &p, CallerScript::default()).await;
    stack.finish_calls().await;

    let calls = sim.calls();
    let child = calls
        .iter()
        .find(|c| c.parent_sid.as_deref() == Some(parent.as_str()))
        .expect("B was dialled");
    assert_eq!(child.to, b);
    assert_eq!(child.from, p, "B sees the proxy number, never A's");
    assert_eq!(child.duration_secs, 65);
    assert!(sim.heard_by(&a).is_empty(), "A heard no refusal");

    let (_, got) = stack.api("GET", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(
        got["status"], "in-progress",
        "the first call moves the session on"
    );
    assert!(got["date_last_interaction"].is_string());

    let (status, log) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    assert_eq!(status, 200);
    let legs = log["interactions"].as_array().unwrap();
    assert_eq!(legs.len(), 2, "{log}");
    let inbound = legs.iter().find(|l| l["direction"] == "inbound").unwrap();
    let outbound = legs.iter().find(|l| l["direction"] == "outbound").unwrap();
    assert_eq!(inbound["call_sid"], parent.as_str());
    assert_eq!(
        inbound["from"], "+8190****5678",
        "numbers are masked in the log"
    );
    assert_eq!(inbound["status"], "completed");
    assert_eq!(outbound["status"], "completed");
    assert_eq!(outbound["duration"], 65);
    assert_eq!(outbound["billed_minutes"], 2);
    assert_eq!(
        outbound["cost"], 32.4,
        "two started minutes to a mobile at 16.2 JPY"
    );
    assert_eq!(outbound["to"], "+8180****5432");
    assert_eq!(outbound["parent_call_sid"], parent.as_str());
    let inbound_minutes = inbound["billed_minutes"].as_u64().unwrap();
    assert_eq!(
        inbound["cost"],
        json!(inbound_minutes),
        "the caller's leg at 1 JPY/min"
    );
    assert_eq!(
        log["total_cost"].as_f64().unwrap(),
        32.4 + inbound_minutes as f64
    );

    // B calls back the number they saw and reaches A, who sees B's proxy number.
    sim.set_phone(
        &a,
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(30)),
    );
    let back = sim
        .dial_in(&b, &proxy(&s, 1), CallerScript::default())
        .await;
    stack.finish_calls().await;
    let child = sim
        .calls()
        .into_iter()
        .find(|c| c.parent_sid.as_deref() == Some(back.as_str()))
        .expect("A was dialled");
    assert_eq!(
        (child.to.as_str(), child.from.as_str()),
        (a.as_str(), p.as_str())
    );
    let (_, log) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    assert_eq!(log["interactions"].as_array().unwrap().len(), 4);
}

/// 060-1… to 060-9… are mobile numbers since the numbering plan's change of 2024-12-20: such
/// a participant joins a session, is reached, and their leg is priced as a mobile.
#[tokio::test]
async fn a_060_participant_is_reached_and_billed_at_the_mobile_rate() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, "060-1234-5678")).await;
    assert_eq!(s["participants"][1]["identifier"], "+816012345678", "{s}");
    let sim = stack.sim();
    sim.set_phone(
        "+816012345678",
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(65)),
    );
    sim.dial_in(&e164(A), &proxy(&s, 0), CallerScript::default())
        .await;
    stack.finish_calls().await;

    let (_, log) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}/interactions", sid(&s)),
            None,
        )
        .await;
    let legs = log["interactions"].as_array().unwrap();
    let outbound = legs
        .iter()
        .find(|l| l["direction"] == "outbound")
        .unwrap_or_else(|| panic!("the 060 party was dialled: {log}"));
    assert_eq!(outbound["to"], "+8160****5678");
    assert_eq!(outbound["status"], "completed");
    assert_eq!(outbound["billed_minutes"], 2);
    // Every other Japanese class defaults to the landline rate, 5.4 JPY (10.8 here).
    assert_eq!(
        outbound["cost"], 32.4,
        "two started minutes to a mobile at 16.2 JPY: {outbound}"
    );
}

/// Issue 12: a masked call costs `inbound-call` one DynamoDB request per webhook — counted
/// where every request of the function passes (the local IAM interceptor) — and keeps its
/// guarantees: the caller's leg is logged once with its cost although Twilio retried the
/// webhook with the same CallSid, and the ttl restarts on the session and on the route.
#[tokio::test]
async fn a_masked_call_costs_inbound_call_one_dynamodb_request_per_webhook() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let mut body = session_body(A, B);
    body["ttl"] = json!(3600);
    let s = session(&stack, body).await;
    let sid = s["sid"].as_str().unwrap();
    let (a, b, p) = (e164(A), e164(B), proxy(&s, 0));
    let sim = stack.sim();
    let requests_before = stack.dynamodb_requests("inbound-call").len();
    let started = stack.app.now();

    sim.set_phone(
        &b,
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(65)),
    );
    let parent = sim.dial_in(&a, &p, CallerScript::default()).await;
    // Twilio retries the webhook with the same CallSid (its first answer was lost).
    let url = format!("{}/twilio/voice/inbound", stack.url);
    let form = vec![
        ("CallSid".to_string(), parent.clone()),
        ("From".into(), a.clone()),
        ("To".into(), p.clone()),
        ("Direction".into(), "inbound".into()),
    ];
    let signature = tsunagu::signature::compute(tsunagu_tests::stack::AUTH_TOKEN, &url, &form);
    let retry = stack
        .http
        .post(&url)
        .header("x-twilio-signature", signature)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    assert!(
        retry.text().await.unwrap().contains("<Dial"),
        "answered alike"
    );
    stack.finish_calls().await;

    // The simulator's webhooks to inbound-call: the call's, then its dial's action.
    let webhooks = |path: &str| {
        sim.webhook_timings()
            .iter()
            .filter(|w| w.url.split('?').next().unwrap().ends_with(path))
            .count()
    };
    assert_eq!(webhooks("/twilio/voice/inbound"), 1);
    assert_eq!(webhooks("/twilio/voice/inbound/dial-result"), 1);
    let made = stack.dynamodb_requests("inbound-call")[requests_before..].to_vec();
    assert_eq!(
        made,
        ["UpdateItem", "UpdateItem"],
        "one conditional write on the route for the call and one for its retry; none for the dial's action"
    );

    // call-status: one transaction per callback of B's dialled leg (which also writes the
    // caller's call reference); the caller's final callback reads that reference and the
    // session (participants, room or not) once, then logs the leg.
    let callbacks = webhooks("/twilio/voice/status");
    assert_eq!(
        callbacks, 5,
        "B's initiated, ringing, answered, completed; A's completed"
    );
    let status_requests = stack.dynamodb_requests("call-status");
    let count = |op: &str| status_requests.iter().filter(|o| **o == op).count();
    assert_eq!(
        (
            count("TransactWriteItems"),
            count("GetItem"),
            status_requests.len()
        ),
        (5, 2, 7),
        "{status_requests:?}"
    );

    // The caller's leg is logged once, whole, with its cost, first in the log.
    let (_, log) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    let legs = log["interactions"].as_array().unwrap();
    assert_eq!(legs.len(), 2, "{log}");
    let inbound = &legs[0];
    assert_eq!(
        inbound["call_sid"],
        parent.as_str(),
        "the caller's leg first: {log}"
    );
    assert_eq!(inbound["direction"], "inbound");
    assert_eq!(inbound["from"], "+8190****5678");
    assert_eq!(inbound["status"], "completed");
    let minutes = inbound["billed_minutes"].as_u64().unwrap();
    assert!(minutes >= 2, "{inbound}");
    assert_eq!(
        inbound["cost"],
        json!(minutes),
        "the caller's leg at 1 JPY/min"
    );
    let stored = stack
        .app
        .store
        .get_interaction(sid, &parent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.from_participant_sid.as_deref(),
        s["participants"][0]["sid"].as_str()
    );
    assert_eq!(
        stored.to_participant_sid.as_deref(),
        s["participants"][1]["sid"].as_str()
    );
    assert_eq!(
        log["total_cost"].as_f64().unwrap(),
        32.4 + minutes as f64,
        "both legs' costs on the session"
    );

    // The ttl restarted: on the route by the admitting write, on the session by the legs'
    // callbacks.
    let route = stack
        .app
        .store
        .get_route(
            &tsunagu::phone::PhoneNumber::parse(&p).unwrap(),
            &tsunagu::phone::PhoneNumber::parse(&a).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let admitted = route.last_call_at.unwrap();
    assert_eq!(route.last_call_sid.as_deref(), Some(parent.as_str()));
    assert!(admitted >= started);
    assert_eq!(route.inactive_after, Some(admitted + 3600));
    let session = stack.app.store.get_session(sid).await.unwrap().unwrap();
    let last = session.date_last_interaction.unwrap();
    assert!(
        last >= admitted + 65,
        "restarted by the legs' last callbacks: {last} vs {admitted}"
    );
    assert_eq!(session.inactive_after(), Some(last + 3600));
    assert_eq!(
        stored.date_created, admitted,
        "the caller's leg starts when it was admitted"
    );
}

#[tokio::test]
async fn a_withheld_caller_is_asked_to_call_again_with_the_number_shown() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    let p = proxy(&s, 0);
    let sim = stack.sim();

    // A participant who dialled 184 (or whose line withholds the number) calls the proxy.
    sim.dial_in(WITHHELD, &p, CallerScript::default()).await;
    stack.finish_calls().await;
    let heard = sim.heard_by(WITHHELD);
    assert_eq!(
        heard,
        vec![
            "番号を通知しておかけ直しください。電話番号の前に186をつけておかけください。"
                .to_owned()
        ],
        "not 「現在お取り扱いしておりません」"
    );
    assert!(
        !sim.calls().iter().any(|c| c.direction == "outbound-dial"),
        "nobody was dialled"
    );
    let (_, log) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}/interactions", sid(&s)),
            None,
        )
        .await;
    assert_eq!(
        log["interactions"].as_array().map(Vec::len),
        Some(0),
        "no leg is logged on the session: {log}"
    );
}

#[tokio::test]
async fn strangers_and_closed_sessions_are_refused_in_japanese() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    let sid = s["sid"].as_str().unwrap();
    let p = proxy(&s, 0);
    let sim = stack.sim();

    let stranger = e164("070-1111-2222");
    sim.dial_in(&stranger, &p, CallerScript::default()).await;
    stack.finish_calls().await;
    let heard = sim.heard_by(&stranger);
    assert_eq!(heard.len(), 1);
    assert!(heard[0].contains("お取り扱いしておりません"), "{heard:?}");
    assert!(
        !sim.calls().iter().any(|c| c.direction == "outbound-dial"),
        "nobody was dialled"
    );

    let (status, _) = stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    assert_eq!(status, 200);
    sim.dial_in(&e164(A), &p, CallerScript::default()).await;
    stack.finish_calls().await;
    assert_eq!(
        sim.heard_by(&e164(A)).len(),
        1,
        "A is refused once the session is closed"
    );
    assert!(!sim.calls().iter().any(|c| c.direction == "outbound-dial"));
    let (_, log) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    assert!(
        log["interactions"].as_array().unwrap().is_empty(),
        "refused calls are not session interactions"
    );
}

#[tokio::test]
async fn an_expired_session_routes_nothing_and_limits_calls_to_its_end() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let now = stack.clock.now();
    let expiry = (now + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let s = session(&stack, json!({"date_expiry": expiry, "call_time_limit": 3600, "warning_lead": 0, "participants": [{"identifier": A}, {"identifier": B}]})).await;
    let p = proxy(&s, 0);
    let sim = stack.sim();

    // Without a spoken warning the call is a plain <Dial>, cut by its timeLimit.
    // B would talk for an hour; the session ends in ten minutes, and so does the call.
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(1), Duration::from_secs(3600)),
    );
    let parent = sim.dial_in(&e164(A), &p, CallerScript::default()).await;
    stack.finish_calls().await;
    let child = sim
        .calls()
        .into_iter()
        .find(|c| c.parent_sid.as_deref() == Some(parent.as_str()))
        .unwrap();
    assert!(
        child.duration_secs <= 600,
        "cut by <Dial timeLimit> at the session's end: {}",
        child.duration_secs
    );
    assert!(child.duration_secs >= 590, "{}", child.duration_secs);

    // The minute sweep closes the session once its date_expiry has passed.
    sim.advance(Duration::from_secs(700)).await;
    let (_, closed) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}", s["sid"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (closed["status"].as_str(), closed["closed_reason"].as_str()),
        (Some("closed"), Some("expired")),
        "{closed}"
    );
    sim.dial_in(&e164(A), &p, CallerScript::default()).await;
    stack.finish_calls().await;
    let heard = sim.heard_by(&e164(A));
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(heard[0].contains("お取り扱いしておりません"), "{heard:?}");
}

#[tokio::test]
async fn an_expired_route_is_refused_even_before_the_sweep_closes_it() {
    let stack = stack_with(Options {
        sweep_every: None,
        ..Options::default()
    })
    .await;
    stack.add_proxy_number(P1).await;
    let expiry = (stack.clock.now() + time::Duration::minutes(5))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let s = session(&stack, json!({"date_expiry": expiry, "warning_lead": 0, "participants": [{"identifier": A}, {"identifier": B}]})).await;
    stack.sim().advance(Duration::from_secs(301)).await;
    stack
        .sim()
        .dial_in(&e164(A), &proxy(&s, 0), CallerScript::default())
        .await;
    stack.finish_calls().await;
    let heard = stack.sim().heard_by(&e164(A));
    assert!(
        heard.len() == 1 && heard[0].contains("終了しました"),
        "{heard:?}"
    );
}

#[tokio::test]
async fn a_busy_party_is_logged_at_no_cost() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    stack.sim().set_phone(&e164(B), PhoneScript::Busy);
    stack
        .sim()
        .dial_in(&e164(A), &proxy(&s, 0), CallerScript::default())
        .await;
    stack.finish_calls().await;
    let (_, log) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}/interactions", s["sid"].as_str().unwrap()),
            None,
        )
        .await;
    let outbound = log["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["direction"] == "outbound")
        .cloned()
        .unwrap();
    assert_eq!(outbound["status"], "busy");
    assert_eq!(outbound["cost"], 0);
}

#[tokio::test]
async fn closing_a_session_ends_its_live_call() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    let sim = stack.sim();
    let parent = sim
        .dial_in(&e164(A), &proxy(&s, 0), CallerScript::default())
        .await;
    sim.advance(Duration::from_secs(40)).await; // B answered after 3 s; they are talking.
    assert!(
        sim.calls().iter().all(|c| c.ended_at.is_none()),
        "still talking"
    );

    let (status, _) = stack
        .api(
            "DELETE",
            &format!("/v1/sessions/{}", s["sid"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    sim.settle().await;
    for call in sim.calls() {
        assert_eq!(call.status, "completed", "{} ended by the close", call.sid);
    }
    let (_, log) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{}/interactions", s["sid"].as_str().unwrap()),
            None,
        )
        .await;
    let legs = log["interactions"].as_array().unwrap();
    assert_eq!(
        legs.len(),
        2,
        "both legs logged although the session closed mid-call: {log}"
    );
    assert!(legs.iter().all(|l| l["status"] == "completed"));
    assert!(
        legs.iter()
            .any(|l| l["call_sid"] == parent.as_str() && l["duration"].as_u64().unwrap() >= 37)
    );
}

#[tokio::test]
async fn webhooks_refuse_unsigned_and_wrongly_signed_requests() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    let before = item_count(&stack).await;
    let form = [
        ("CallSid", "CA99999999999999999999999999999999"),
        ("From", "+819012345678"),
        ("To", "+815031234567"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ];
    let url = format!("{}/twilio/voice/inbound", stack.url);
    let good = tsunagu::signature::compute(
        tsunagu_tests::stack::AUTH_TOKEN,
        &url,
        &form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    );

    let unsigned = stack.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(unsigned.status(), 403);
    let forged = stack
        .http
        .post(&url)
        .header("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // A correct signature over other parameters does not carry over.
    let mut tampered = form;
    tampered[1].1 = "+818098765432";
    let replayed = stack
        .http
        .post(&url)
        .header("x-twilio-signature", &good)
        .form(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 403);
    let status_url = format!(
        "{}/twilio/voice/status?session={}",
        stack.url,
        s["sid"].as_str().unwrap()
    );
    let forged_status = stack
        .http
        .post(&status_url)
        .header("x-twilio-signature", &good)
        .form(&[
            ("CallSid", "CA1"),
            ("CallStatus", "completed"),
            ("CallDuration", "600"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged_status.status(), 403);
    // The whisper, too: unsigned, or with another request's signature, it tells nothing
    // (not even a participant's announcement).
    let whisper_url = format!(
        "{}/twilio/voice/inbound/whisper?session={}&participant={}",
        stack.url,
        s["sid"].as_str().unwrap(),
        s["participants"][1]["sid"].as_str().unwrap()
    );
    let whisper_form = [
        ("CallSid", "CA98989898989898989898989898989898"),
        ("CallStatus", "in-progress"),
        ("Direction", "outbound-dial"),
    ];
    for signature in [None, Some(good.as_str())] {
        let mut request = stack.http.post(&whisper_url).form(&whisper_form);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 403, "whisper, signature {signature:?}");
    }
    assert_eq!(
        item_count(&stack).await,
        before,
        "refused webhooks wrote nothing"
    );

    // The genuine request goes through and is answered with TwiML.
    let ok = stack
        .http
        .post(&url)
        .header("x-twilio-signature", &good)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("<Dial"));
}

#[tokio::test]
async fn oversized_foreign_and_crowded_webhooks_are_refused_before_parsing() {
    let stack = stack().await;
    let url = format!("{}/twilio/voice/inbound", stack.url);
    let form = "application/x-www-form-urlencoded";
    let send = |content_type: &'static str, body: String| {
        stack
            .http
            .post(&url)
            .header("content-type", content_type)
            .header("x-twilio-signature", "Zm9yZ2Vk")
            .body(body)
            .send()
    };
    // The review's body: 4.5 MB of `a&`, 2.25 M empty pairs.
    let huge = send(form, "a&".repeat(2_250_000)).await.unwrap();
    assert_eq!(huge.status(), 413);
    let json = send("application/json", r#"{"CallSid":"CA1"}"#.into())
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    let crowded = send(form, vec!["a=1"; 201].join("&")).await.unwrap();
    assert_eq!(crowded.status(), 400);
    // Just inside the limits, a forged request is still a plain 403.
    let at_limit = send(form, vec!["a=1"; 200].join("&")).await.unwrap();
    assert_eq!(at_limit.status(), 403);
    assert_eq!(item_count(&stack).await, 0, "nothing was written");
}

#[tokio::test]
async fn the_intercept_url_can_block_a_call() {
    // The platform's intercept endpoint refuses every call with 403, as Twilio Proxy's does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let intercept = format!("http://{}/intercept", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/intercept",
        axum::routing::post(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { axum::http::StatusCode::FORBIDDEN }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let stack = stack_with(Options {
        env: vec![("INTERCEPT_CALLBACK_URL".into(), intercept)],
        ..Options::default()
    })
    .await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    stack
        .sim()
        .dial_in(&e164(A), &proxy(&s, 0), CallerScript::default())
        .await;
    stack.finish_calls().await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let heard = stack.sim().heard_by(&e164(A));
    assert!(
        heard.iter().any(|t| t.contains("おつなぎできません")),
        "{heard:?}"
    );
    assert!(
        !stack
            .sim()
            .calls()
            .iter()
            .any(|c| c.direction == "outbound-dial")
    );
}

/// `make call`'s endpoint on the gateway: a phone calls a proxy number, run to its end.
async fn local_call(
    stack: &tsunagu_tests::stack::Stack,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = stack
        .http
        .post(format!("{}/_local/calls", stack.url))
        .json(&body)
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn make_call_plays_the_other_phone_as_asked_and_reports_what_was_heard() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    let prompts = tsunagu::config::Prompts::default();

    // B's phone rings out: A hears why, and the log has the call.
    let (status, report) =
        local_call(&stack, json!({"from": A, "to": P1, "callee": "no-answer"})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["session_sid"], s["sid"]);
    assert_eq!(report["status"], "completed");
    let timeline: Vec<String> = serde_json::from_value(report["timeline"].clone()).unwrap();
    assert!(
        timeline
            .iter()
            .any(|l| l.contains(&prompts.other_no_answer)),
        "{timeline:#?}"
    );
    assert!(
        timeline.iter().all(|l| !l.contains("webhook")),
        "not verbose"
    );

    // B's phone is itself again afterwards: the next call is answered, and talks 65 s.
    let (_, report) = local_call(
        &stack,
        json!({"from": A, "to": P1, "talk": 65, "verbose": true}),
    )
    .await;
    let b_leg = stack
        .sim()
        .calls()
        .into_iter()
        .rfind(|c| c.to == e164(B))
        .unwrap();
    assert_eq!(
        (b_leg.status.as_str(), b_leg.duration_secs),
        ("completed", 65)
    );
    let timeline: Vec<String> = serde_json::from_value(report["timeline"].clone()).unwrap();
    assert!(
        timeline.iter().any(|l| l.contains("webhook")),
        "verbose lists webhooks"
    );

    // A stranger reaches no session and hears so.
    let (_, report) = local_call(&stack, json!({"from": "070-1111-2222", "to": P1})).await;
    assert_eq!(report["session_sid"], serde_json::Value::Null);
    let timeline: Vec<String> = serde_json::from_value(report["timeline"].clone()).unwrap();
    assert!(
        timeline.iter().any(|l| l.contains(&prompts.no_session)),
        "{timeline:#?}"
    );

    let (status, refused) = local_call(&stack, json!({"from": "not a phone", "to": P1})).await;
    assert_eq!(status, 400, "{refused}");
    let (status, _) = local_call(&stack, json!({"from": A})).await;
    assert_eq!(status, 400);
}

/// What a platform endpoint received: the signature header and the body, as sent.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>;

/// The platform's check, as the README shows it: HMAC-SHA256 over "<t>.<body>".
fn signed_by_tsunagu(header: &str, body: &str, key: &str) -> bool {
    use hmac::Mac;
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::decode(v1).is_ok_and(|v| mac.verify_slice(&v).is_ok())
}

#[tokio::test]
async fn callbacks_to_the_platform_are_signed_and_redirects_and_huge_answers_are_not_followed() {
    // The platform: /intercept lets calls through; /oos answers by `mode`: 0 a redirect to
    // /elsewhere (which would give TwiML), 1 a TwiML document over the size cap, 2 a small one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Default::default();
    let mode = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let elsewhere = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let record = |received: Received| {
        move |headers: axum::http::HeaderMap, body: String| {
            let sig = headers
                .get("tsunagu-signature")
                .map(|v| v.to_str().unwrap().to_owned());
            received.lock().unwrap().push((sig, body));
        }
    };
    let twiml = |text: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>{text}</Say><Hangup/></Response>"#
        )
    };
    let router = {
        let (r1, r2, mode, elsewhere) = (
            record(received.clone()),
            record(received.clone()),
            mode.clone(),
            elsewhere.clone(),
        );
        axum::Router::new()
            .route(
                "/intercept",
                axum::routing::post(move |h: axum::http::HeaderMap, b: String| async move {
                    r1(h, b);
                    axum::http::StatusCode::NO_CONTENT
                }),
            )
            .route(
                "/oos",
                axum::routing::post(move |h: axum::http::HeaderMap, b: String| async move {
                    r2(h, b);
                    use axum::response::IntoResponse;
                    match mode.load(std::sync::atomic::Ordering::SeqCst) {
                        0 => (
                            axum::http::StatusCode::TEMPORARY_REDIRECT,
                            [("location", "/elsewhere")],
                        )
                            .into_response(),
                        1 => twiml(&"長".repeat(30_000)).into_response(),
                        _ => twiml("プラットフォームの案内です").into_response(),
                    }
                }),
            )
            .route(
                "/elsewhere",
                axum::routing::post(move || async move {
                    elsewhere.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    twiml("転送先")
                }),
            )
    };
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let stack = stack_with(Options {
        env: vec![
            ("INTERCEPT_CALLBACK_URL".into(), format!("{base}/intercept")),
            ("OUT_OF_SESSION_CALLBACK_URL".into(), format!("{base}/oos")),
        ],
        ..Options::default()
    })
    .await;
    stack.add_proxy_number(P1).await;
    let s = session(&stack, session_body(A, B)).await;
    stack
        .sim()
        .dial_in(&e164(A), &proxy(&s, 0), CallerScript::default())
        .await;
    stack.finish_calls().await;
    let stranger = "+817011112222";
    for m in 0..3 {
        mode.store(m, std::sync::atomic::Ordering::SeqCst);
        stack
            .sim()
            .dial_in(stranger, &proxy(&s, 0), CallerScript::default())
            .await;
        stack.finish_calls().await;
    }

    let received = received.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        4,
        "one intercept, three out-of-session calls"
    );
    for (signature, body) in &received {
        let signature = signature.as_deref().expect("every callback is signed");
        assert!(
            signed_by_tsunagu(signature, body, tsunagu_tests::stack::CALLBACK_SIGNING_KEY),
            "{signature} over {body}"
        );
        assert!(!signed_by_tsunagu(
            signature,
            &format!("{body}&x=1"),
            tsunagu_tests::stack::CALLBACK_SIGNING_KEY
        ));
    }
    assert!(received[0].1.contains("interaction_type=voice"));
    assert_eq!(
        elsewhere.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
    let heard = stack.sim().heard_by(stranger);
    let no_session = &stack.app.config.prompts.no_session;
    assert_eq!(
        heard.iter().filter(|t| *t == no_session).count(),
        2,
        "the redirect and the oversized answer fall back to the default message: {heard:?}"
    );
    assert!(
        heard.iter().any(|t| t == "プラットフォームの案内です"),
        "{heard:?}"
    );
}
