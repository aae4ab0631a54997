//! The REST API: credentials, creating, reading and updating calls, injected failures, and
//! a webhook that calls it while Twilio waits.

use super::*;

#[tokio::test]
async fn rest_checks_credentials_and_account() {
    let (sim, _toy) = setup().await;
    let path = format!("{ACCOUNT}/Calls.json");
    let (status, body) = rest(&sim, reqwest::Method::GET, &path, (ACCOUNT, "wrong"), &[]).await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(20003)));
    assert_eq!(
        body["more_info"],
        "https://www.twilio.com/docs/errors/20003"
    );
    assert_eq!(body["status"], 401);

    let other = "AC99999999999999999999999999999999/Calls.json";
    let (status, body) = rest(&sim, reqwest::Method::GET, other, (ACCOUNT, TOKEN), &[]).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(20404)));

    let (status, _) = rest(&sim, reqwest::Method::GET, &path, KEY, &[]).await;
    assert_eq!(status, 200, "an API key is accepted");
    let rest_entries = sim
        .transcript()
        .into_iter()
        .filter(|e| matches!(e.event, Event::Rest { .. }))
        .count();
    assert_eq!(rest_entries, 3);
}

#[tokio::test]
async fn rest_creates_an_outbound_call_and_completes_it() {
    let (sim, toy) = setup().await;
    toy.route(
        "/bridge",
        200,
        r#"<Response><Say>Hello</Say><Pause length="600"/></Response>"#,
    );
    let path = format!("{ACCOUNT}/Calls.json");
    let bridge = toy.url("/bridge");
    let status_url = toy.url("/api-status");
    let form = [
        ("To", A),
        ("From", P),
        ("Url", bridge.as_str()),
        ("StatusCallback", status_url.as_str()),
        ("StatusCallbackEvent", "initiated ringing"),
        ("StatusCallbackEvent", "answered"),
        ("StatusCallbackEvent", "completed"),
    ];
    let (status, call) = rest(&sim, reqwest::Method::POST, &path, (ACCOUNT, TOKEN), &form).await;
    assert_eq!(status, 201);
    assert_eq!(call["status"], "queued");
    assert_eq!(call["direction"], "outbound-api");
    assert_eq!(
        (call["to"].as_str(), call["from"].as_str()),
        (Some(A), Some(P))
    );
    let sid = call["sid"].as_str().unwrap().to_owned();

    sim.settle().await;
    assert_eq!(sim.call(&sid).unwrap().status, "ringing");
    sim.advance(secs(3)).await;
    assert_eq!(sim.heard_by(A), ["Hello"]);
    let fetch = &toy.seen("/bridge")[0];
    assert_eq!(fetch.get("CallStatus"), Some("in-progress"));
    assert_eq!(fetch.get("Direction"), Some("outbound-api"));

    sim.advance(secs(10)).await;
    let call_path = format!("{ACCOUNT}/Calls/{sid}.json");
    let (status, call) = rest(
        &sim,
        reqwest::Method::POST,
        &call_path,
        KEY,
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(call["sid"], sid.as_str());
    sim.settle().await;

    let statuses: Vec<_> = toy
        .seen("/api-status")
        .iter()
        .map(|s| s.get("CallStatus").unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    assert_eq!(toy.seen("/api-status")[3].get("CallDuration"), Some("10"));
    let (status, call) = rest(
        &sim,
        reqwest::Method::GET,
        &call_path,
        (ACCOUNT, TOKEN),
        &[],
    )
    .await;
    assert_eq!(
        (status, call["status"].as_str(), call["duration"].as_str()),
        (200, Some("completed"), Some("10"))
    );

    let (status, body) = rest(
        &sim,
        reqwest::Method::GET,
        &format!("{ACCOUNT}/Calls/CA00.json"),
        KEY,
        &[],
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(20404)));
}

#[tokio::test]
async fn rest_validates_numbers_and_injects_failures() {
    let (sim, toy) = setup().await;
    let path = format!("{ACCOUNT}/Calls.json");
    let url = toy.url("/bridge");
    let auth = (ACCOUNT, TOKEN);
    let (status, body) = rest(
        &sim,
        reqwest::Method::POST,
        &path,
        auth,
        &[("To", A), ("From", B), ("Url", &url)],
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21210)));
    let (status, body) = rest(
        &sim,
        reqwest::Method::POST,
        &path,
        auth,
        &[("To", "090-1"), ("From", P), ("Url", &url)],
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21211)));

    sim.fail_next_rest("POST Calls.json", 503, 20500, "Service unavailable");
    sim.fail_next_rest("POST Calls.json", 429, 20429, "Too many requests");
    let form = [("To", A), ("From", P), ("Url", url.as_str())];
    let (status, body) = rest(&sim, reqwest::Method::POST, &path, auth, &form).await;
    assert_eq!(
        (status, body["code"].as_u64(), body["message"].as_str()),
        (503, Some(20500), Some("Service unavailable"))
    );
    let (status, _) = rest(&sim, reqwest::Method::POST, &path, auth, &form).await;
    assert_eq!(status, 429);
    let (status, _) = rest(&sim, reqwest::Method::POST, &path, auth, &form).await;
    assert_eq!(status, 201);
    assert!(sim.calls().len() == 1, "failed requests create nothing");
}

#[tokio::test]
async fn rest_time_limit_update_ends_the_call_later() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, &dial_twiml("", "", B));
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    sim.advance(secs(10)).await;
    let path = format!("{ACCOUNT}/Calls/{sid}.json");
    let (status, _) = rest(
        &sim,
        reqwest::Method::POST,
        &path,
        KEY,
        &[("TimeLimit", "20")],
    )
    .await;
    assert_eq!(status, 200);
    sim.run_until_idle(secs(3600)).await;
    assert_eq!(sim.call(&sid).unwrap().duration_secs, 30);
    assert_eq!(child_of(&sim, &sid).duration_secs, 27);
}

#[tokio::test]
async fn a_webhook_may_call_the_rest_api_while_twilio_waits() {
    let (sim, toy) = setup().await;
    sim.add_number(P, &toy.url("/calls-back"), None);
    let advance = tokio::spawn({
        let sim = sim.clone();
        async move { sim.dial_in(A, P, CallerScript::default()).await }
    });
    let sid = tokio::time::timeout(secs(10), advance)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.heard_by(A), ["ringing"]);
    assert!(has_event(
        &sim,
        |e| matches!(e, Event::Rest { status: 200, path, .. } if path.contains(&sid))
    ));
}

#[tokio::test]
async fn a_call_is_placed_only_from_a_number_the_account_owns() {
    let (sim, toy) = setup().await;
    const Q: &str = "+815098765432";
    let calls = format!("{ACCOUNT}/Calls.json");
    let url = toy.url("/bridge");
    let form = [("To", A), ("From", Q), ("Url", url.as_str())];
    let (status, body) = rest(&sim, reqwest::Method::POST, &calls, KEY, &form).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(21210)),
        "{body}"
    );

    // Provisioned as IncomingPhoneNumbers does, Q is the account's: caller ID and calls in.
    let numbers = format!("{ACCOUNT}/IncomingPhoneNumbers.json");
    let voice = toy.url("/voice-q");
    let provision = [("PhoneNumber", Q), ("VoiceUrl", voice.as_str())];
    let (status, number) = rest(&sim, reqwest::Method::POST, &numbers, KEY, &provision).await;
    assert_eq!(status, 201, "{number}");
    assert_eq!(
        (
            number["phone_number"].as_str(),
            number["voice_url"].as_str()
        ),
        (Some(Q), Some(voice.as_str()))
    );
    let pn = number["sid"].as_str().unwrap().to_owned();
    assert!(pn.starts_with("PN") && pn.len() == 34);
    let (status, again) = rest(&sim, reqwest::Method::POST, &numbers, KEY, &provision).await;
    assert_eq!(
        (status, again["code"].as_u64()),
        (400, Some(21422)),
        "owned already"
    );
    let (status, body) = rest(&sim, reqwest::Method::POST, &calls, KEY, &form).await;
    assert_eq!(status, 201, "{body}");
    let listed = format!("{ACCOUNT}/IncomingPhoneNumbers.json?PhoneNumber=%2B815098765432");
    let (_, list) = rest(&sim, reqwest::Method::GET, &listed, KEY, &[]).await;
    assert_eq!(
        list["incoming_phone_numbers"][0]["sid"].as_str(),
        Some(pn.as_str())
    );
    assert_eq!(sim.numbers(), vec![P.to_owned(), Q.to_owned()]);

    // Released, it is no longer the account's.
    let release = format!(
        "{}/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{pn}.json",
        sim.base_url()
    );
    let response = reqwest::Client::new()
        .delete(release)
        .basic_auth(KEY.0, Some(KEY.1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (status, body) = rest(&sim, reqwest::Method::POST, &calls, KEY, &form).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(21210)),
        "{body}"
    );
}
