//! Every file in `events/` — the events `sam local invoke` uses — fed to its real handler
//! exactly as Lambda would (`lambda_http::request::from_str`), in a story that needs each
//! one to work: add a number, route a call, log it, close the session, free the number.

use std::path::PathBuf;

use crate::common::*;
use serde_json::Value;
use tsunagu::model::ProxyNumber;
use tsunagu::phone::PhoneNumber;
use tsunagu_tests::gateway::{self, Gateway};
use tsunagu_tests::stack::{Options, Stack};
use tsunagu_tests::template;

/// The base URL the Twilio events were signed for (scripts/sign-events.py).
const EVENTS_BASE_URL: &str = "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com";
const EVENT_SESSION: &str = "KC0123456789abcdef0123456789abcdef";

fn event(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The function that owns an event file: its name, or the name before a `-suffix` variant.
fn function_of(file: &str) -> String {
    let functions = tsunagu::handlers::HTTP_FUNCTIONS;
    functions
        .iter()
        .chain(tsunagu::handlers::EVENT_FUNCTIONS)
        .filter(|f| file == **f || file.starts_with(&format!("{f}-")))
        .max_by_key(|f| f.len())
        .unwrap_or_else(|| panic!("events/{file}.json belongs to no function"))
        .to_string()
}

struct Invoker {
    gateway: Gateway,
}

impl Invoker {
    async fn invoke_scheduled(&self, name: &str) -> Value {
        let function = function_of(name);
        let handler = tsunagu::handlers::event_handler(&function).unwrap();
        handler(self.gateway.apps[&function].clone(), event(name))
            .await
            .unwrap()
    }

    async fn invoke(&self, name: &str) -> (u16, String) {
        let response = gateway::run_event(&self.gateway, &function_of(name), &event(name))
            .await
            .unwrap();
        let json = gateway::lambda_response_json(response);
        (
            json["statusCode"].as_u64().unwrap() as u16,
            json["body"].as_str().unwrap().to_owned(),
        )
    }
}

async fn seed_session(stack: &Stack) {
    let now = stack.app.now();
    let mut session = session_fixture(now, A, B, P1);
    session.sid = EVENT_SESSION.into();
    session.ttl = 3600;
    session.date_expiry = Some(now + 86_400);
    // No spoken warning: the masked call below is a plain <Dial>, not a conference.
    session.warning_lead = 0;
    session.participants[0].sid = "KP0123456789abcdef0123456789abcdef".into();
    session.participants[1].sid = "KPfedcba9876543210fedcba9876543210".into();
    stack.app.store.create_session(&session, now).await.unwrap();
}

#[test]
fn every_function_has_an_event_on_a_route_it_owns() {
    let tpl = template::load(&template::default_path()).unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut covered = std::collections::HashSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let function = function_of(&name);
        if tsunagu::handlers::EVENT_FUNCTIONS.contains(&function.as_str()) {
            assert_eq!(
                event(&name)["source"],
                "aws.events",
                "events/{name}.json is a scheduled event"
            );
            assert!(tpl.schedules.iter().any(|(f, _)| *f == function));
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
        covered.insert(function);
    }
    for f in tsunagu::handlers::HTTP_FUNCTIONS
        .iter()
        .chain(tsunagu::handlers::EVENT_FUNCTIONS)
    {
        assert!(covered.contains(*f), "{f} has no event in events/");
    }
}

#[tokio::test]
async fn the_events_drive_the_real_handlers() {
    let stack = stack_with(Options {
        env: vec![("PUBLIC_BASE_URL".into(), EVENTS_BASE_URL.into())],
        ..Options::default()
    })
    .await;
    let lambda = Invoker {
        gateway: stack.gateway.clone(),
    };

    let (status, body) = lambda.invoke("numbers").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = lambda.invoke("numbers-list").await;
    assert_eq!(status, 200);
    assert!(body.contains("+815031234567"), "{body}");

    seed_session(&stack).await;
    let (status, body) = lambda.invoke("get-session").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(EVENT_SESSION));

    // V字発信 in conference mode rings both participants through Twilio's REST API.
    stack.sim().add_number(
        "+815031234567",
        &format!("{EVENTS_BASE_URL}/twilio/voice/inbound"),
        None,
    );
    let (status, body) = lambda.invoke("start-v-call").await;
    assert_eq!(status, 202, "{body}");
    let placed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(placed["calls"].as_array().unwrap().len(), 2, "{placed}");
    assert_eq!(stack.sim().calls().len(), 2);

    let (status, twiml) = lambda.invoke("bridge-twiml").await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains(r#"callerId="+815031234567""#) && twiml.contains(">+818098765432</Number>"),
        "{twiml}"
    );
    let (status, twiml) = lambda.invoke("conference-twiml").await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains(">tsunagu-7d2ebc3f713d3f2231492b11</Conference>"),
        "{twiml}"
    );
    assert!(twiml.contains(r#"endConferenceOnExit="false""#), "{twiml}");
    let (status, _) = lambda.invoke("conference-status").await;
    assert_eq!(status, 200);
    let conference = stack
        .app
        .store
        .get_conference(EVENT_SESSION, "CF44444444444444444444444444444444")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        conference
            .legs
            .get("KP0123456789abcdef0123456789abcdef")
            .map(String::as_str),
        Some("CA33333333333333333333333333333333")
    );

    // The press-1 dialogue: the prompt gathers one digit, the answer rejoins the room, and
    // the other party's hold message is served.
    let (status, twiml) = lambda.invoke("extension-prompt").await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Gather") && twiml.contains(r#"numDigits="1""#),
        "{twiml}"
    );
    let (status, twiml) = lambda.invoke("extension").await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Conference") && twiml.contains("tsunagu-7d2ebc3f713d3f2231492b11"),
        "{twiml}"
    );
    let (status, twiml) = lambda.invoke("extension-hold").await;
    assert_eq!(status, 200);
    assert!(twiml.contains("少々お待ちください"), "{twiml}");

    let before = stack
        .app
        .store
        .get_session(EVENT_SESSION)
        .await
        .unwrap()
        .unwrap()
        .date_expiry
        .unwrap();
    let (status, body) = lambda.invoke("extend-session").await;
    assert_eq!(status, 200, "{body}");
    let after = stack
        .app
        .store
        .get_session(EVENT_SESSION)
        .await
        .unwrap()
        .unwrap()
        .date_expiry
        .unwrap();
    assert_eq!(after - before, 600);

    let report = lambda.invoke_scheduled("expiry-warning").await;
    assert_eq!(
        report["queries"], 8,
        "one Query per due-index shard: {report}"
    );

    // The caller's webhook (base64 form body, signed for the events' URL) is routed to B.
    let (status, twiml) = lambda.invoke("inbound-call").await;
    assert_eq!(status, 200);
    assert!(twiml.contains(r#"callerId="+815031234567""#), "{twiml}");
    assert!(twiml.contains(">+818098765432</Number>"), "{twiml}");
    assert!(
        twiml.contains(&format!(
            r#"action="{EVENTS_BASE_URL}/twilio/voice/inbound/dial-result?session={EVENT_SESSION}""#
        )),
        "{twiml}"
    );
    // That <Dial>'s action: B was busy, so A hears why before the call ends.
    let (status, twiml) = lambda.invoke("inbound-call-dial-result").await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("ただいま話し中です") && twiml.ends_with("<Hangup/></Response>"),
        "{twiml}"
    );

    let (status, body) = lambda.invoke("call-status").await;
    assert_eq!((status, body.contains("<Response")), (200, true), "{body}");
    let (status, body) = lambda.invoke("list-interactions").await;
    assert_eq!(status, 200);
    let log: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        log["interactions"].as_array().unwrap().len(),
        4,
        "two V-call legs, the caller's leg, the dialled leg: {log}"
    );
    let dialled = log["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["call_sid"] == "CA22222222222222222222222222222222")
        .unwrap();
    assert_eq!(
        (dialled["duration"].as_u64(), dialled["cost"].as_f64()),
        (Some(65), Some(32.4)),
        "{log}"
    );

    let (status, body) = lambda.invoke("numbers-delete").await;
    assert_eq!(status, 409, "the number is in use: {body}");

    stack
        .app
        .store
        .add_number(&ProxyNumber {
            phone_number: PhoneNumber::parse(P2).unwrap(),
            is_reserved: false,
            in_use: 0,
            date_created: 0,
            date_updated: 0,
        })
        .await
        .unwrap();
    let (status, body) = lambda.invoke("create-session").await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body.contains("+815031234568"),
        "A and B already share P1, so the new session gets P2: {body}"
    );

    let (status, body) = lambda.invoke("close-session").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""status":"closed""#), "{body}");
    let (status, _) = lambda.invoke("numbers-delete").await;
    assert_eq!(status, 204, "free once the session closed");
}
