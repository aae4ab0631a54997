//! TwiML verbs: Say, Pause, Hangup and Gather in virtual time, and the parser.

use super::*;

#[tokio::test]
async fn say_pause_and_hangup_take_virtual_time() {
    let (sim, toy) = setup().await;
    let twiml = r#"<Response>
        <Say language="ja-JP" voice="Polly.Mizuki">只今電話に出ることができません</Say>
        <Pause length="3"/>
        <Say>Sixteen chars!!!</Say>
        <Hangup/>
        <Say>never said</Say>
    </Response>"#;
    toy.route("/voice", 200, twiml);
    let start = sim.clock().now();
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(600)).await;

    assert_eq!(
        sim.heard_by(A),
        ["只今電話に出ることができません", "Sixteen chars!!!"]
    );
    let said = sim.transcript().into_iter().find_map(|e| match e.event {
        Event::Said {
            language, voice, ..
        } => Some((language, voice)),
        _ => None,
    });
    assert_eq!(
        said,
        Some((Some("ja-JP".into()), Some("Polly.Mizuki".into())))
    );
    // 15 characters → 2 s, pause 3 s, 16 characters → 2 s.
    let call = sim.call(&sid).unwrap();
    assert_eq!((call.status.as_str(), call.duration_secs), ("completed", 7));
    assert_eq!(call.ended_at, Some(start + secs(7)));
    assert_eq!(
        sim.clock().now(),
        start + secs(7),
        "run_until_idle stops when idle"
    );
}

#[tokio::test]
async fn gather_posts_the_pressed_digits() {
    let (sim, toy) = setup().await;
    let twiml = r#"<Response>
        <Gather numDigits="1" action="extension/answer" timeout="5">
            <Say language="ja-JP">延長する場合は1を押してください</Say>
        </Gather>
        <Say>no input</Say>
    </Response>"#;
    toy.route("/voice", 200, twiml);
    toy.route(
        "/extension/answer",
        200,
        "<Response><Say>extended</Say></Response>",
    );
    let caller = CallerScript {
        digits: vec![(secs(2), '1')],
        ..CallerScript::default()
    };
    sim.dial_in(A, P, caller).await;
    sim.run_until_idle(secs(600)).await;
    let answer = &toy.seen("/extension/answer")[0];
    assert_eq!(answer.get("Digits"), Some("1"));
    assert_eq!(
        sim.heard_by(A),
        ["延長する場合は1を押してください", "extended"]
    );

    // Without a key press the Gather times out and the next verb runs.
    sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(600)).await;
    assert_eq!(sim.heard_by(A).last().map(String::as_str), Some("no input"));
    assert_eq!(toy.seen("/extension/answer").len(), 1);
}

#[test]
fn twiml_parser_handles_entities_relative_urls_and_errors() {
    let verbs = twiml::parse(
        "<Response><Say>a &amp; b &#x41;</Say><Redirect method=\"GET\">next</Redirect></Response>",
    )
    .unwrap();
    assert_eq!(
        verbs[0],
        twiml::Verb::Say {
            text: "a & b A".into(),
            language: None,
            voice: None,
            loops: 1
        }
    );
    assert!(twiml::parse("<Response><Dial timeout=\"soon\">+81</Dial></Response>").is_err());
    assert!(twiml::parse("<Respond/>").is_err());
    assert!(twiml::parse("<Response><Say></Response>").is_err());
    assert_eq!(
        twiml::resolve_url("http://h:1/a/b?x=1", "c"),
        "http://h:1/a/c"
    );
    assert_eq!(twiml::resolve_url("http://h:1/a/b", "/c"), "http://h:1/c");
    assert_eq!(
        twiml::resolve_url("http://h:1/a/b", "https://x/y"),
        "https://x/y"
    );
}

#[tokio::test]
async fn absurd_twiml_is_recorded_not_fatal() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, r#"<Response><Pause length="18446744073709551615"/><Say loop="4294967295">x</Say></Response>"#);
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    sim.advance(secs(60)).await;
    assert_eq!(sim.call(&sid).unwrap().status, "in-progress");

    toy.route(
        "/voice",
        200,
        "<Response><Redirect>/voice</Redirect></Response>",
    );
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    assert_eq!(sim.call(&sid).unwrap().status, "completed");
    assert!(has_event(
        &sim,
        |e| matches!(e, Event::ApplicationError { detail, .. } if detail.contains("loop"))
    ));
}
