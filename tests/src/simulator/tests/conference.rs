//! Conference rooms: meeting, when a room starts and ends, leaving and coming back, and
//! how conference TwiML is parsed and shown.

use super::*;

fn in_room_after_join(sim: &Simulator, who: &str) -> Vec<Vec<String>> {
    sim.transcript()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::ConferenceJoined {
                who: w, in_room, ..
            } if w == who => Some(in_room),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn two_v_call_legs_meet_in_a_conference_room() {
    let (sim, toy) = setup().await;
    let first = room_twiml(&toy, "start end join leave", "", "<Say>after</Say>");
    toy.route("/conf-a", 200, &first);
    // The second participant's callback settings are not the conference's.
    let second = conference_twiml(
        "",
        &format!(
            r#"statusCallback="{}" statusCallbackEvent="start end join leave""#,
            toy.url("/ignored")
        ),
        "<Say>after</Say>",
    );
    toy.route("/conf-b", 200, &second);
    sim.set_phone(A, PhoneScript::talks(secs(3), secs(60)));
    sim.set_phone(B, PhoneScript::talks(secs(5), secs(600)));
    let leg_a = call_out(&sim, &toy, A, "/conf-a").await;
    let leg_b = call_out(&sim, &toy, B, "/conf-b").await;
    sim.advance(secs(10)).await;

    let conference = sim.conference(ROOM).expect("the room's conference");
    assert!(conference.sid.starts_with("CF") && conference.sid.len() == 34);
    assert_eq!(conference.status, "in-progress");
    let in_it: Vec<_> = conference
        .participants
        .iter()
        .map(|p| p.call_sid.as_str())
        .collect();
    assert_eq!(in_it, [leg_a.as_str(), leg_b.as_str()]);
    assert_eq!(
        in_room_after_join(&sim, B),
        [vec![A.to_owned(), B.to_owned()]]
    );
    assert_eq!(
        conference_events(&toy, "/conf-status"),
        [
            ev("participant-join", Some(&leg_a)),
            ev("participant-join", Some(&leg_b)),
            ev("conference-start", None),
        ],
        "the conference starts once two are in it"
    );
    assert!(toy.seen("/ignored").is_empty());
    let join = &toy.seen("/conf-status")[0];
    for (name, value) in [
        ("AccountSid", ACCOUNT),
        ("ConferenceSid", conference.sid.as_str()),
        ("FriendlyName", ROOM),
        ("Hold", "false"),
        ("Muted", "false"),
        ("EndConferenceOnExit", "false"),
        ("StartConferenceOnEnter", "true"),
        ("Coaching", "false"),
    ] {
        assert_eq!(join.get(name), Some(value), "{name}");
    }
    assert!(join.get("Timestamp").unwrap().ends_with("+0000"));
    assert!(!join.signature.is_empty());
    let sequence: Vec<_> = toy
        .seen("/conf-status")
        .iter()
        .map(|s| s.get("SequenceNumber").unwrap().parse::<u32>().unwrap())
        .collect();
    assert!(sequence.windows(2).all(|w| w[0] < w[1]), "{sequence:?}");

    // REST sees the same.
    let list = format!("{ACCOUNT}/Conferences.json?FriendlyName={ROOM}&Status=in-progress");
    let (status, body) = rest(&sim, reqwest::Method::GET, &list, KEY, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["conferences"].as_array().unwrap().len(), 1);
    assert_eq!(body["conferences"][0]["friendly_name"], ROOM);
    let one = format!("{ACCOUNT}/Conferences/{}.json", conference.sid);
    let (status, body) = rest(&sim, reqwest::Method::GET, &one, KEY, &[]).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("in-progress"))
    );
    let participants = format!("{ACCOUNT}/Conferences/{}/Participants.json", conference.sid);
    let (status, body) = rest(&sim, reqwest::Method::GET, &participants, KEY, &[]).await;
    assert_eq!(status, 200);
    let first = &body["participants"][0];
    assert_eq!(first["call_sid"], leg_a.as_str());
    assert_eq!(first["conference_sid"], conference.sid.as_str());
    assert_eq!(
        (
            first["hold"].as_bool(),
            first["muted"].as_bool(),
            first["status"].as_str()
        ),
        (Some(false), Some(false), Some("connected"))
    );

    // A hangs up (60 s after answering): B stays, alone, in the same conference.
    sim.advance(secs(60)).await;
    assert_eq!(sim.call(&leg_a).unwrap().duration_secs, 60);
    let conference = sim.conference(ROOM).unwrap();
    assert_eq!(conference.status, "in-progress");
    assert_eq!(conference.participants.len(), 1);
    assert_eq!(sim.call(&leg_b).unwrap().status, "in-progress");
    assert_eq!(
        conference_events(&toy, "/conf-status").last(),
        Some(&ev("participant-leave", Some(&leg_a)))
    );
    assert!(has_event(&sim, |e| matches!(
        e,
        Event::ConferenceLeft { who, why, in_room, .. } if who == A && why == "hung up" && *in_room == [B]
    )));

    // Ended through REST: B continues after its Dial.
    let (status, body) = rest(
        &sim,
        reqwest::Method::POST,
        &one,
        KEY,
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["reason_conference_ended"], "conference-ended-via-api");
    sim.run_until_idle(secs(3600)).await;
    assert_eq!(sim.heard_by(B), ["after"]);
    assert!(sim.heard_by(A).is_empty());
    let leg = sim.call(&leg_b).unwrap();
    assert_eq!((leg.status.as_str(), leg.duration_secs), ("completed", 66));
    let events = conference_events(&toy, "/conf-status");
    assert_eq!(
        events[events.len() - 2..],
        [
            ev("participant-leave", Some(&leg_b)),
            ev("conference-end", None)
        ]
    );
    let end = toy.seen("/conf-status").last().unwrap().clone();
    assert_eq!(
        end.get("ReasonConferenceEnded"),
        Some("conference-ended-via-api")
    );
    assert_eq!(end.get("CallSidEndingConference"), None);
    let conference = sim.conference(ROOM).unwrap();
    assert_eq!(
        (
            conference.status.as_str(),
            conference.ended_reason.as_deref()
        ),
        ("completed", Some("conference-ended-via-api"))
    );
    assert!(conference.participants.is_empty());
    assert!(has_event(&sim, |e| matches!(
        e,
        Event::ConferenceCallback { event, status: 200, .. } if event == "conference-end"
    )));
    // A completed conference has no participants any more.
    let (status, body) = rest(&sim, reqwest::Method::GET, &participants, KEY, &[]).await;
    assert_eq!(
        (status, body["participants"].as_array().map(Vec::len)),
        (200, Some(0))
    );
}

#[tokio::test]
async fn an_end_conference_on_exit_leaver_ends_it_for_everyone() {
    let (sim, toy) = setup().await;
    let leader = room_twiml(&toy, "end join leave", r#"endConferenceOnExit="true""#, "");
    toy.route("/conf-a", 200, &leader);
    // B calls in; its TwiML continues with the Dial action once the room is gone.
    let guest = conference_twiml(
        r#"action="/after-conference""#,
        "",
        "<Say>not reached</Say>",
    );
    toy.route("/voice", 200, &guest);
    toy.route(
        "/after-conference",
        200,
        "<Response><Say>conference over</Say></Response>",
    );
    sim.set_phone(A, PhoneScript::talks(secs(3), secs(30)));
    let leg_a = call_out(&sim, &toy, A, "/conf-a").await;
    sim.advance(secs(5)).await;
    let caller = CallerScript {
        // Counts from the answer, which is when its TwiML runs: t = 5 + 100.
        hang_up_after: Some(secs(100)),
        ..CallerScript::default()
    };
    let leg_b = sim.dial_in(B, P, caller).await;
    assert_eq!(sim.conference(ROOM).unwrap().participants.len(), 2);
    sim.run_until_idle(secs(3600)).await;

    let conference = sim.conference(ROOM).unwrap();
    assert_eq!(
        conference.ended_reason.as_deref(),
        Some("participant-with-end-conference-on-exit-left")
    );
    assert_eq!(
        conference_events(&toy, "/conf-status"),
        [
            ev("participant-join", Some(&leg_a)),
            ev("participant-join", Some(&leg_b)),
            ev("participant-leave", Some(&leg_a)),
            ev("participant-leave", Some(&leg_b)),
            ev("conference-end", None),
        ]
    );
    let end = toy.seen("/conf-status").last().unwrap().clone();
    assert_eq!(end.get("CallSidEndingConference"), Some(leg_a.as_str()));
    assert_eq!(
        end.get("EndConferenceOnExit"),
        None,
        "not a participant event"
    );
    assert_eq!(sim.heard_by(B), ["conference over"]);
    let action = &toy.seen("/after-conference")[0];
    assert_eq!(action.get("CallSid"), Some(leg_b.as_str()));
    // Twilio's DialCallStatus "when calling a conference"; no DialCallSid then.
    assert_eq!(action.get("DialCallStatus"), Some("answered"));
    assert_eq!(action.get("DialCallSid"), None);
    // B's call ends with the action's TwiML, long before its own hang-up.
    let leg = sim.call(&leg_b).unwrap();
    assert_eq!((leg.status.as_str(), leg.duration_secs), ("completed", 30));
}

#[tokio::test]
async fn the_last_participant_leaving_ends_the_room_and_a_callers_hang_up_counts_from_answer() {
    let (sim, toy) = setup().await;
    toy.route("/voice", 200, &room_twiml(&toy, "end", "", ""));
    let caller = CallerScript {
        hang_up_after: Some(secs(40)),
        ..CallerScript::default()
    };
    let sid = sim.dial_in(A, P, caller).await;
    sim.run_until_idle(secs(3600)).await;
    assert_eq!(sim.call(&sid).unwrap().duration_secs, 40);
    let conference = sim.conference(ROOM).unwrap();
    assert_eq!(
        conference.ended_reason.as_deref(),
        Some("last-participant-left")
    );
    let end = &toy.seen("/conf-status")[0];
    assert_eq!(end.get("StatusCallbackEvent"), Some("conference-end"));
    assert_eq!(end.get("CallSidEndingConference"), Some(sid.as_str()));
}

#[tokio::test]
async fn a_redirected_leg_gathers_digits_and_rejoins_the_same_room() {
    let (sim, toy) = setup().await;
    let room = room_twiml(&toy, "start end join leave hold", "", "");
    toy.route("/conf", 200, &room);
    toy.route(
        "/extension/prompt",
        200,
        r#"<Response><Gather numDigits="1" action="/extension/answer" timeout="5"><Say language="ja-JP">通話終了まで残り3分です。延長する場合は1を押してください。</Say></Gather><Say>no input</Say></Response>"#,
    );
    toy.route("/extension/answer", 200, &room);
    toy.route(
        "/hold",
        200,
        r#"<Response><Say language="ja-JP">少々お待ちください</Say></Response>"#,
    );
    sim.set_phone(
        A,
        PhoneScript::Answer {
            after: secs(3),
            hang_up_after: None,
            digits: vec![(secs(4), '1')],
        },
    );
    let leg_a = call_out(&sim, &toy, A, "/conf").await;
    let leg_b = call_out(&sim, &toy, B, "/conf").await;
    sim.advance(secs(60)).await;
    let conference = sim.conference(ROOM).unwrap().sid;

    // The expiry warning: hold B, redirect A to the prompt.
    let b_path = format!("{ACCOUNT}/Conferences/{conference}/Participants/{leg_b}.json");
    let hold = toy.url("/hold");
    let (status, _) = rest(
        &sim,
        reqwest::Method::POST,
        &b_path,
        KEY,
        &[("Hold", "true"), ("HoldUrl", &hold), ("HoldMethod", "POST")],
    )
    .await;
    assert_eq!(status, 200);
    let prompt = toy.url("/extension/prompt");
    let a_call = format!("{ACCOUNT}/Calls/{leg_a}.json");
    let (status, _) = rest(
        &sim,
        reqwest::Method::POST,
        &a_call,
        KEY,
        &[("Url", &prompt)],
    )
    .await;
    assert_eq!(status, 200);
    sim.settle().await;
    let info = sim.conference(ROOM).unwrap();
    assert_eq!(
        info.participants.len(),
        1,
        "A left the room for its new TwiML"
    );
    assert_eq!(toy.seen("/hold")[0].get("CallSid"), Some(leg_b.as_str()));

    sim.advance(secs(10)).await;
    assert_eq!(toy.seen("/extension/answer")[0].get("Digits"), Some("1"));
    let info = sim.conference(ROOM).unwrap();
    assert_eq!(info.sid, conference, "the same conference: B kept it alive");
    assert_eq!(info.participants.len(), 2);
    assert_eq!(
        sim.heard_by(A),
        ["通話終了まで残り3分です。延長する場合は1を押してください。"]
    );
    assert_eq!(sim.heard_by(B), ["少々お待ちください"]);

    let (status, _) = rest(
        &sim,
        reqwest::Method::POST,
        &b_path,
        KEY,
        &[("Hold", "false")],
    )
    .await;
    assert_eq!(status, 200);
    sim.settle().await;
    assert_eq!(
        conference_events(&toy, "/conf-status"),
        [
            ev("participant-join", Some(&leg_a)),
            ev("participant-join", Some(&leg_b)),
            ev("conference-start", None),
            ev("participant-hold", Some(&leg_b)),
            ev("participant-leave", Some(&leg_a)),
            ev("participant-join", Some(&leg_a)),
            ev("participant-unhold", Some(&leg_b)),
        ]
    );
    // B was still on hold when A came back.
    assert_eq!(in_room_after_join(&sim, A).last().unwrap(), &[A.to_owned()]);
    assert!(has_event(&sim, |e| matches!(
        e,
        Event::ConferenceLeft { who, why, .. } if who == A && why == "redirected"
    )));
    assert_eq!(sim.call(&leg_a).unwrap().status, "in-progress");
}

/// Twilio: "Conferences will not start until at least two participants join" and one
/// of them has startConferenceOnEnter; until then participants hear the waitUrl (its
/// TwiML once, then silence), Twilio's default music without one, nothing with "".
#[tokio::test]
async fn a_conference_starts_with_two_participants_one_a_starter_and_plays_the_wait_url_until_then()
{
    let (sim, toy) = setup().await;
    toy.route(
        "/wait",
        200,
        r#"<Response><Say language="ja-JP">お待ちください</Say><Pause length="5"/></Response>"#,
    );
    // A: a starter with its own wait TwiML (relative to the document); B: no starter.
    toy.route(
        "/conf-a",
        200,
        &room_twiml(&toy, "start join leave", r#"waitUrl="/wait""#, ""),
    );
    toy.route(
        "/conf-b",
        200,
        &conference_twiml("", r#"startConferenceOnEnter="false""#, ""),
    );
    sim.set_phone(A, PhoneScript::talks(secs(1), secs(100)));
    sim.set_phone(B, PhoneScript::talks(secs(1), secs(100)));
    let leg_a = call_out(&sim, &toy, A, "/conf-a").await;
    sim.advance(secs(30)).await;
    let alone = sim.conference(ROOM).unwrap();
    assert_eq!(alone.status, "init", "one participant is not a conference");
    assert_eq!(sim.heard_by(A), ["お待ちください"], "once, then silence");
    let wait = &toy.seen("/wait")[0];
    assert_eq!(wait.get("CallSid"), Some(leg_a.as_str()));
    assert!(!wait.signature.is_empty());
    assert_eq!(
        conference_events(&toy, "/conf-status"),
        [ev("participant-join", Some(&leg_a))]
    );

    let leg_b = call_out(&sim, &toy, B, "/conf-b").await;
    sim.advance(secs(5)).await;
    assert_eq!(sim.conference(ROOM).unwrap().status, "in-progress");
    assert_eq!(
        conference_events(&toy, "/conf-status"),
        [
            ev("participant-join", Some(&leg_a)),
            ev("participant-join", Some(&leg_b)),
            ev("conference-start", None),
        ]
    );
    assert!(sim.heard_by(B).is_empty(), "B arrived as it started");
    assert_eq!(toy.seen("/wait").len(), 1);
    sim.run_until_idle(secs(3600)).await;

    // Nobody starts it: both wait (default music, silence) until a starter comes.
    toy.route(
        "/no-start",
        200,
        &room_twiml(&toy, "start join", r#"startConferenceOnEnter="false""#, ""),
    );
    toy.route(
        "/no-start-silent",
        200,
        &conference_twiml("", r#"startConferenceOnEnter="false" waitUrl="""#, ""),
    );
    toy.route("/starter", 200, &conference_twiml("", "", ""));
    sim.set_phone(C, PhoneScript::talks(secs(1), secs(100)));
    let seen = toy.seen("/conf-status").len();
    let leg_a = call_out(&sim, &toy, A, "/no-start").await;
    let leg_b = call_out(&sim, &toy, B, "/no-start-silent").await;
    sim.advance(secs(30)).await;
    let waiting = sim.conference(ROOM).unwrap();
    assert_eq!(
        (waiting.status.as_str(), waiting.participants.len()),
        ("init", 2)
    );
    let played = |phone: &str| {
        sim.transcript()
            .into_iter()
            .filter(|e| matches!(&e.event, Event::Played { to, url } if to == phone && url == DEFAULT_WAIT_MUSIC))
            .count()
    };
    assert_eq!((played(A), played(B)), (1, 0));
    let leg_c = call_out(&sim, &toy, C, "/starter").await;
    sim.advance(secs(5)).await;
    assert_eq!(sim.conference(ROOM).unwrap().status, "in-progress");
    assert_eq!(
        conference_events(&toy, "/conf-status")[seen..],
        [
            ev("participant-join", Some(&leg_a)),
            ev("participant-join", Some(&leg_b)),
            ev("participant-join", Some(&leg_c)),
            ev("conference-start", None),
        ]
    );
}

#[test]
fn conference_twiml_is_parsed_with_twilios_defaults_and_rules() {
    let verbs = twiml::parse(
        r#"<Response><Dial timeLimit="60"><Conference statusCallback="https://x/s" statusCallbackEvent="start end join leave mute hold modify speaker announcement" beep="onEnter" waitUrl="" maxParticipants="2" participantLabel="a">room</Conference></Dial></Response>"#,
    )
    .unwrap();
    let twiml::Verb::Dial(dial) = &verbs[0] else {
        panic!("{verbs:?}")
    };
    let twiml::DialTarget::Conference(room) = &dial.targets[0] else {
        panic!("{dial:?}")
    };
    assert_eq!(room.room, "room");
    assert!(room.start_conference_on_enter && !room.end_conference_on_exit && !room.muted);
    assert_eq!((room.beep.as_str(), room.max_participants), ("onEnter", 2));
    assert_eq!(room.status_callback_events.len(), 9);
    assert_eq!(room.participant_label.as_deref(), Some("a"));
    assert_eq!(room.wait, twiml::WaitAudio::Silence);
    assert_eq!(dial.time_limit, secs(60));

    for bad in [
        r#"<Conference statusCallbackEvent="participant-join">r</Conference>"#,
        "<Conference></Conference>",
        r#"<Conference beep="loud">r</Conference>"#,
        "<Conference>r</Conference><Number>+819011112222</Number>",
    ] {
        let twiml = format!("<Response><Dial>{bad}</Dial></Response>");
        assert!(twiml::parse(&twiml).is_err(), "{bad}");
    }
}

#[test]
fn conference_entries_display_who_is_in_the_room() {
    let at = time::macros::datetime!(2026-11-24 20:30:05 UTC);
    let entry = Entry {
        at,
        call_sid: Some("CA0123456789abcdef".into()),
        event: Event::ConferenceJoined {
            room: "r".into(),
            who: B.into(),
            in_room: vec![A.into(), B.into()],
        },
    };
    assert_eq!(
        entry.to_string(),
        "20:30:05 CA01234567 +8180****4444 joined conference \"r\" (in room: +8190****2222, +8180****4444)"
    );
}
