//! Tests of the simulator itself, against a toy webhook server that answers fixed TwiML.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

use super::*;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token";
const KEY: (&str, &str) = ("SK0123456789abcdef0123456789abcdef", "key-secret");
/// The Twilio (proxy) number.
const P: &str = "+815012345678";
/// Real phones.
const A: &str = "+819011112222";
const B: &str = "+818033334444";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A request the toy webhook server received.
#[derive(Clone, Debug)]
struct Seen {
    /// Path and query, as requested.
    target: String,
    signature: String,
    user_agent: String,
    content_type: String,
    params: Vec<(String, String)>,
}

impl Seen {
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct ToyState {
    routes: Arc<Mutex<HashMap<String, (u16, String)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// For the route that calls the simulator's REST API before answering.
    sim_base: Arc<Mutex<Option<String>>>,
}

/// A webhook server answering fixed TwiML per path (`<Response/>` by default).
struct Toy {
    base: String,
    state: ToyState,
}

impl Toy {
    async fn start() -> Toy {
        let state = ToyState::default();
        let app = axum::Router::new()
            .fallback(toy_handler)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Toy { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn route(&self, path: &str, status: u16, body: &str) {
        let mut routes = self.state.routes.lock().unwrap();
        routes.insert(path.to_owned(), (status, body.to_owned()));
    }

    /// Requests whose path (without query) is `path`.
    fn seen(&self, path: &str) -> Vec<Seen> {
        let seen = self.state.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.target.split('?').next() == Some(path))
            .cloned()
            .collect()
    }
}

async fn toy_handler(
    State(state): State<ToyState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
    let target = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let seen = Seen {
        target,
        signature: header("x-twilio-signature"),
        user_agent: header("user-agent"),
        content_type: header("content-type"),
        params,
    };
    state.seen.lock().unwrap().push(seen.clone());

    if uri.path() == "/calls-back" {
        // A handler that asks Twilio about the call while Twilio waits for its answer.
        let base = state.sim_base.lock().unwrap().clone().unwrap();
        let sid = seen.get("CallSid").unwrap();
        let url = format!("{base}/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json");
        let response = reqwest::Client::new()
            .get(url)
            .basic_auth(ACCOUNT, Some(TOKEN))
            .send()
            .await
            .unwrap();
        let call: Value = response.json().await.unwrap();
        let twiml = format!(
            "<Response><Say>{}</Say></Response>",
            call["status"].as_str().unwrap()
        );
        return (StatusCode::OK, twiml);
    }
    let routes = state.routes.lock().unwrap();
    let (status, body) = routes
        .get(uri.path())
        .cloned()
        .unwrap_or((200, "<Response/>".to_owned()));
    (StatusCode::from_u16(status).unwrap(), body)
}

async fn setup() -> (Simulator, Toy) {
    let mut config = SimConfig::new(ACCOUNT, TOKEN);
    config.api_key = Some((KEY.0.to_owned(), KEY.1.to_owned()));
    let sim = Simulator::start(config).await.unwrap();
    let toy = Toy::start().await;
    *toy.state.sim_base.lock().unwrap() = Some(sim.base_url());
    sim.add_number(
        P,
        &toy.url("/voice?tenant=1"),
        Some(&toy.url("/parent-status")),
    );
    (sim, toy)
}

fn callbacks(sim: &Simulator, call_sid: &str) -> Vec<(String, u16)> {
    sim.transcript()
        .into_iter()
        .filter(|e| e.call_sid.as_deref() == Some(call_sid))
        .filter_map(|e| match e.event {
            Event::StatusCallback {
                call_status,
                status,
                ..
            } => Some((call_status, status)),
            _ => None,
        })
        .collect()
}

fn child_of(sim: &Simulator, parent: &str) -> CallInfo {
    sim.calls()
        .into_iter()
        .find(|c| c.parent_sid.as_deref() == Some(parent))
        .expect("a dialled leg")
}

fn has_event(sim: &Simulator, wanted: impl Fn(&Event) -> bool) -> bool {
    sim.transcript().iter().any(|e| wanted(&e.event))
}

fn dial_twiml(attributes: &str, number_attributes: &str, number: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Dial callerId="{P}" {attributes}><Number {number_attributes}>{number}</Number></Dial></Response>"#
    )
}

/// A client for the simulator's REST API.
async fn rest(
    sim: &Simulator,
    method: reqwest::Method,
    path: &str,
    auth: (&str, &str),
    form: &[(&str, &str)],
) -> (u16, Value) {
    let url = format!("{}/2010-04-01/Accounts/{path}", sim.base_url());
    let response = reqwest::Client::new()
        .request(method, url)
        .basic_auth(auth.0, Some(auth.1))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

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

// ----- conferences ---------------------------------------------------------------

const ROOM: &str = "session-KS01";

fn conference_twiml(dial_attributes: &str, conference_attributes: &str, after: &str) -> String {
    format!(
        r#"<Response><Dial {dial_attributes}><Conference {conference_attributes}>{ROOM}</Conference></Dial>{after}</Response>"#
    )
}

/// Conference TwiML whose statusCallback is the toy's `/conf-status`.
fn room_twiml(toy: &Toy, events: &str, extra: &str, after: &str) -> String {
    let attributes = format!(
        r#"statusCallback="{}" statusCallbackEvent="{events}" {extra}"#,
        toy.url("/conf-status")
    );
    conference_twiml("", &attributes, after)
}

/// `POST Calls.json` from P to `to`, with TwiML from the toy's `path`.
async fn call_out(sim: &Simulator, toy: &Toy, to: &str, path: &str) -> String {
    let url = toy.url(path);
    let form = [("To", to), ("From", P), ("Url", url.as_str())];
    let calls = format!("{ACCOUNT}/Calls.json");
    let (status, call) = rest(sim, reqwest::Method::POST, &calls, KEY, &form).await;
    assert_eq!(status, 201, "{call}");
    call["sid"].as_str().unwrap().to_owned()
}

/// The conference callbacks the toy got at `path`: (event, CallSid).
fn conference_events(toy: &Toy, path: &str) -> Vec<(String, Option<String>)> {
    toy.seen(path)
        .iter()
        .map(|s| {
            let event = s.get("StatusCallbackEvent").unwrap().to_owned();
            (event, s.get("CallSid").map(str::to_owned))
        })
        .collect()
}

fn ev(event: &str, call: Option<&str>) -> (String, Option<String>) {
    (event.to_owned(), call.map(str::to_owned))
}

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

/// A third real phone.
const C: &str = "+817055556666";

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
