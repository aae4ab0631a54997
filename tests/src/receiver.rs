//! A platform's event endpoint, for tests and the demo: it checks each request's
//! `Tsunagu-Signature` as the README tells platforms to, records what arrived, and answers
//! with the statuses it was scripted to (then 200).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub event: Value,
    /// The `Tsunagu-Signature` header as sent (empty when there was none).
    pub signature: String,
    /// The header's `t=`, and whether `v1=` matched the HMAC under the receiver's key.
    pub timestamp: Option<i64>,
    pub signature_valid: bool,
    /// The status the receiver answered.
    pub answered: u16,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<u16>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    key: String,
    state: Arc<Mutex<State>>,
    changed: Arc<tokio::sync::Notify>,
    server: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.server) == 1 {
            self.server.abort();
        }
    }
}

/// Whether `header` (`t=…,v1=…`) signs `body` under `key`: the platform's check.
pub fn verify(key: &str, header: &str, body: &[u8]) -> Option<i64> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (t, v1) = (t?, v1?);
    // The same construction as the README's Python and Node: HMAC-SHA256 over "<t>.<body>".
    (tsunagu::callback::signature(key, t, body) == format!("t={t},v1={v1}")).then_some(t)
}

impl Receiver {
    /// Listens on 127.0.0.1 (a free port); `key` is the secret's `callback_signing_key`.
    pub async fn start(key: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a free port");
        let url = format!(
            "http://127.0.0.1:{}/events",
            listener.local_addr().unwrap().port()
        );
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (st, ch, k) = (state.clone(), changed.clone(), key.to_owned());
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (st, ch, k) = (st.clone(), ch.clone(), k.clone());
                async move {
                    let header = headers
                        .get("tsunagu-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let timestamp = verify(&k, header, &body);
                    let mut state = st.lock().unwrap();
                    let answered = state.script.pop_front().unwrap_or(200);
                    state.received.push(Received {
                        body: String::from_utf8_lossy(&body).into_owned(),
                        event: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        signature: header.to_owned(),
                        timestamp,
                        signature_valid: timestamp.is_some(),
                        answered,
                    });
                    drop(state);
                    ch.notify_waiters();
                    StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
                }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            key: key.to_owned(),
            state,
            changed,
            server: Arc::new(server),
        }
    }

    /// The next requests get these statuses, in order; then 200 again.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The events the platform took (answered 2xx), each once: de-duplicated by id, as the
    /// README tells platforms to.
    pub fn accepted(&self) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .filter(|r| seen.insert(r.event["id"].as_str().unwrap_or_default().to_owned()))
            .map(|r| r.event)
            .collect()
    }

    /// Waits until `done` holds over what arrived, or `within` (real time) has passed;
    /// returns whether it held. Woken by each arrival, not by polling.
    pub async fn wait_until(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if done(&self.received()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.received());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_the_signature_and_refuses_any_change() {
        let header = tsunagu::callback::signature("k", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(verify("k", &header, b"{\"a\":1}"), Some(1_700_000_000));
        assert_eq!(verify("k", &header, b"{\"a\":2}"), None);
        assert_eq!(verify("other", &header, b"{\"a\":1}"), None);
        assert_eq!(verify("k", "", b"{\"a\":1}"), None);
    }
}
