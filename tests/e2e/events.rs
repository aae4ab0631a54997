//! Every file in `events/` — the events `sam local invoke` and `cargo lambda invoke` use, one
//! per route of template.yaml and per event source — run through its function's real
//! binary behind a Lambda Runtime API
//! (`tsunagu_tests::runtime_api`), each on its own on a freshly seeded stack (`make seed`'s
//! state, `tsunagu_tests::seed`), and checked to do what its name says: the answer, the
//! change in the table, the Twilio REST requests the simulator saw.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::common::*;
use base64::Engine as _;
use serde_json::{Value, json};
use tsunagu::phone::PhoneNumber;
use tsunagu_tests::receiver::Receiver;
use tsunagu_tests::runtime_api::{self, Outcome, RuntimeApi};
use tsunagu_tests::seed::{self, Target};
use tsunagu_tests::stack::{Options, REGION, Stack};
use tsunagu_tests::template;

/// The base URL the Twilio events were signed for (scripts/sign-events.py).
const EVENTS_BASE_URL: &str = "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com";

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn event(name: &str) -> Value {
    let path = events_dir().join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The names of every file in `events/`, without `.json`.
fn event_names() -> BTreeSet<String> {
    std::fs::read_dir(events_dir())
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            path.file_stem().unwrap().to_str().unwrap().to_owned()
        })
        .collect()
}

/// The function that owns an event file.
fn function_of(file: &str) -> String {
    runtime_api::function_of_event(file)
        .unwrap_or_else(|| panic!("events/{file}.json belongs to no function"))
        .to_owned()
}

#[test]
fn every_route_and_every_function_has_an_event() {
    let tpl = template::load(&template::default_path()).unwrap();
    let mut covered = std::collections::HashSet::new();
    let mut routes_covered = std::collections::HashSet::new();
    for name in event_names() {
        let function = function_of(&name);
        if tsunagu::handlers::EVENT_FUNCTIONS.contains(&function.as_str()) {
            let e = event(&name);
            // A stream or queue batch, on the function's own event source; else a schedule.
            let source = match e["Records"][0]["eventSource"].as_str() {
                Some("aws:dynamodb") => Some("DynamoDB"),
                Some("aws:sqs") => Some("SQS"),
                _ => None,
            };
            match source {
                Some(kind) => assert!(
                    tpl.sources.contains(&(function.clone(), kind.to_owned())),
                    "events/{name}.json: {function} has no {kind} event source"
                ),
                None => {
                    assert_eq!(
                        e["source"], "aws.events",
                        "events/{name}.json is a scheduled event"
                    );
                    assert!(tpl.schedules.iter().any(|(f, _)| *f == function));
                }
            }
            covered.insert(function);
            continue;
        }
        let route_key = event(&name)["routeKey"].as_str().unwrap().to_owned();
        assert!(
            tpl.routes
                .iter()
                .any(|r| r.function == function && r.route_key() == route_key),
            "events/{name}.json: {route_key} is not a route of {function} in template.yaml"
        );
        routes_covered.insert(route_key);
        covered.insert(function);
    }
    for route in &tpl.routes {
        assert!(
            routes_covered.contains(&route.route_key()),
            "{} ({}) has no event in events/",
            route.route_key(),
            route.function
        );
    }
    for f in tsunagu::handlers::HTTP_FUNCTIONS
        .iter()
        .chain(tsunagu::handlers::EVENT_FUNCTIONS)
    {
        assert!(covered.contains(*f), "{f} has no event in events/");
    }
}

/// What an event did: the function's answer (HTTP status and body, or the sweep's
/// report), and the Twilio REST requests the simulator saw meanwhile.
struct Ran {
    status: u16,
    body: String,
    rest: Vec<(String, String)>,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn rest_to(&self, needle: &str) -> bool {
        self.rest.iter().any(|(_, path)| path.contains(needle))
    }
}

struct Events {
    stack: Stack,
    template: String,
    /// The platform's event endpoint `deliver-events.json` posts to.
    receiver: Receiver,
    /// The events run so far, so the test can tell that it ran them all.
    ran: Mutex<BTreeSet<String>>,
}

impl Events {
    async fn start() -> Events {
        let stack = stack_with(Options {
            env: vec![("PUBLIC_BASE_URL".into(), EVENTS_BASE_URL.into())],
            sweep_every: None,
            ..Options::default()
        })
        .await;
        // The pool's numbers belong to the simulated account, as they would in Twilio.
        for n in [seed::P1, seed::P2, seed::P3] {
            stack.sim().add_number(
                n,
                &format!("{EVENTS_BASE_URL}/twilio/voice/inbound"),
                Some(&format!("{EVENTS_BASE_URL}/twilio/voice/status")),
            );
        }
        let template = std::fs::read_to_string(template::default_path()).unwrap();
        let receiver = Receiver::start(tsunagu_tests::stack::CALLBACK_SIGNING_KEY).await;
        Events {
            stack,
            template,
            receiver,
            ran: Mutex::default(),
        }
    }

    /// The function's environment: template.yaml's, with the local stack's table, secret,
    /// URLs and the emulator's endpoint and test credentials.
    fn environment(&self, function: &str) -> Vec<(String, String)> {
        let config = &self.stack.app.config;
        let locals = HashMap::from([
            ("Table".to_owned(), self.stack.table.clone()),
            (
                "TwilioSecretArn".to_owned(),
                config.twilio_secret_id.clone(),
            ),
            ("PublicBaseUrl".to_owned(), EVENTS_BASE_URL.to_owned()),
            ("TwilioApiBaseUrl".to_owned(), self.stack.sim().base_url()),
            ("CallTimers".to_owned(), self.stack.schedule_group.clone()),
            (
                "CallTimersRole.Arn".to_owned(),
                tsunagu_tests::iam::call_timers_role_arn(&self.stack.table),
            ),
            (
                "ExpiryWarningFunction.Arn".to_owned(),
                tsunagu_tests::iam::lambda_function_arn(
                    tsunagu_tests::stack::REGION,
                    "expiry-warning",
                ),
            ),
            ("EventCallbackUrl".to_owned(), self.receiver.url.clone()),
            ("EventQueue".to_owned(), self.stack.event_queue_url.clone()),
        ]);
        let mut env = template::function_environment(&self.template, function, &locals).unwrap();
        env.extend([
            (
                "AWS_ENDPOINT_URL".into(),
                tsunagu_tests::stack::emulator_url().unwrap(),
            ),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("RUST_LOG".into(), "warn".into()),
        ]);
        env
    }

    /// Seeds, then runs `name` through its function's binary.
    async fn run(&self, name: &str) -> Ran {
        let target = Target {
            gateway_url: self.stack.url.clone(),
            aws: self.stack.aws.clone(),
            table: self.stack.table.clone(),
        };
        seed::seed(&target)
            .await
            .unwrap_or_else(|e| panic!("seed: {e}"));
        self.ran.lock().unwrap().insert(name.to_owned());
        let function = function_of(name);
        let binary = runtime_api::function_binary(&function).unwrap_or_else(|e| panic!("{e}"));
        let timeout = Duration::from_secs(if function == "expiry-warning" {
            300
        } else {
            10
        });
        let api = RuntimeApi::start(&function, REGION, timeout).await.unwrap();
        let mut process = runtime_api::spawn(&binary, &api, &self.environment(&function))
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let rest_before = self.stack.sim().rest_requests().len();
        let outcome = api
            .invoke(&event(name))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = process.kill().await;
        let rest = self.stack.sim().rest_requests()[rest_before..].to_vec();
        let Outcome::Response(bytes) = outcome else {
            panic!("events/{name}.json: {function} failed: {outcome:?}");
        };
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        if tsunagu::handlers::EVENT_FUNCTIONS.contains(&function.as_str()) {
            return Ran {
                status: 200,
                body: answer.to_string(),
                rest,
            };
        }
        let body = answer["body"].as_str().unwrap_or_default();
        let body = if answer["isBase64Encoded"] == true {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap(),
            )
            .unwrap()
        } else {
            body.to_owned()
        };
        Ran {
            status: answer["statusCode"].as_u64().unwrap() as u16,
            body,
            rest,
        }
    }

    async fn session(&self, sid: &str) -> tsunagu::model::Session {
        self.stack
            .app
            .store
            .get_session(sid)
            .await
            .unwrap()
            .unwrap()
    }

    async fn number(&self, n: &str) -> Option<tsunagu::model::ProxyNumber> {
        let n = PhoneNumber::parse(n).unwrap();
        self.stack.app.store.get_number(&n).await.unwrap()
    }

    async fn in_pool(&self, n: &str) -> bool {
        self.number(n).await.is_some()
    }

    /// Where a call from `who` to `proxy` goes, if anywhere.
    async fn route(&self, proxy: &str, who: &str) -> Option<tsunagu::store::Route> {
        let (proxy, who) = (
            PhoneNumber::parse(proxy).unwrap(),
            PhoneNumber::parse(who).unwrap(),
        );
        self.stack.app.store.get_route(&proxy, &who).await.unwrap()
    }
}

#[tokio::test]
async fn every_event_runs_alone_through_its_binary_on_a_seeded_stack() {
    let events = Events::start().await;
    let live = seed::LIVE_SESSION;
    let quiet = seed::QUIET_SESSION;
    let room = tsunagu::domain::vcall::room_name(live);

    let ran = events.run("numbers").await;
    assert_eq!(
        (ran.status, ran.json()["phone_number"].as_str()),
        (201, Some(seed::P4)),
        "{}",
        ran.body
    );
    assert!(events.in_pool(seed::P4).await);

    let ran = events.run("numbers-list").await;
    assert_eq!(ran.status, 200);
    for n in [seed::P1, seed::P2, seed::P3] {
        assert!(ran.body.contains(n), "{n}: {}", ran.body);
    }

    let ran = events.run("numbers-delete").await;
    assert_eq!(ran.status, 204, "{}", ran.body);
    assert!(!events.in_pool(seed::P3).await);

    // P3 reserved: from now on used only when a proxy_identifier names it. The next event's
    // seeding must release it again, or create-session.json could not be given P3.
    let ran = events.run("numbers-update").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    let updated = ran.json();
    assert_eq!(
        (updated["phone_number"].as_str(), &updated["is_reserved"]),
        (Some(seed::P3), &json!(true)),
        "{updated}"
    );
    assert!(events.number(seed::P3).await.unwrap().is_reserved);

    let ran = events.run("create-session").await;
    assert_eq!(ran.status, 201, "{}", ran.body);
    let created = ran.json();
    assert_eq!(created["unique_name"], seed::UNIQUE_NAME);
    assert!(
        created["participants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["proxy_identifier"] == seed::P3),
        "A and B already share P1 and P2, so they get P3: {created}"
    );

    let ran = events.run("get-session").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert_eq!(ran.json()["sid"], live);
    assert_eq!(ran.json()["live_call"]["deadline"], seed::DEADLINE);

    let ran = events.run("list-interactions").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    let mut legs: Vec<String> = ran.json()["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["call_sid"].as_str().unwrap().to_owned())
        .collect();
    legs.sort();
    assert_eq!(legs, [seed::A_LEG, seed::B_LEG]);

    let ran = events.run("list-interactions-one").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert_eq!(ran.json()["call_sid"], seed::A_LEG);

    // The seeded sessions in progress (the live one only), at most two a page.
    let ran = events.run("get-session-list").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    let page = ran.json();
    let listed: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sid"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [live], "{page}");
    assert_eq!(page["meta"]["page_size"], 2);

    // C and D's session, seeded to end a day after its creation (see `seed`).
    let ran = events.run("extend-session").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    let s = events.session(seed::EXPIRING_SESSION).await;
    assert_eq!(s.date_expiry, Some(s.date_created + 86_400 + 600));

    // The same session, seeded again, gets a ttl through the update route; its end stays.
    let ran = events.run("update-session").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    let s = events.session(seed::EXPIRING_SESSION).await;
    assert_eq!(
        (s.ttl, s.date_expiry),
        (7_200, Some(s.date_created + 86_400))
    );

    let ran = events.run("participants").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    let listed = ran.json();
    let identifiers: Vec<&str> = listed["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(identifiers, [seed::A, seed::B], "{listed}");

    let ran = events.run("participants-get").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    let b = ran.json();
    assert_eq!(
        (
            b["sid"].as_str(),
            b["session_sid"].as_str(),
            b["identifier"].as_str(),
            b["proxy_identifier"].as_str(),
            b["announcement"].as_str()
        ),
        (
            Some(seed::QUIET_B),
            Some(quiet),
            Some(seed::B),
            Some(seed::P2),
            Some(seed::ANNOUNCEMENT)
        ),
        "{b}"
    );

    // Proxy's flow: C's session gets its second participant, D, who shares C's P2 (D is on
    // P1 already, with C, elsewhere), and the two can reach each other. Run twice: the
    // second run's seeding forgets the first one's Idempotency-Key, so it adds D again
    // rather than replaying the first answer.
    for _ in 0..2 {
        let ran = events.run("participants-add").await;
        assert_eq!(ran.status, 201, "{}", ran.body);
        let d = ran.json();
        assert_eq!(
            (
                d["session_sid"].as_str(),
                d["identifier"].as_str(),
                d["proxy_identifier"].as_str(),
                d["friendly_name"].as_str(),
                d["announcement"].as_str()
            ),
            (
                Some(seed::HALF_SESSION),
                Some(seed::D),
                Some(seed::P2),
                Some("出品者"),
                Some(seed::ANNOUNCEMENT)
            ),
            "{d}"
        );
        assert_eq!(
            events.session(seed::HALF_SESSION).await.participants.len(),
            2
        );
        let c_to_d = events.route(seed::P2, seed::C).await.expect("C's route");
        assert_eq!(
            Some(c_to_d.other_participant_sid.as_str()),
            d["sid"].as_str()
        );
        assert!(events.route(seed::P2, seed::D).await.is_some(), "D's route");
    }

    // D leaves C and D's session, taking both routes and D's hold on P1 along.
    let ran = events.run("participants-delete").await;
    assert_eq!((ran.status, ran.body.as_str()), (204, ""));
    let remaining: Vec<String> = events
        .session(seed::EXPIRING_SESSION)
        .await
        .participants
        .into_iter()
        .map(|p| p.sid)
        .collect();
    assert_eq!(remaining, [seed::EXPIRING_C]);
    assert!(events.route(seed::P1, seed::C).await.is_none());
    assert!(events.route(seed::P1, seed::D).await.is_none());
    let d = PhoneNumber::parse(seed::D).unwrap();
    assert!(
        events
            .stack
            .app
            .store
            .proxies_of(&d)
            .await
            .unwrap()
            .is_empty(),
        "D is in no session any more"
    );

    let ran = events.run("numbers-get").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert_eq!(ran.json()["phone_number"], seed::P1);

    // V字発信 on the session without a call: Twilio is asked to ring A and B from P2.
    let ran = events.run("start-v-call").await;
    assert_eq!(ran.status, 202, "{}", ran.body);
    let placed = ran.json();
    assert_eq!(placed["calls"].as_array().unwrap().len(), 2, "{placed}");
    let sim_calls = events.stack.sim().calls();
    for who in [seed::A, seed::B] {
        assert!(
            sim_calls.iter().any(|c| c.to == who && c.from == seed::P2),
            "{who} rung from P2: {sim_calls:?}"
        );
    }

    let ran = events.run("bridge-twiml").await;
    assert_eq!(ran.status, 200);
    assert!(
        ran.body.contains(&format!(r#"callerId="{}""#, seed::P2))
            && ran.body.contains(&format!(">{}</Number>", seed::B)),
        "{}",
        ran.body
    );

    let ran = events.run("conference-twiml").await;
    assert_eq!(ran.status, 200);
    assert!(
        ran.body.contains(&format!(">{room}</Conference>")),
        "{}",
        ran.body
    );

    // The room's recording is ready: Twilio names the conference (a conference recording
    // has no CallSid), and the recording goes on the first participant's leg in the room.
    let ran = events.run("recording-status").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert!(ran.body.contains("<Response"), "{}", ran.body);
    let recording = events
        .stack
        .app
        .store
        .get_recording(live, seed::A_LEG)
        .await
        .unwrap()
        .expect("the recording stored on A's leg");
    assert_eq!(
        (
            recording.sid.as_str(),
            recording.duration,
            recording.channels
        ),
        ("RE55555555555555555555555555555555", 95, 1)
    );
    assert!(
        recording
            .url
            .ends_with("/Recordings/RE55555555555555555555555555555555")
    );

    let ran = events.run("conference-status").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    let conference = events
        .stack
        .app
        .store
        .get_conference(live, seed::CONFERENCE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        conference.legs.get(seed::LIVE_B).map(String::as_str),
        Some(seed::B_LEG),
        "B's join recorded next to A's: {:?}",
        conference.legs
    );

    // The sweep at 20:48 finds the call inside its warning window (deadline 20:50): the
    // warning is claimed once and A's leg is sent to the extension prompt.
    let ran = events.run("expiry-warning").await;
    let report = ran.json();
    assert_eq!(
        (report["warned"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );
    assert_eq!(
        events.session(live).await.live_call.unwrap().warned_for,
        Some(seed::DEADLINE)
    );
    assert!(
        ran.rest_to(seed::A_LEG),
        "A's leg redirected to the prompt: {:?}",
        ran.rest
    );

    let ran = events.run("extension-prompt").await;
    assert_eq!(ran.status, 200);
    assert!(
        ran.body.contains("<Gather")
            && ran.body.contains(r#"numDigits="1""#)
            && ran.body.contains(&format!("deadline={}", seed::DEADLINE)),
        "{}",
        ran.body
    );

    // Pressing 1 for the seeded deadline really extends it, and A goes back to the room.
    let ran = events.run("extension").await;
    assert_eq!(ran.status, 200);
    assert!(
        ran.body.contains(&format!(">{room}</Conference>")),
        "{}",
        ran.body
    );
    let s = events.session(live).await;
    assert_eq!(s.extension_count, 1);
    assert_eq!(s.live_call.unwrap().deadline, Some(seed::DEADLINE + 300));
    assert!(
        ran.rest_to(seed::A_LEG),
        "the legs' TimeLimit moved: {:?}",
        ran.rest
    );

    let ran = events.run("extension-hold").await;
    assert_eq!(ran.status, 200);
    assert!(ran.body.contains("少々お待ちください"), "{}", ran.body);

    // A calls P2: the masked call dials B with P2 as caller ID, after one write on the
    // route, which notes the call; the legs are logged from their status callbacks.
    let ran = events.run("inbound-call").await;
    assert_eq!(ran.status, 200);
    assert!(
        ran.body.contains(&format!(r#"callerId="{}""#, seed::P2))
            && ran.body.contains(&format!(">{}</Number>", seed::B))
            && ran.body.contains(&format!(
                r#"action="{EVENTS_BASE_URL}/twilio/voice/inbound/dial-result?session={quiet}""#
            ))
            // B is announced: their end runs the whisper on answering.
            && ran.body.contains(&format!(
                r#"url="{EVENTS_BASE_URL}/twilio/voice/inbound/whisper?session={quiet}&amp;participant={}""#,
                seed::QUIET_B
            )),
        "{}",
        ran.body
    );
    let store = &events.stack.app.store;
    let route = store
        .get_route(
            &PhoneNumber::parse(seed::P2).unwrap(),
            &PhoneNumber::parse(seed::A).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        route.last_call_sid.as_deref(),
        Some("CA11111111111111111111111111111111")
    );
    assert!(store.list_interactions(quiet).await.unwrap().is_empty());

    // B answers that call: before the two are connected, B alone hears their announcement;
    // the TwiML then ends, and Twilio bridges the call.
    let ran = events.run("inbound-call-whisper").await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert!(
        ran.body.contains(&format!("{}</Say>", seed::ANNOUNCEMENT))
            && !ran.body.contains("<Hangup")
            && !ran.body.contains("<Dial"),
        "{}",
        ran.body
    );

    let ran = events.run("inbound-call-dial-result").await;
    assert_eq!(ran.status, 200);
    assert!(
        ran.body.contains("ただいま話し中です") && ran.body.ends_with("<Hangup/></Response>"),
        "{}",
        ran.body
    );

    // The dialled leg's final callback: 65 s to a mobile, two started minutes at 16.2 yen.
    let ran = events.run("call-status").await;
    assert_eq!(
        (ran.status, ran.body.contains("<Response")),
        (200, true),
        "{}",
        ran.body
    );
    let leg = events
        .stack
        .app
        .store
        .get_interaction(quiet, "CA22222222222222222222222222222222")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((leg.duration, leg.cost_milli_yen), (65, 32_400));
    // It named its parent, A's call, whose own final callback will find the session so.
    let parent = events
        .stack
        .app
        .store
        .call_ref("CA11111111111111111111111111111111")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parent.session_sid, quiet);

    // A stream batch (a session created, a leg completed) becomes four events on the FIFO
    // queue, in order, grouped by their session, de-duplicated by their ids.
    let ran = events.run("publish-events").await;
    assert_eq!(ran.json()["published"], 4, "{}", ran.body);
    let sqs = aws_sdk_sqs::Client::new(&events.stack.aws);
    let queued = sqs
        .receive_message()
        .queue_url(&events.stack.event_queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let types: Vec<String> = queued
        .iter()
        .map(|m| {
            let e: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            assert_eq!(e["session_sid"], quiet);
            let attributes = m.attributes().unwrap();
            use aws_sdk_sqs::types::MessageSystemAttributeName as N;
            assert_eq!(attributes[&N::MessageGroupId], quiet);
            assert_eq!(
                attributes[&N::MessageDeduplicationId],
                e["id"].as_str().unwrap()
            );
            e["type"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        types,
        [
            "session.created",
            "participant.added",
            "participant.added",
            "interaction.completed"
        ]
    );

    // One queued event posted to the platform, signed with the secret's key.
    let ran = events.run("deliver-events").await;
    assert_eq!(
        ran.json()["batchItemFailures"],
        serde_json::json!([]),
        "{}",
        ran.body
    );
    let received = events.receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].signature_valid, "{received:?}");
    let sent: Value = serde_json::from_str(
        event("deliver-events")["Records"][0]["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(received[0].event, sent);

    // Closing the live session ends its call through Twilio and frees its routes.
    let ran = events.run("close-session").await;
    assert_eq!(ran.status, 200);
    assert_eq!(ran.json()["status"], "closed");
    assert!(!events.session(live).await.status.is_open());
    assert!(
        ran.rest_to(seed::CONFERENCE) || ran.rest_to(seed::A_LEG),
        "the live call ended through Twilio: {:?}",
        ran.rest
    );

    assert_eq!(
        *events.ran.lock().unwrap(),
        event_names(),
        "every file in events/ is run above"
    );
}
