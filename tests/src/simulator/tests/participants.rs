//! Conference participants: hold and hold music, finding and removing them through REST,
//! what participant-leave tells, and participants added through REST.

use super::*;

/// The conference callbacks the toy got at `path`, as (event, CallSid, label,
/// ParticipantCallStatus, ReasonParticipantLeft).
fn leave_details(toy: &Toy, path: &str) -> Vec<[Option<String>; 5]> {
    toy.seen(path)
        .iter()
        .map(|s| {
            [
                "StatusCallbackEvent",
                "CallSid",
                "ParticipantLabel",
                "ParticipantCallStatus",
                "ReasonParticipantLeft",
            ]
            .map(|name| s.get(name).map(str::to_owned))
        })
        .collect()
}

fn details(
    event: &str,
    call: &str,
    label: Option<&str>,
    status: Option<&str>,
    reason: Option<&str>,
) -> [Option<String>; 5] {
    [Some(event), Some(call), label, status, reason].map(|v| v.map(str::to_owned))
}

#[tokio::test]
async fn hold_plays_the_hold_twiml_to_that_phone_and_unhold_resumes() {
    let (sim, toy) = setup().await;
    toy.route(
        "/conf-a",
        200,
        &room_twiml(
            &toy,
            "join leave hold mute announcement",
            r#"participantLabel="a""#,
            "",
        ),
    );
    toy.route(
        "/conf-b",
        200,
        &conference_twiml("", r#"participantLabel="b""#, ""),
    );
    toy.route(
        "/hold",
        200,
        r#"<Response><Say language="ja-JP">少々お待ちください</Say><Play>https://example.com/music.mp3</Play></Response>"#,
    );
    toy.route(
        "/announce",
        200,
        r#"<Response><Say language="ja-JP">残り3分です</Say></Response>"#,
    );
    toy.route(
        "/bad-announce",
        200,
        r#"<Response><Gather numDigits="1"><Say>press 1</Say></Gather></Response>"#,
    );
    let leg_a = call_out(&sim, &toy, A, "/conf-a").await;
    let leg_b = call_out(&sim, &toy, B, "/conf-b").await;
    sim.advance(secs(10)).await;
    let conference = sim.conference(ROOM).unwrap().sid;
    let b_path = format!("{ACCOUNT}/Conferences/{conference}/Participants/b.json");

    let hold_url = toy.url("/hold");
    let form = [("Hold", "true"), ("HoldUrl", hold_url.as_str())];
    let (status, body) = rest(&sim, reqwest::Method::POST, &b_path, KEY, &form).await;
    assert_eq!((status, body["hold"].as_bool()), (200, Some(true)));
    assert_eq!(body["call_sid"], leg_b.as_str());
    sim.advance(secs(30)).await;
    assert_eq!(sim.heard_by(B), ["少々お待ちください"]);
    assert!(sim.heard_by(A).is_empty());
    assert!(has_event(&sim, |e| matches!(
        e,
        Event::Played { to, url } if to == B && url.ends_with("music.mp3")
    )));
    let hold = &toy.seen("/hold")[0];
    assert!(
        hold.target.contains("ConferenceSid="),
        "GET by default: {}",
        hold.target
    );
    assert!(hold.target.contains(&leg_b));
    let info = sim.conference(ROOM).unwrap();
    assert!(info.participants[1].hold && !info.participants[0].hold);
    assert_eq!(info.participants[1].label.as_deref(), Some("b"));
    assert!(has_event(
        &sim,
        |e| matches!(e, Event::Held { who, on: true } if who == B)
    ));

    // An announcement reaches whoever is not on hold.
    let room_path = format!("{ACCOUNT}/Conferences/{conference}.json");
    let announce = toy.url("/announce");
    let (status, _) = rest(
        &sim,
        reqwest::Method::POST,
        &room_path,
        KEY,
        &[("AnnounceUrl", &announce)],
    )
    .await;
    assert_eq!(status, 200);
    sim.advance(secs(5)).await;
    assert_eq!(sim.heard_by(A), ["残り3分です"]);
    assert_eq!(sim.heard_by(B).len(), 1);
    // An announcement cannot gather digits.
    let bad = toy.url("/bad-announce");
    let (status, _) = rest(
        &sim,
        reqwest::Method::POST,
        &room_path,
        KEY,
        &[("AnnounceUrl", &bad)],
    )
    .await;
    assert_eq!(status, 200, "Twilio accepts the request and fails later");
    sim.advance(secs(5)).await;
    assert!(has_event(&sim, |e| matches!(
        e,
        Event::Warning { detail } if detail.contains("<Gather>")
    )));
    assert_eq!(sim.heard_by(A), ["残り3分です"]);

    let form = [("Hold", "false"), ("Muted", "true")];
    let (status, body) = rest(&sim, reqwest::Method::POST, &b_path, KEY, &form).await;
    assert_eq!(
        (status, body["hold"].as_bool(), body["muted"].as_bool()),
        (200, Some(false), Some(true))
    );
    sim.advance(secs(60)).await;
    assert_eq!(sim.heard_by(B).len(), 1, "the hold music stopped");
    let info = sim.conference(ROOM).unwrap();
    assert!(!info.participants[1].hold && info.participants[1].muted);
    assert_eq!(
        conference_events(&toy, "/conf-status"),
        [
            ev("participant-join", Some(&leg_a)),
            ev("participant-join", Some(&leg_b)),
            ev("participant-hold", Some(&leg_b)),
            ev("announcement-end", None),
            ev("announcement-failed", None),
            ev("participant-mute", Some(&leg_b)),
            ev("participant-unhold", Some(&leg_b)),
        ]
    );
    let hold_callback = &toy.seen("/conf-status")[2];
    assert_eq!(hold_callback.get("Hold"), Some("true"));
    assert_eq!(hold_callback.get("ParticipantLabel"), Some("b"));

    let (status, body) = rest(
        &sim,
        reqwest::Method::POST,
        &b_path,
        KEY,
        &[("Hold", "yes")],
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(20001)));
}

/// Twilio's Participant update: `AnnounceUrl` is "an announcement to the participant",
/// requested with POST unless `AnnounceMethod` says otherwise; with `Hold=false` in the
/// same update it plays to the participant coming off hold.
#[tokio::test]
async fn a_participant_announcement_plays_to_that_participant_alone_as_they_come_off_hold() {
    let (sim, toy) = setup().await;
    toy.route(
        "/conf-a",
        200,
        &conference_twiml("", r#"participantLabel="a""#, ""),
    );
    toy.route(
        "/conf-b",
        200,
        &conference_twiml("", r#"participantLabel="b""#, ""),
    );
    toy.route(
        "/hold",
        200,
        r#"<Response><Say language="ja-JP">少々お待ちください</Say></Response>"#,
    );
    toy.route(
        "/outcome",
        200,
        r#"<Response><Say language="ja-JP">通話を5分延長しました</Say></Response>"#,
    );
    call_out(&sim, &toy, A, "/conf-a").await;
    call_out(&sim, &toy, B, "/conf-b").await;
    sim.advance(secs(10)).await;
    let conference = sim.conference(ROOM).unwrap().sid;
    let b_path = format!("{ACCOUNT}/Conferences/{conference}/Participants/b.json");
    let hold_url = toy.url("/hold");
    let form = [("Hold", "true"), ("HoldUrl", hold_url.as_str())];
    rest(&sim, reqwest::Method::POST, &b_path, KEY, &form).await;
    sim.advance(secs(5)).await;

    let outcome = toy.url("/outcome");
    let form = [("Hold", "false"), ("AnnounceUrl", outcome.as_str())];
    let (status, body) = rest(&sim, reqwest::Method::POST, &b_path, KEY, &form).await;
    assert_eq!((status, body["hold"].as_bool()), (200, Some(false)));
    sim.advance(secs(5)).await;
    assert_eq!(
        sim.heard_by(B),
        ["少々お待ちください", "通話を5分延長しました"]
    );
    assert!(sim.heard_by(A).is_empty(), "{:?}", sim.heard_by(A));
    let fetched = &toy.seen("/outcome")[0];
    assert!(
        !fetched.target.contains('?'),
        "POST by default: {}",
        fetched.target
    );
}

#[tokio::test]
async fn participants_are_found_by_call_sid_or_label_and_removed() {
    let (sim, toy) = setup().await;
    let twiml = conference_twiml(
        r#"timeLimit="300""#,
        r#"participantLabel="guest""#,
        "<Say>left the room</Say><Pause length=\"600\"/>",
    );
    toy.route("/conf", 200, &twiml);
    let leg_a = call_out(&sim, &toy, A, "/conf").await;
    let leg_b = call_out(&sim, &toy, B, "/conf").await;
    sim.advance(secs(10)).await;
    let conference = sim.conference(ROOM).unwrap().sid;
    let base = format!("{ACCOUNT}/Conferences/{conference}/Participants");

    for (method, path) in [
        (
            reqwest::Method::GET,
            format!("{base}/CA00000000000000000000000000000000.json"),
        ),
        (reqwest::Method::POST, format!("{base}/nobody.json")),
        (reqwest::Method::DELETE, format!("{base}/nobody.json")),
        (
            reqwest::Method::GET,
            format!("{ACCOUNT}/Conferences/CF00.json"),
        ),
        (
            reqwest::Method::GET,
            format!("{ACCOUNT}/Conferences/CF00/Participants.json"),
        ),
        (
            reqwest::Method::GET,
            format!("{ACCOUNT}/Conferences/CF00/Participants/{leg_a}.json"),
        ),
    ] {
        let (status, body) = rest(&sim, method.clone(), &path, KEY, &[]).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (404, Some(20404)),
            "{method} {path}"
        );
    }

    let (status, body) = rest(
        &sim,
        reqwest::Method::GET,
        &format!("{base}/{leg_b}.json"),
        KEY,
        &[],
    )
    .await;
    assert_eq!((status, body["label"].as_str()), (200, Some("guest")));
    // A label names the first participant that has it.
    let url = format!("{}/2010-04-01/Accounts/{base}/guest.json", sim.base_url());
    let response = reqwest::Client::new()
        .delete(url)
        .basic_auth(KEY.0, Some(KEY.1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert!(response.text().await.unwrap().is_empty());
    sim.settle().await;
    assert_eq!(
        sim.heard_by(A),
        ["left the room"],
        "A continues after its Dial"
    );
    let info = sim.conference(ROOM).unwrap();
    let left: Vec<_> = info
        .participants
        .iter()
        .map(|p| p.call_sid.as_str())
        .collect();
    assert_eq!(left, [leg_b.as_str()]);
    assert_eq!(info.status, "in-progress");

    // B's Dial timeLimit takes it out of the room 300 s after it joined; the room,
    // now empty, ends.
    sim.advance(secs(300)).await;
    assert_eq!(sim.heard_by(B), ["left the room"]);
    assert!(has_event(&sim, |e| matches!(
        e,
        Event::ConferenceLeft { who, why, .. } if who == B && why == "timeLimit"
    )));
    let info = sim.conference(ROOM).unwrap();
    assert_eq!(
        (info.status.as_str(), info.ended_reason.as_deref()),
        ("completed", Some("last-participant-left"))
    );
    assert_eq!(
        sim.call(&leg_b).unwrap().status,
        "in-progress",
        "the call goes on"
    );
}

/// Twilio (changelog 2023-10-25; TwiML Voice: `<Conference>`, statusCallback
/// parameters): participant-leave carries ParticipantCallStatus and
/// ReasonParticipantLeft, and every participant event its ParticipantLabel.
#[tokio::test]
async fn participant_leave_tells_the_call_status_and_why_with_the_label() {
    let (sim, toy) = setup().await;
    let leader = room_twiml(&toy, "end join leave hold", r#"participantLabel="a""#, "");
    toy.route("/conf-a", 200, &leader);
    toy.route(
        "/conf-b",
        200,
        &conference_twiml("", r#"participantLabel="b""#, r#"<Pause length="600"/>"#),
    );
    sim.set_phone(A, PhoneScript::talks(secs(1), secs(60)));
    sim.set_phone(B, PhoneScript::talks(secs(1), secs(3600)));
    let status = toy.url("/conf-status");

    // A's phone hangs up; B is redirected through REST, then ended through REST.
    let leg_a = call_out(&sim, &toy, A, "/conf-a").await;
    let leg_b = call_out(&sim, &toy, B, "/conf-b").await;
    sim.advance(secs(5)).await;
    let conference = sim.conference(ROOM).unwrap().sid;
    let b = format!("{ACCOUNT}/Conferences/{conference}/Participants/b.json");
    let (code, _) = rest(&sim, reqwest::Method::POST, &b, KEY, &[("Hold", "true")]).await;
    assert_eq!(code, 200);
    sim.advance(secs(60)).await;
    let b_call = format!("{ACCOUNT}/Calls/{leg_b}.json");
    let twiml = "<Response><Dial><Conference>other-room</Conference></Dial></Response>";
    let (code, _) = rest(
        &sim,
        reqwest::Method::POST,
        &b_call,
        KEY,
        &[("Twiml", twiml)],
    )
    .await;
    assert_eq!(code, 200);
    sim.settle().await;
    assert_eq!(
        leave_details(&toy, "/conf-status"),
        [
            details("participant-join", &leg_a, Some("a"), None, None),
            details("participant-join", &leg_b, Some("b"), None, None),
            details("participant-hold", &leg_b, Some("b"), None, None),
            details(
                "participant-leave",
                &leg_a,
                Some("a"),
                Some("completed"),
                Some("participant_hung_up")
            ),
            details(
                "participant-leave",
                &leg_b,
                Some("b"),
                Some("in-progress"),
                Some("participant_updated_via_api")
            ),
            [Some("conference-end".into()), None, None, None, None],
        ]
    );

    // Ended through REST, and the room ended through REST.
    let room = |label: &str, extra: &str| {
        let attributes = format!(
            r#"statusCallback="{status}" statusCallbackEvent="leave" participantLabel="{label}" {extra}"#
        );
        conference_twiml("", &attributes, "")
    };
    toy.route("/conf-a", 200, &room("a", ""));
    toy.route("/conf-b", 200, &room("b", ""));
    let seen = toy.seen("/conf-status").len();
    let leg_a = call_out(&sim, &toy, A, "/conf-a").await;
    let leg_b = call_out(&sim, &toy, B, "/conf-b").await;
    sim.advance(secs(5)).await;
    let a_call = format!("{ACCOUNT}/Calls/{leg_a}.json");
    let (code, _) = rest(
        &sim,
        reqwest::Method::POST,
        &a_call,
        KEY,
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(code, 200);
    let conference = sim.conference(ROOM).unwrap().sid;
    let one = format!("{ACCOUNT}/Conferences/{conference}.json");
    let (code, _) = rest(
        &sim,
        reqwest::Method::POST,
        &one,
        KEY,
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(code, 200);
    sim.settle().await;
    assert_eq!(
        leave_details(&toy, "/conf-status")[seen..],
        [
            details(
                "participant-leave",
                &leg_a,
                Some("a"),
                Some("completed"),
                Some("participant_updated_via_api")
            ),
            details(
                "participant-leave",
                &leg_b,
                Some("b"),
                Some("in-progress"),
                Some("conference_ended_via_api")
            ),
        ]
    );

    // An endConferenceOnExit participant leaving takes the others out.
    sim.run_until_idle(secs(7200)).await;
    toy.route("/conf-a", 200, &room("a", r#"endConferenceOnExit="true""#));
    let seen = toy.seen("/conf-status").len();
    let leg_a = call_out(&sim, &toy, A, "/conf-a").await;
    let leg_b = call_out(&sim, &toy, B, "/conf-b").await;
    sim.advance(secs(65)).await;
    assert_eq!(
        leave_details(&toy, "/conf-status")[seen..],
        [
            details(
                "participant-leave",
                &leg_a,
                Some("a"),
                Some("completed"),
                Some("participant_hung_up")
            ),
            details(
                "participant-leave",
                &leg_b,
                Some("b"),
                Some("in-progress"),
                Some("moderator_ended_conference")
            ),
        ]
    );

    // An API before 2023-10-25 sends neither detail.
    sim.run_until_idle(secs(7200)).await;
    sim.set_participant_leave_details(false);
    toy.route("/conf-a", 200, &room("a", ""));
    let seen = toy.seen("/conf-status").len();
    let leg_a = call_out(&sim, &toy, A, "/conf-a").await;
    call_out(&sim, &toy, B, "/conf-b").await;
    sim.advance(secs(65)).await;
    assert_eq!(
        leave_details(&toy, "/conf-status")[seen..],
        [details("participant-leave", &leg_a, Some("a"), None, None)]
    );
}

/// Participants added through REST (`POST Conferences/{Sid or FriendlyName}/
/// Participants.json`) are called like any call: once answered they join; busy, no
/// answer, a failure or a cancel never joins and the conference gets a participant-leave
/// saying so (Twilio changelog 2023-10-25).
#[tokio::test]
async fn participants_added_through_rest_join_once_answered_or_report_why_not() {
    let (sim, toy) = setup().await;
    toy.route(
        "/wait",
        200,
        r#"<Response><Say language="ja-JP">お待ちください</Say></Response>"#,
    );
    let conf_status = toy.url("/conf-status");
    let wait = toy.url("/wait");
    let participants = format!("{ACCOUNT}/Conferences/{ROOM}/Participants.json");
    let add = |to: &'static str, label: &'static str, extra: Vec<(&'static str, String)>| {
        let (sim, participants, conf_status, wait) = (
            sim.clone(),
            participants.clone(),
            conf_status.clone(),
            wait.clone(),
        );
        async move {
            let mut form: Vec<(&str, String)> = vec![
                ("From", P.to_owned()),
                ("To", to.to_owned()),
                ("Label", label.to_owned()),
                ("ConferenceStatusCallback", conf_status),
                (
                    "ConferenceStatusCallbackEvent",
                    "start end join leave".to_owned(),
                ),
                ("WaitUrl", wait),
            ];
            form.extend(extra);
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            rest(&sim, reqwest::Method::POST, &participants, KEY, &form).await
        }
    };
    sim.set_phone(A, PhoneScript::talks(secs(2), secs(3600)));
    let (status, a) = add(A, "a", vec![]).await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(
        (a["label"].as_str(), a["status"].as_str()),
        (Some("a"), Some("queued"))
    );
    let leg_a = a["call_sid"].as_str().unwrap().to_owned();
    let conference = a["conference_sid"].as_str().unwrap().to_owned();
    assert!(conference.starts_with("CF"), "{a}");
    sim.settle().await;
    let list = format!("{ACCOUNT}/Conferences/{conference}/Participants.json");
    let (_, listed) = rest(&sim, reqwest::Method::GET, &list, KEY, &[]).await;
    assert_eq!(listed["participants"][0]["status"], "ringing", "{listed}");
    sim.advance(secs(5)).await;
    let room = sim.conference(ROOM).unwrap();
    assert_eq!(
        (room.sid.as_str(), room.status.as_str()),
        (conference.as_str(), "init")
    );
    assert_eq!(room.participants[0].label.as_deref(), Some("a"));
    assert_eq!(sim.heard_by(A), ["お待ちください"]);
    let (_, listed) = rest(&sim, reqwest::Method::GET, &list, KEY, &[]).await;
    assert_eq!(listed["participants"][0]["status"], "connected");

    // B cannot be reached, three ways; each is reported and never joins.
    let mut expected = vec![details("participant-join", &leg_a, Some("a"), None, None)];
    for (script, outcome) in [
        (PhoneScript::Busy, "busy"),
        (PhoneScript::NoAnswer, "no-answer"),
        (PhoneScript::Fail, "failed"),
    ] {
        sim.set_phone(B, script);
        let (status, b) = add(B, "b", vec![("Timeout", "10".to_owned())]).await;
        assert_eq!(status, 201, "{b}");
        let leg_b = b["call_sid"].as_str().unwrap().to_owned();
        sim.advance(secs(15)).await;
        assert_eq!(sim.call(&leg_b).unwrap().status, outcome);
        expected.push(details(
            "participant-leave",
            &leg_b,
            Some("b"),
            Some(outcome),
            Some("participant_add_failed"),
        ));
    }
    // Removed through REST while it rings: canceled.
    sim.set_phone(B, PhoneScript::NoAnswer);
    let (_, b) = add(B, "b", vec![]).await;
    let leg_b = b["call_sid"].as_str().unwrap().to_owned();
    sim.advance(secs(5)).await;
    let one = format!("{ACCOUNT}/Conferences/{conference}/Participants/b.json");
    let response = reqwest::Client::new()
        .delete(format!("{}/2010-04-01/Accounts/{one}", sim.base_url()))
        .basic_auth(KEY.0, Some(KEY.1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    sim.settle().await;
    assert_eq!(sim.call(&leg_b).unwrap().status, "canceled");
    expected.push(details(
        "participant-leave",
        &leg_b,
        Some("b"),
        Some("canceled"),
        Some("participant_add_failed"),
    ));
    assert_eq!(leave_details(&toy, "/conf-status"), expected);
    let room = sim.conference(ROOM).unwrap();
    assert_eq!((room.status.as_str(), room.participants.len()), ("init", 1));

    // B answers: it joins, named by the conference's SID this time, and it starts.
    sim.set_phone(B, PhoneScript::talks(secs(3), secs(3600)));
    let by_sid = format!("{ACCOUNT}/Conferences/{conference}/Participants.json");
    let form = [
        ("From", P),
        ("To", B),
        ("Label", "b"),
        ("StartConferenceOnEnter", "false"),
    ];
    let (status, b) = rest(&sim, reqwest::Method::POST, &by_sid, KEY, &form).await;
    assert_eq!(status, 201, "{b}");
    sim.advance(secs(5)).await;
    let room = sim.conference(ROOM).unwrap();
    assert_eq!(
        (room.status.as_str(), room.participants.len()),
        ("in-progress", 2)
    );
    assert_eq!(
        conference_events(&toy, "/conf-status").last(),
        Some(&ev("conference-start", None))
    );

    // An unknown conference SID takes no participant, nor, once over, this one.
    sim.run_until_idle(secs(7200)).await;
    let unknown =
        format!("{ACCOUNT}/Conferences/CF00000000000000000000000000000000/Participants.json");
    for path in [unknown, by_sid] {
        let (status, body) = rest(&sim, reqwest::Method::POST, &path, KEY, &form).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (404, Some(20404)),
            "{path}"
        );
    }

    // A conference created for a participant who never answers ends with nobody in it.
    sim.set_phone(C, PhoneScript::Busy);
    let (status, c) = add(C, "c", vec![]).await;
    assert_eq!(status, 201, "{c}");
    let lonely = c["conference_sid"].as_str().unwrap().to_owned();
    assert_ne!(lonely, conference);
    sim.settle().await;
    let ended = sim.conference(&lonely).unwrap();
    assert_eq!(
        (ended.status.as_str(), ended.ended_reason.as_deref()),
        ("completed", Some("last-participant-left"))
    );
}
