//! A platform's event endpoint, for tests and the demo: it checks each request's
//! `Tsunagu-Signature` as the README tells platforms to, records what arrived, and answers
//! as it was scripted to (a status, or a stall before 200), then 200.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The status the receiver answered; 0 while it has sent none (a stalled request).
    pub answered: u16,
    /// When it arrived (real time: retries back off in real time, through SQS).
    pub arrived: Instant,
}

/// One scripted answer: `status`, once `after` has passed.
#[derive(Clone, Copy)]
struct Reply {
    status: u16,
    after: Duration,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Reply>,
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
                    let arrived = Instant::now();
                    // In a block: no guard may live across the stall's await.
                    let (reply, index) = {
                        let mut state = st.lock().unwrap();
                        let reply = state.script.pop_front().unwrap_or(Reply {
                            status: 200,
                            after: Duration::ZERO,
                        });
                        state.received.push(Received {
                            body: String::from_utf8_lossy(&body).into_owned(),
                            event: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            signature: header.to_owned(),
                            timestamp,
                            signature_valid: timestamp.is_some(),
                            answered: if reply.after.is_zero() {
                                reply.status
                            } else {
                                0
                            },
                            arrived,
                        });
                        (reply, state.received.len() - 1)
                    };
                    ch.notify_waiters();
                    if !reply.after.is_zero() {
                        // Recorded on arrival: the sender may give up, and drop the
                        // connection, before this answer goes out.
                        tokio::time::sleep(reply.after).await;
                        st.lock().unwrap().received[index].answered = reply.status;
                        ch.notify_waiters();
                    }
                    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK)
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
        self.state
            .lock()
            .unwrap()
            .script
            .extend(statuses.iter().map(|&status| Reply {
                status,
                after: Duration::ZERO,
            }));
    }

    /// The next request gets no answer for `stall`, then 200: a platform slower than
    /// Tsunagu waits for. Its [`Received::answered`] stays 0 until then.
    pub fn stall_next(&self, stall: Duration) {
        self.state.lock().unwrap().script.push_back(Reply {
            status: 200,
            after: stall,
        });
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
    use std::process::Command;

    const KEY: &str = "whsec-readme-check";

    /// The README's fenced block in `lang` that contains `marker`.
    fn readme_block(lang: &str, marker: &str) -> String {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        readme
            .split(&format!("```{lang}\n"))
            .skip(1)
            .filter_map(|rest| rest.split("\n```").next())
            .find(|block| block.contains(marker))
            .unwrap_or_else(|| panic!("no ```{lang} block with {marker} in README.md"))
            .to_owned()
    }

    /// Signed now, signed long ago, altered, and signed with another key: what the README's
    /// check must answer for each.
    fn cases() -> Vec<(String, String, &'static str)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let body = r#"{"id":"EV1","type":"session.created"}"#;
        let sign = |key: &str, t: i64| tsunagu::callback::signature(key, t, body.as_bytes());
        vec![
            (sign(KEY, now - 5), body.to_owned(), "true"),
            (sign(KEY, now - 400), body.to_owned(), "false"),
            (sign(KEY, now - 5), body.replace("EV1", "EV2"), "false"),
            (sign("another-key", now - 5), body.to_owned(), "false"),
        ]
    }

    #[test]
    fn the_readmes_python_check_takes_what_tsunagu_signs_and_refuses_stale_or_altered_requests() {
        let function = readme_block("python", "def from_tsunagu");
        let script = format!(
            "{function}\nimport sys\nprint(str(from_tsunagu(sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode())).lower())\n"
        );
        for (header, body, expected) in cases() {
            let out = Command::new("python3")
                .args(["-c", &script, &header, &body, KEY])
                .output()
                .expect("python3");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                expected,
                "{header} {body}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn the_readmes_node_check_takes_what_tsunagu_signs_and_refuses_stale_or_altered_requests() {
        let function = readme_block("js", "function fromTsunagu");
        let script = format!(
            "{function}\nconst [h, b, k] = process.argv.slice(1);\nconsole.log(fromTsunagu(h, Buffer.from(b), k));\n"
        );
        for (header, body, expected) in cases() {
            let out = match Command::new("node")
                .args(["-e", &script, &header, &body, KEY])
                .output()
            {
                Ok(out) => out,
                // Node is not among what `make test` installs; Python's check above always runs.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("node not installed: the README's Node check not run");
                    return;
                }
                Err(e) => panic!("node: {e}"),
            };
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                expected,
                "{header} {body}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn verify_accepts_the_signature_and_refuses_any_change() {
        let header = tsunagu::callback::signature("k", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(verify("k", &header, b"{\"a\":1}"), Some(1_700_000_000));
        assert_eq!(verify("k", &header, b"{\"a\":2}"), None);
        assert_eq!(verify("other", &header, b"{\"a\":1}"), None);
        assert_eq!(verify("k", "", b"{\"a\":1}"), None);
    }

    #[tokio::test]
    async fn a_stalled_request_stays_unanswered_while_the_next_is_taken() {
        let receiver = Receiver::start("k").await;
        receiver.stall_next(Duration::from_secs(60));
        let http = tsunagu::app::http_client();
        let first = http
            .post(&receiver.url)
            .body("{}")
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(first.is_err_and(|e| e.is_timeout()), "no answer in time");
        let second = http.post(&receiver.url).body("{}").send().await.unwrap();
        assert_eq!(second.status(), 200);
        let answered: Vec<u16> = receiver.received().iter().map(|r| r.answered).collect();
        assert_eq!(answered, [0, 200]);
        assert_eq!(receiver.accepted().len(), 1, "only what was answered 2xx");
    }
}
