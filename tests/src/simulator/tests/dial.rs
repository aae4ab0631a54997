//! `<Dial><Number>`: the bridge, the Dial's action or next verb, its time limit, and V-call
//! bridging.

use super::*;

#[tokio::test]
async fn bridged_inbound_call_reports_both_legs_with_durations() {
    let (sim, toy) = setup().await;
    let status_url = toy.url("/child-status");
    let number_attributes = format!(
        r#"statusCallback="{status_url}" statusCallbackEvent="initiated ringing answered completed""#
    );
    toy.route(
        "/voice",
        200,
        &dial_twiml(r#"action="/dial-done""#, &number_attributes, B),
    );
    toy.route("/dial-done", 200, "<Response><Hangup/></Response>");
    sim.set_phone(B, PhoneScript::talks(secs(3), secs(65)));

    let parent = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(3600)).await;

    let child = child_of(&sim, &parent);
    assert_eq!(child.direction, "outbound-dial");
    assert_eq!(
        (child.from.as_str(), child.to.as_str()),
        (P, B),
        "B sees the proxy number"
    );
    assert_eq!(
        (child.status.as_str(), child.duration_secs),
        ("completed", 65)
    );
    let parent_info = sim.call(&parent).unwrap();
    assert_eq!(
        (parent_info.status.as_str(), parent_info.duration_secs),
        ("completed", 68)
    );
    assert!(has_event(
        &sim,
        |e| matches!(e, Event::Bridged { a, b, caller_id } if a == A && b == B && caller_id == P)
    ));

    let child_callbacks = toy.seen("/child-status");
    let statuses: Vec<_> = child_callbacks
        .iter()
        .map(|s| s.get("CallStatus").unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    let sequence: Vec<_> = child_callbacks
        .iter()
        .map(|s| s.get("SequenceNumber").unwrap())
        .collect();
    assert_eq!(sequence, ["0", "1", "2", "3"]);
    let last = child_callbacks.last().unwrap();
    assert_eq!(last.get("CallDuration"), Some("65"));
    assert_eq!(last.get("Duration"), Some("2"));
    assert_eq!(last.get("ParentCallSid"), Some(parent.as_str()));
    assert_eq!(last.get("Direction"), Some("outbound-dial"));
    assert_eq!(last.get("CallbackSource"), Some("call-progress-events"));
    assert!(last.get("Timestamp").unwrap().ends_with("+0000"));
    assert_eq!(callbacks(&sim, &child.sid).len(), 4);

    let action = &toy.seen("/dial-done")[0];
    assert_eq!(action.get("DialCallStatus"), Some("completed"));
    assert_eq!(action.get("DialCallSid"), Some(child.sid.as_str()));
    assert_eq!(action.get("DialCallDuration"), Some("65"));
    assert_eq!(action.get("CallSid"), Some(parent.as_str()));

    let parent_callbacks = toy.seen("/parent-status");
    assert_eq!(
        parent_callbacks.len(),
        1,
        "a number's status callback only reports the end"
    );
    assert_eq!(parent_callbacks[0].get("CallStatus"), Some("completed"));
    assert_eq!(parent_callbacks[0].get("CallDuration"), Some("68"));
    assert_eq!(parent_callbacks[0].get("Duration"), Some("2"));
}

/// Twilio (TwiML Voice: `<Dial>`, "action"): when the dialled call ends, the action URL
/// gets DialCallStatus, DialCallSid, DialCallDuration and DialBridged, and the TwiML it
/// answers runs; whatever follows the `<Dial>` is unreachable.
#[tokio::test]
async fn a_dial_action_hears_how_the_dial_ended_and_decides_what_follows() {
    let (sim, toy) = setup().await;
    let twiml = format!(
        r#"<Response><Dial callerId="{P}" action="/dial-done" timeout="10"><Number>{B}</Number></Dial><Say>unreachable</Say></Response>"#
    );
    toy.route("/voice", 200, &twiml);
    toy.route(
        "/dial-done",
        200,
        "<Response><Say>Sorry</Say><Hangup/></Response>",
    );
    for (script, outcome) in [
        (PhoneScript::Busy, "busy"),
        (PhoneScript::NoAnswer, "no-answer"),
        (PhoneScript::Fail, "failed"),
    ] {
        sim.set_phone(B, script);
        let start = sim.clock().now();
        let parent = sim.dial_in(A, P, CallerScript::default()).await;
        sim.run_until_idle(secs(600)).await;
        let child = child_of(&sim, &parent);
        let action = toy.seen("/dial-done").last().unwrap().clone();
        assert_eq!(action.get("CallSid"), Some(parent.as_str()));
        assert_eq!(action.get("DialCallStatus"), Some(outcome));
        assert_eq!(action.get("DialCallSid"), Some(child.sid.as_str()));
        assert_eq!(action.get("DialCallDuration"), Some("0"));
        assert_eq!(action.get("DialBridged"), Some("false"));
        assert_eq!(child.status, outcome);
        assert_eq!(sim.call(&parent).unwrap().status, "completed");
        if outcome == "no-answer" {
            assert_eq!(child.ended_at, Some(start + secs(10)), "the Dial timeout");
        }
    }
    assert_eq!(sim.heard_by(A), ["Sorry", "Sorry", "Sorry"]);

    // Canceled through REST while it rings.
    sim.set_phone(B, PhoneScript::NoAnswer);
    let parent = sim.dial_in(A, P, CallerScript::default()).await;
    sim.advance(secs(2)).await;
    let child = child_of(&sim, &parent);
    let path = format!("{ACCOUNT}/Calls/{}.json", child.sid);
    let (status, _) = rest(
        &sim,
        reqwest::Method::POST,
        &path,
        KEY,
        &[("Status", "canceled")],
    )
    .await;
    assert_eq!(status, 200);
    sim.run_until_idle(secs(600)).await;
    let action = toy.seen("/dial-done").last().unwrap().clone();
    assert_eq!(action.get("DialCallStatus"), Some("canceled"));
    assert_eq!(child_of(&sim, &parent).status, "canceled");

    // Answered: completed, with the talk's length.
    sim.set_phone(B, PhoneScript::talks(secs(2), secs(40)));
    let parent = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(600)).await;
    let action = toy.seen("/dial-done").last().unwrap().clone();
    assert_eq!(action.get("DialCallStatus"), Some("completed"));
    assert_eq!(action.get("DialCallDuration"), Some("40"));
    assert_eq!(action.get("DialBridged"), Some("true"));
    assert_eq!(sim.call(&parent).unwrap().status, "completed");
    assert_eq!(
        sim.heard_by(A),
        ["Sorry"; 5],
        "never the verb after the Dial"
    );
}

/// Without an action Twilio "will move on to the next TwiML verb in the document. If
/// there is no further verb, Twilio will end the phone call" (TwiML Voice: `<Dial>`).
#[tokio::test]
async fn a_dial_without_action_and_nothing_after_it_hangs_up() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, &dial_twiml("", "", B));
    sim.set_phone(B, PhoneScript::Busy);
    let parent = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(600)).await;
    let call = sim.call(&parent).unwrap();
    assert_eq!(call.status, "completed");
    assert_eq!(call.ended_at, Some(call.started_at), "hung up at once");
    assert!(sim.heard_by(A).is_empty());
    assert_eq!(toy.seen("/voice").len(), 1, "nothing else was requested");
}

#[tokio::test]
async fn dial_without_action_continues_with_the_next_verb() {
    let (sim, toy) = setup().await;
    let twiml = format!(
        r#"<Response><Dial callerId="{P}">{B}</Dial><Say language="ja-JP">お繋ぎできませんでした</Say></Response>"#
    );
    toy.route("/voice", 200, &twiml);
    sim.set_phone(B, PhoneScript::Fail);
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(600)).await;
    assert_eq!(sim.heard_by(A), ["お繋ぎできませんでした"]);
    assert_eq!(child_of(&sim, &sid).status, "failed");
    assert_eq!(sim.call(&sid).unwrap().status, "completed");
}

#[tokio::test]
async fn dial_time_limit_cuts_the_call() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, &dial_twiml(r#"timeLimit="30""#, "", B));
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(3600)).await;
    let child = child_of(&sim, &sid);
    assert_eq!(
        (child.status.as_str(), child.duration_secs),
        ("completed", 30)
    );
    assert!(has_event(
        &sim,
        |e| matches!(e, Event::HungUp { by } if by == "timeLimit")
    ));
    // Without an action the parent runs off the end of its TwiML and completes.
    assert_eq!(sim.call(&sid).unwrap().duration_secs, 33);
}

#[tokio::test]
async fn caller_hanging_up_ends_both_legs() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, &dial_twiml(r#"action="/dial-done""#, "", B));
    toy.route(
        "/dial-done",
        200,
        "<Response><Say>not executed</Say></Response>",
    );
    let caller = CallerScript {
        hang_up_after: Some(secs(20)),
        ..CallerScript::default()
    };
    let sid = sim.dial_in(A, P, caller).await;
    sim.run_until_idle(secs(3600)).await;
    assert_eq!(child_of(&sim, &sid).duration_secs, 20);
    assert_eq!(sim.call(&sid).unwrap().duration_secs, 23);
    assert!(has_event(
        &sim,
        |e| matches!(e, Event::HungUp { by } if by == A)
    ));
    assert_eq!(
        toy.seen("/dial-done").len(),
        1,
        "Twilio still requests the action"
    );
    assert!(sim.heard_by(A).is_empty(), "but runs none of its TwiML");
}

#[tokio::test]
async fn redirecting_a_bridged_parent_drops_the_other_leg() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, &dial_twiml(r#"action="/dial-done""#, "", B));
    toy.route(
        "/prompt",
        200,
        "<Response><Say>announcement</Say></Response>",
    );
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    sim.advance(secs(13)).await;
    let path = format!("{ACCOUNT}/Calls/{sid}.json");
    let prompt = toy.url("/prompt");
    let (status, _) = rest(&sim, reqwest::Method::POST, &path, KEY, &[("Url", &prompt)]).await;
    assert_eq!(status, 200);
    sim.run_until_idle(secs(600)).await;
    assert_eq!(child_of(&sim, &sid).duration_secs, 10);
    assert_eq!(sim.heard_by(A), ["announcement"]);
    assert!(
        toy.seen("/dial-done").is_empty(),
        "a redirect skips the Dial action"
    );

    let (status, body) = rest(&sim, reqwest::Method::POST, &path, KEY, &[("Url", &prompt)]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21220)));
}

#[tokio::test]
async fn v_call_bridge_dials_b_when_a_answers() {
    let (sim, toy) = setup().await;
    let p_b = "+815012340000";
    sim.add_number(p_b, &toy.url("/unused"), None);
    let twiml = format!(
        r#"<Response><Dial callerId="{p_b}" timeLimit="600"><Number>{B}</Number></Dial></Response>"#
    );
    toy.route("/bridge", 200, &twiml);
    sim.set_phone(A, PhoneScript::talks(secs(5), secs(100)));
    sim.set_phone(B, PhoneScript::default());
    let bridge = toy.url("/bridge");
    let form = [("To", A), ("From", P), ("Url", bridge.as_str())];
    let (status, call) = rest(
        &sim,
        reqwest::Method::POST,
        &format!("{ACCOUNT}/Calls.json"),
        KEY,
        &form,
    )
    .await;
    assert_eq!(status, 201);
    let sid = call["sid"].as_str().unwrap().to_owned();
    sim.run_until_idle(secs(3600)).await;

    let leg_a = sim.call(&sid).unwrap();
    assert_eq!(
        (leg_a.direction.as_str(), leg_a.duration_secs),
        ("outbound-api", 100)
    );
    let leg_b = child_of(&sim, &sid);
    assert_eq!((leg_b.from.as_str(), leg_b.to.as_str()), (p_b, B));
    assert_eq!(
        (leg_b.status.as_str(), leg_b.duration_secs),
        ("completed", 97)
    );
    assert!(has_event(
        &sim,
        |e| matches!(e, Event::Bridged { a, b, .. } if a == A && b == B)
    ));
}

#[tokio::test]
async fn answer_on_bridge_answers_the_caller_only_when_bridged() {
    let (sim, toy) = setup().await;
    toy.route(
        "/voice",
        200,
        &dial_twiml(r#"answerOnBridge="true""#, "", B),
    );
    sim.set_phone(B, PhoneScript::talks(secs(8), secs(30)));
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(3600)).await;
    assert_eq!(sim.call(&sid).unwrap().duration_secs, 30);

    sim.set_phone(B, PhoneScript::Busy);
    let sid = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(3600)).await;
    let call = sim.call(&sid).unwrap();
    assert_eq!((call.status.as_str(), call.duration_secs), ("completed", 0));
    assert_eq!(
        toy.seen("/parent-status")
            .last()
            .unwrap()
            .get("CallDuration"),
        Some("0")
    );
}

#[tokio::test]
async fn a_number_url_runs_on_the_callee_before_the_bridge_and_a_dual_recording_follows() {
    let (sim, toy) = setup().await;
    let recording_url = toy.url("/recording");
    toy.route(
        "/voice",
        200,
        &dial_twiml(
            &format!(
                r#"action="/dial-done" record="record-from-answer-dual" recordingStatusCallback="{recording_url}""#
            ),
            r#"url="/whisper""#,
            B,
        ),
    );
    toy.route(
        "/whisper",
        200,
        r#"<Response><Say language="ja-JP">お知らせです。</Say></Response>"#,
    );
    toy.route("/dial-done", 200, "<Response><Hangup/></Response>");
    toy.route("/recording", 200, "");
    sim.set_phone(B, PhoneScript::talks(secs(3), secs(30)));

    let parent = sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(3600)).await;

    // Only B heard the whisper, and before the bridge; the request was the child's.
    assert_eq!(sim.heard_by(B), ["お知らせです。"]);
    assert!(sim.heard_by(A).is_empty());
    let child = child_of(&sim, &parent);
    let whisper = &toy.seen("/whisper")[0];
    assert_eq!(whisper.get("CallSid"), Some(child.sid.as_str()));
    let transcript = sim.transcript();
    let said = transcript
        .iter()
        .position(|e| matches!(&e.event, Event::Said { to, .. } if to == B));
    let bridged = transcript
        .iter()
        .position(|e| matches!(&e.event, Event::Bridged { .. }));
    assert!(said.is_some() && said < bridged, "{transcript:?}");

    // The recording covers the bridge, in two channels, and names the dialling call.
    let recordings = sim.recordings();
    assert_eq!(recordings.len(), 1);
    let callback = &toy.seen("/recording")[0];
    assert_eq!(callback.get("CallSid"), Some(parent.as_str()));
    assert_eq!(
        callback.get("RecordingSid"),
        Some(recordings[0].sid.as_str())
    );
    assert_eq!(callback.get("RecordingChannels"), Some("2"));
    assert_eq!(callback.get("RecordingStatus"), Some("completed"));
    assert_eq!(callback.get("RecordingSource"), Some("DialVerb"));
    let duration: u64 = callback.get("RecordingDuration").unwrap().parse().unwrap();
    assert!(duration > 0 && duration < 30, "from the bridge: {duration}");
    assert!(
        callback
            .get("RecordingUrl")
            .unwrap()
            .starts_with(&format!("{}/2010-04-01/Accounts/", sim.base_url()))
    );
}

#[tokio::test]
async fn a_number_url_that_hangs_up_connects_nobody_and_records_nothing() {
    let (sim, toy) = setup().await;
    let recording_url = toy.url("/recording");
    toy.route(
        "/voice",
        200,
        &dial_twiml(
            &format!(
                r#"action="/dial-done" record="record-from-answer" recordingStatusCallback="{recording_url}""#
            ),
            r#"url="/whisper""#,
            B,
        ),
    );
    toy.route("/whisper", 200, "<Response><Hangup/></Response>");
    toy.route("/dial-done", 200, "<Response><Hangup/></Response>");
    sim.set_phone(B, PhoneScript::talks(secs(3), secs(30)));

    sim.dial_in(A, P, CallerScript::default()).await;
    sim.run_until_idle(secs(3600)).await;

    assert!(!has_event(&sim, |e| matches!(e, Event::Bridged { .. })));
    assert_eq!(toy.seen("/dial-done")[0].get("DialBridged"), Some("false"));
    assert!(sim.recordings().is_empty() && toy.seen("/recording").is_empty());
}
