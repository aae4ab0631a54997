//! A call's life as Twilio reports it: signed webhooks with Twilio's parameters, status
//! callbacks, application errors, unreachable phones, and hooks in virtual time.

use super::*;

#[test]
fn signature_matches_twilios_documented_example() {
    let params: Vec<(String, String)> = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(
        signature("12345", url, &params),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    );
}

#[tokio::test]
async fn webhooks_are_signed_form_posts_with_twilios_parameters() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, "<Response><Say>hi</Say></Response>");
    let sid = sim.dial_in(A, P, CallerScript::default()).await;

    let requests = toy.seen("/voice");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.target, "/voice?tenant=1");
    assert_eq!(request.user_agent, "TwilioProxy/1.1");
    assert_eq!(request.content_type, "application/x-www-form-urlencoded");
    for (name, value) in [
        ("AccountSid", ACCOUNT),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid.as_str()),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", A),
        ("To", P),
        ("Caller", A),
        ("Called", P),
        ("FromCountry", "JP"),
        ("ToCountry", "JP"),
    ] {
        assert_eq!(request.get(name), Some(value), "{name}");
    }
    assert!(sid.starts_with("CA") && sid.len() == 34);

    // Independent check: the URL as configured, then name+value pairs sorted by name.
    let mut pairs = request.params.clone();
    pairs.sort();
    let mut data = toy.url(&request.target);
    for (name, value) in &pairs {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(request.signature, expected);
}

#[tokio::test]
async fn a_failing_webhook_is_an_application_error() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 500, "oops");
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    assert!(has_event(&sim, |e| matches!(
        e,
        Event::ApplicationError { status: 500, .. }
    )));
    assert!(has_event(&sim, |e| matches!(
        e,
        Event::Webhook { status: 500, .. }
    )));
    assert_eq!(sim.call(&sid).unwrap().status, "completed");
    assert_eq!(sim.heard_by(A).len(), 1, "Twilio's apology");

    toy.route("/voice", 200, "this is not XML");
    sim.dial_in(A, P, CallerScript::default()).await;
    let errors = sim
        .transcript()
        .into_iter()
        .filter(|e| matches!(&e.event, Event::ApplicationError { status: 200, detail, .. } if detail.contains("TwiML")))
        .count();
    assert_eq!(errors, 1);

    toy.route("/voice", 200, "<Response><Enqueue>q</Enqueue></Response>");
    sim.dial_in(A, P, CallerScript::default()).await;
    assert!(has_event(
        &sim,
        |e| matches!(e, Event::ApplicationError { detail, .. } if detail.contains("Enqueue"))
    ));
}

#[tokio::test]
async fn calling_an_unknown_number_fails() {
    let (sim, _toy) = setup().await;
    let sid = sim
        .dial_in(A, "+815099999999", CallerScript::default())
        .await;
    assert_eq!(sim.call(&sid).unwrap().status, "failed");
}

#[tokio::test]
async fn hooks_run_in_virtual_time_between_call_events() {
    let (sim, _toy) = setup().await;
    let fired = Arc::new(Mutex::new(Vec::new()));
    let start = sim.clock().now();
    sim.every(secs(60), {
        let fired = fired.clone();
        move |at| {
            fired.lock().unwrap().push(at);
            async {}
        }
    });
    sim.advance(secs(150)).await;
    assert_eq!(
        *fired.lock().unwrap(),
        [start + secs(60), start + secs(120)]
    );
    assert_eq!(sim.clock().now(), start + secs(150));
}

#[test]
fn entries_display_as_masked_timeline_rows() {
    assert_eq!(mask("+819012345678"), "+8190****5678");
    assert_eq!(mask("timeLimit"), "timeLimit");
    let at = time::macros::datetime!(2026-11-24 20:30:05 UTC);
    let entry = Entry {
        at,
        call_sid: Some("CA0123456789abcdef".into()),
        event: Event::Bridged {
            a: A.into(),
            b: B.into(),
            caller_id: P.into(),
        },
    };
    assert_eq!(
        entry.to_string(),
        "20:30:05 CA01234567 bridged +8190****2222 <-> +8180****4444 (caller ID +8150****5678)"
    );
}

/// busy, no-answer and failed are the phone's, however the call to it is placed: REST
/// `Calls.json`, `<Dial><Number>`, a REST conference participant.
#[tokio::test]
async fn an_unreachable_phone_is_unreachable_however_it_is_called() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, &dial_twiml("", "", B));
    toy.route("/twiml", 200, "<Response><Say>hello</Say></Response>");
    let calls = format!("{ACCOUNT}/Calls.json");
    let participants = format!("{ACCOUNT}/Conferences/{ROOM}/Participants.json");
    let twiml = toy.url("/twiml");
    for (script, outcome) in [
        (PhoneScript::Busy, "busy"),
        (PhoneScript::NoAnswer, "no-answer"),
        (PhoneScript::Fail, "failed"),
    ] {
        sim.set_phone(B, script);
        let form = [
            ("From", P),
            ("To", B),
            ("Url", twiml.as_str()),
            ("Timeout", "10"),
        ];
        let (_, api) = rest(&sim, reqwest::Method::POST, &calls, KEY, &form).await;
        let parent = sim.dial_in(A, P, CallerScript::default()).await;
        let form = [("From", P), ("To", B), ("Timeout", "10")];
        let (_, participant) = rest(&sim, reqwest::Method::POST, &participants, KEY, &form).await;
        sim.run_until_idle(secs(600)).await;
        let legs = [
            api["sid"].as_str().unwrap().to_owned(),
            child_of(&sim, &parent).sid,
            participant["call_sid"].as_str().unwrap().to_owned(),
        ];
        for leg in legs {
            let call = sim.call(&leg).unwrap();
            assert_eq!(
                (call.status.as_str(), call.duration_secs),
                (outcome, 0),
                "{call:?}"
            );
        }
    }
    assert!(
        toy.seen("/twiml").is_empty(),
        "no TwiML for a call never answered"
    );
    assert!(sim.heard_by(B).is_empty());
}
