//! Every function's handler, as the Lambda runtime and the local gateway call it.
//!
//! Each `functions/<name>/src/main.rs` names its handler here directly
//! (`run_http(tsunagu::handlers::create_session)`), so the compiler checks the wiring and
//! the linker keeps only that handler. The local gateway finds the same functions by their
//! template name through [`http_handler`] and [`event_handler`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lambda_http::{Body, Request, RequestExt, Response, service_fn};
use tracing::Instrument;

use crate::api;
use crate::app::App;

/// `/v1` handlers, each run within the API's budget (`api::bounded`): unfinished at 9 s, 504.
macro_rules! api_handlers {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("[`api::", stringify!($name), "`] within the API's time budget.")]
        pub async fn $name(app: Arc<App>, req: Request) -> Response<Body> {
            api::bounded(app, req, api::$name).await
        }
    )*};
}

api_handlers!(
    create_session,
    get_session,
    close_session,
    list_interactions,
    numbers,
    start_v_call,
    extend_session,
    participants,
    update_session,
);

/// Webhooks carry their budget themselves: `webhooks::webhook` gives each one and answers
/// fallback TwiML when it runs out.
pub use crate::webhooks::{
    bridge_twiml, call_status, conference_status, conference_twiml, extension, inbound_call,
    recording_status,
};

/// `expiry-warning`: the minute sweep, on the EventBridge schedule's event.
pub async fn expiry_warning(
    app: Arc<App>,
    event: serde_json::Value,
) -> Result<serde_json::Value, String> {
    crate::scheduled::on_schedule(&app, &event).await
}

/// `publish-events`: a batch of the table's stream records → the platform's events, queued.
pub async fn publish_events(
    app: Arc<App>,
    event: serde_json::Value,
) -> Result<serde_json::Value, String> {
    crate::delivery::publish(&app, &event).await
}

/// `deliver-events`: a batch of queued events → `EVENT_CALLBACK_URL`, signed.
pub async fn deliver_events(
    app: Arc<App>,
    event: serde_json::Value,
) -> Result<serde_json::Value, String> {
    crate::delivery::deliver(&app, &event).await
}

pub type HttpFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
pub type HttpHandler = fn(Arc<App>, Request) -> HttpFuture;

/// Function name (the crate under `functions/` and its binary) → HTTP handler, for the local
/// gateway: the same functions the mains run, boxed so they fit one table.
pub fn http_handler(function: &str) -> Option<HttpHandler> {
    macro_rules! boxed {
        ($f:ident) => {{
            fn handler(app: Arc<App>, req: Request) -> HttpFuture {
                Box::pin($f(app, req))
            }
            handler as HttpHandler
        }};
    }
    Some(match function {
        "create-session" => boxed!(create_session),
        "get-session" => boxed!(get_session),
        "close-session" => boxed!(close_session),
        "list-interactions" => boxed!(list_interactions),
        "numbers" => boxed!(numbers),
        "inbound-call" => boxed!(inbound_call),
        "call-status" => boxed!(call_status),
        "start-v-call" => boxed!(start_v_call),
        "bridge-twiml" => boxed!(bridge_twiml),
        "conference-twiml" => boxed!(conference_twiml),
        "conference-status" => boxed!(conference_status),
        "extension" => boxed!(extension),
        "extend-session" => boxed!(extend_session),
        "recording-status" => boxed!(recording_status),
        "participants" => boxed!(participants),
        "update-session" => boxed!(update_session),
        _ => return None,
    })
}

pub type EventFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>;
pub type EventHandler = fn(Arc<App>, serde_json::Value) -> EventFuture;

/// Function name → handler, for functions triggered by events rather than HTTP.
pub fn event_handler(function: &str) -> Option<EventHandler> {
    fn boxed_expiry_warning(app: Arc<App>, event: serde_json::Value) -> EventFuture {
        Box::pin(expiry_warning(app, event))
    }
    fn boxed_publish_events(app: Arc<App>, event: serde_json::Value) -> EventFuture {
        Box::pin(publish_events(app, event))
    }
    fn boxed_deliver_events(app: Arc<App>, event: serde_json::Value) -> EventFuture {
        Box::pin(deliver_events(app, event))
    }
    match function {
        "expiry-warning" => Some(boxed_expiry_warning as EventHandler),
        "publish-events" => Some(boxed_publish_events as EventHandler),
        "deliver-events" => Some(boxed_deliver_events as EventHandler),
        _ => None,
    }
}

/// Every function triggered by an event: the EventBridge schedule, the table's stream, the
/// event queue.
pub const EVENT_FUNCTIONS: &[&str] = &["expiry-warning", "publish-events", "deliver-events"];

/// Every function served over HTTP.
pub const HTTP_FUNCTIONS: &[&str] = &[
    "create-session",
    "get-session",
    "close-session",
    "list-interactions",
    "numbers",
    "inbound-call",
    "call-status",
    "start-v-call",
    "bridge-twiml",
    "conference-twiml",
    "conference-status",
    "extension",
    "extend-session",
    "recording-status",
    "participants",
    "update-session",
];

/// A Lambda function's whole `main`: build the app once (no I/O), start its warm-up in the
/// background (`app::warm_up`), then serve events, each in its invocation's span (request
/// id, trace id, cold start: `telemetry`).
pub fn run_http<H, Fut>(handler: H) -> Result<(), lambda_http::Error>
where
    H: Fn(Arc<App>, Request) -> Fut,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    runtime()?.block_on(async {
        let app = start()?;
        lambda_http::run(service_fn(move |req: Request| {
            let span = match req.lambda_context_ref() {
                Some(context) => app.telemetry.invocation_of(context),
                None => app.telemetry.invocation("", None),
            };
            let response = handler(app.clone(), req).instrument(span);
            async move { Ok::<_, Infallible>(response.await) }
        }))
        .await
    })
}

/// `main` of an event-triggered function: build the app once, then handle each event in its
/// invocation's span.
pub fn run_event<H, Fut>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(Arc<App>, serde_json::Value) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, String>> + Send + 'static,
{
    runtime()?.block_on(async {
        let app = start()?;
        lambda_runtime::run(lambda_runtime::service_fn(
            move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
                let span = app.telemetry.invocation_of(&event.context);
                handler(app.clone(), event.payload).instrument(span)
            },
        ))
        .await
    })
}

/// Init, inside the runtime: the logs, the app from the environment, and its warm-up started.
fn start() -> Result<Arc<App>, crate::config::ConfigError> {
    crate::telemetry::logs::init();
    let app = App::from_env()?;
    crate::app::warm_up(&app, prefetch_secret(), warm_table());
    Ok(app)
}

/// One thread runs the function: Lambda hands an environment one event at a time, and an
/// event's work is waiting on DynamoDB, Twilio and the platform, which one thread overlaps as
/// well as several. A multi-threaded runtime would start its workers (and read the cgroup's
/// CPU quota) during init, and would run the warm-up on them beside the path to the first
/// poll; here the warm-up's CPU work is on a thread of its own (`app::warm_up`) and the
/// runtime's thread goes straight to the poll (docs/PERFORMANCE.md, "Cold start").
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `PREFETCH_TWILIO_SECRET=true` in a function's environment (template.yaml) fetches the
/// Twilio secret during init. Set exactly where the function's policy allows
/// `secretsmanager:GetSecretValue` (checked by a test against template.yaml): the others
/// never read it, and would only be refused.
pub const PREFETCH_TWILIO_SECRET: &str = "PREFETCH_TWILIO_SECRET";

fn prefetch_secret() -> bool {
    std::env::var(PREFETCH_TWILIO_SECRET).is_ok_and(|v| v == "true")
}

/// `WARM_UP_TABLE=false` in a function's environment (template.yaml) skips the init
/// warm-up's first DynamoDB connection: set on the functions that never touch the table
/// (publish-events, deliver-events), whose policy would refuse the read.
pub const WARM_UP_TABLE: &str = "WARM_UP_TABLE";

fn warm_table() -> bool {
    !std::env::var(WARM_UP_TABLE).is_ok_and(|v| v == "false")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_function_has_a_handler() {
        for f in HTTP_FUNCTIONS {
            assert!(http_handler(f).is_some(), "{f}");
        }
        assert!(http_handler("nope").is_none());
        for f in EVENT_FUNCTIONS {
            assert!(event_handler(f).is_some(), "{f}");
        }
    }

    /// The gateway finds `create-session` as `handlers::create_session`; the Lambda's main
    /// must name that same function, or AWS and the local stack would run different code.
    #[test]
    fn every_main_runs_the_handler_the_gateway_serves_under_its_name() {
        let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
        for (list, runner) in [(HTTP_FUNCTIONS, "run_http"), (EVENT_FUNCTIONS, "run_event")] {
            for f in list {
                let main = std::fs::read_to_string(functions.join(f).join("src/main.rs"))
                    .unwrap_or_else(|e| panic!("functions/{f}/src/main.rs: {e}"));
                let call = format!("{runner}(tsunagu::handlers::{})", f.replace('-', "_"));
                assert!(
                    main.contains(&call),
                    "functions/{f}/src/main.rs must call {call}"
                );
            }
        }
    }

    /// README's route table says which file and function handle each route; a handler that
    /// moves or is renamed must take the table with it.
    #[test]
    fn the_readme_route_table_names_handlers_that_exist() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let rows: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| method and path | function | handler |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert!(rows.len() >= HTTP_FUNCTIONS.len(), "route table not found");
        for row in rows {
            let cells: Vec<&str> = row.split(" | ").collect();
            let function = cells[1];
            assert!(
                HTTP_FUNCTIONS.contains(&function) || EVENT_FUNCTIONS.contains(&function),
                "{row}: no function {function}"
            );
            let handler: Vec<&str> = cells[2]
                .split('`')
                .filter(|s| !s.trim().is_empty())
                .collect();
            let [file, name] = handler[..] else {
                panic!("{row}: the handler cell should be `file` `function`");
            };
            let source = std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|e| panic!("{row}: {file}: {e}"));
            assert!(
                source.contains(&format!("async fn {name}(")),
                "{row}: {file} has no fn {name}"
            );
        }
    }
}
