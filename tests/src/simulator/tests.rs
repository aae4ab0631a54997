//! Tests of the simulator itself, against a toy webhook server that answers fixed TwiML.
//! A module per part of the simulator; the toy server and the helpers they share are here.

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

mod conference;
mod dial;
mod lifecycle;
mod participants;
mod rest;
mod verbs;

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

/// A third real phone.
const C: &str = "+817055556666";
