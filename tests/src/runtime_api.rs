//! A stand-in for the Lambda Runtime API, so a function's real binary can be run on an event
//! as Lambda runs it: the binary long-polls `GET /2018-06-01/runtime/invocation/next`, gets
//! the event with the invocation's headers, and posts its answer to
//! `/2018-06-01/runtime/invocation/{AwsRequestId}/response` (or `/error`), or reports a failed
//! start to `/2018-06-01/runtime/init/error`. Every answer is `202 Accepted`.
//!
//! As documented in "Using the Lambda runtime API for custom runtimes"
//! (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): `next` carries
//! `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` (epoch milliseconds),
//! `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`, and the runtime
//! finds the API at `AWS_LAMBDA_RUNTIME_API` (host:port, no scheme). The environment a
//! function starts with is Lambda's "Defined runtime environment variables"
//! (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Notify, oneshot};

pub const ACCOUNT_ID: &str = "123456789012";

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function's answer (`/response`).
    Response(Vec<u8>),
    /// The function reported an error (`/error`): its `Lambda-Runtime-Function-Error-Type`
    /// and body.
    Error { kind: String, body: String },
    /// The runtime failed to start (`/init/error`).
    InitError { kind: String, body: String },
}

struct Invocation {
    request_id: String,
    event: Vec<u8>,
    answer: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Invocation>>,
    queued: Notify,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: Mutex<Option<Instant>>,
    polled: Notify,
    init_error: Mutex<Option<(String, String)>>,
}

pub struct RuntimeApi {
    addr: SocketAddr,
    function_name: String,
    region: String,
    /// The function's timeout, for `Lambda-Runtime-Deadline-Ms`.
    timeout: Duration,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    function_arn: String,
    timeout: Duration,
}

impl RuntimeApi {
    /// Serves one function's runtime API on a free port of 127.0.0.1.
    pub async fn start(
        function_name: &str,
        region: &str,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let state = AppState {
            shared: shared.clone(),
            function_arn: format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"),
            timeout,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            function_name: function_name.to_owned(),
            region: region.to_owned(),
            timeout,
            shared,
            server,
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API`'s value: host and port.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The variables Lambda itself defines for a function's process.
    pub fn lambda_environment(&self) -> Vec<(String, String)> {
        let name = &self.function_name;
        [
            ("AWS_LAMBDA_RUNTIME_API", self.endpoint()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2030/11/24/[$LATEST]local".into(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_DEFAULT_REGION", self.region.clone()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
            ("_HANDLER", "bootstrap".into()),
            ("TZ", ":UTC".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Hands `event` to the next poll of `/next` and waits for the function's answer, at
    /// most the function's timeout (as Lambda would; plus a margin for a slow machine).
    pub async fn invoke(&self, event: &serde_json::Value) -> Result<Outcome, String> {
        if let Some((kind, body)) = self.shared.init_error.lock().unwrap().clone() {
            return Ok(Outcome::InitError { kind, body });
        }
        let (answer, answered) = oneshot::channel();
        self.shared.queue.lock().unwrap().push_back(Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            event: serde_json::to_vec(event).map_err(|e| e.to_string())?,
            answer,
        });
        self.shared.queued.notify_one();
        match tokio::time::timeout(self.timeout + Duration::from_secs(60), answered).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(format!(
                "{}: the invocation was dropped",
                self.function_name
            )),
            Err(_) => Err(format!(
                "{}: no answer within its timeout ({:?})",
                self.function_name, self.timeout
            )),
        }
    }

    /// When the function first asked for an invocation: the end of its init.
    pub async fn first_poll(&self) -> Instant {
        loop {
            let notified = self.shared.polled.notified();
            if let Some(at) = *self.shared.first_poll.lock().unwrap() {
                return at;
            }
            notified.await;
        }
    }
}

async fn next(State(state): State<AppState>) -> Response {
    {
        let mut first = state.shared.first_poll.lock().unwrap();
        if first.is_none() {
            *first = Some(Instant::now());
            state.shared.polled.notify_waiters();
        }
    }
    // A long poll, as Lambda's: it answers when there is an invocation.
    let invocation = loop {
        let queued = state.shared.queued.notified();
        if let Some(invocation) = state.shared.queue.lock().unwrap().pop_front() {
            break invocation;
        }
        queued.await;
    };
    let deadline_ms = (SystemTime::now() + state.timeout)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let trace_id = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        &uuid::Uuid::new_v4().simple().to_string()[..24],
        &uuid::Uuid::new_v4().simple().to_string()[..16],
    );
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(
        "lambda-runtime-aws-request-id",
        invocation.request_id.clone(),
    );
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        state.function_arn.clone(),
    );
    set("lambda-runtime-trace-id", trace_id);
    set("content-type", "application/json".into());
    state
        .shared
        .in_flight
        .lock()
        .unwrap()
        .insert(invocation.request_id, invocation.answer);
    (StatusCode::OK, headers, invocation.event).into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

fn finish(state: &AppState, id: &str, outcome: Outcome) -> Response {
    match state.shared.in_flight.lock().unwrap().remove(id) {
        Some(answer) => {
            let _ = answer.send(outcome);
            accepted()
        }
        // Lambda: 400 for an unknown or already answered request id.
        None => (
            StatusCode::BAD_REQUEST,
            r#"{"errorType":"InvalidRequestID","errorMessage":"unknown request id"}"#,
        )
            .into_response(),
    }
}

fn error_type(headers: &HeaderMap) -> String {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled")
        .to_owned()
}

async fn response(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    finish(&state, &id, Outcome::Response(body.to_vec()))
}

async fn error(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = Outcome::Error {
        kind: error_type(&headers),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    finish(&state, &id, outcome)
}

async fn init_error(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let error = (
        error_type(&headers),
        String::from_utf8_lossy(&body).into_owned(),
    );
    *state.shared.init_error.lock().unwrap() = Some(error.clone());
    // Whoever waits for an answer gets the init error instead.
    for invocation in state.shared.queue.lock().unwrap().drain(..) {
        let _ = invocation.answer.send(Outcome::InitError {
            kind: error.0.clone(),
            body: error.1.clone(),
        });
    }
    accepted()
}

/// The function an event file belongs to: its name, or the name before a `-suffix`
/// variant (`inbound-call-dial-result` → `inbound-call`).
pub fn function_of_event(file_stem: &str) -> Option<&'static str> {
    tsunagu::handlers::HTTP_FUNCTIONS
        .iter()
        .chain(tsunagu::handlers::EVENT_FUNCTIONS)
        .filter(|f| file_stem == **f || file_stem.starts_with(&format!("{f}-")))
        .max_by_key(|f| f.len())
        .copied()
}

/// Where Cargo put this build's binaries: the directory above the running test's `deps/`
/// (so `CARGO_TARGET_DIR` and the profile are followed).
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().expect("the test binary's directory");
    if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A function's binary, or a clear failure if it was not built.
pub fn function_binary(function: &str) -> Result<PathBuf, String> {
    let path = binary_dir().join(function);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build the function binaries first (`cargo build --workspace --bins`; \
             `make test` does)",
            path.display()
        ))
    }
}

/// Starts `binary` as Lambda would start it: only Lambda's own variables and the
/// function's configuration in its environment. Its logs (stdout, on Lambda) go to our
/// stderr, so our stdout carries only answers.
pub fn spawn(
    binary: &Path,
    api: &RuntimeApi,
    function_env: &[(String, String)],
) -> std::io::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(api.lambda_environment())
        .envs(function_env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .stdout(stderr_copy()?)
        .kill_on_drop(true);
    command.spawn()
}

fn stderr_copy() -> std::io::Result<std::process::Stdio> {
    use std::os::fd::AsFd;
    Ok(std::process::Stdio::from(
        std::io::stderr().as_fd().try_clone_to_owned()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_file_belongs_to_the_longest_function_name_it_starts_with() {
        assert_eq!(
            function_of_event("inbound-call-dial-result"),
            Some("inbound-call")
        );
        assert_eq!(function_of_event("numbers-list"), Some("numbers"));
        assert_eq!(function_of_event("extension-prompt"), Some("extension"));
        assert_eq!(function_of_event("expiry-warning"), Some("expiry-warning"));
        assert_eq!(function_of_event("nothing"), None);
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let error = function_binary("no-such-function").unwrap_err();
        assert!(
            error.contains("no-such-function is missing")
                && error.contains("cargo build --workspace --bins"),
            "{error}"
        );
    }
}
