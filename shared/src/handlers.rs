//! Every function's handler by its name: the one table that `functions/*/src/main.rs`, the
//! local gateway and the tests share, so a function is wired the same way everywhere.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lambda_http::{Body, Request, Response, service_fn};

use crate::app::App;
use crate::{api, webhooks};

pub type HttpFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
pub type HttpHandler = fn(Arc<App>, Request) -> HttpFuture;

/// A webhook: `webhooks::webhook` gives it its budget and TwiML when out of time.
macro_rules! webhook {
    ($f:path) => {{
        fn handler(app: Arc<App>, req: Request) -> HttpFuture {
            Box::pin($f(app, req))
        }
        handler as HttpHandler
    }};
}

/// A `/v1` handler, run within the API's budget (`api::bounded`).
macro_rules! api {
    ($f:path) => {{
        fn handler(app: Arc<App>, req: Request) -> HttpFuture {
            Box::pin(api::bounded(app, req, $f))
        }
        handler as HttpHandler
    }};
}

/// Function name (the crate under `functions/` and its binary) → HTTP handler.
pub fn http_handler(function: &str) -> Option<HttpHandler> {
    Some(match function {
        "create-session" => api!(api::create_session),
        "get-session" => api!(api::get_session),
        "close-session" => api!(api::close_session),
        "list-interactions" => api!(api::list_interactions),
        "numbers" => api!(api::numbers),
        "inbound-call" => webhook!(webhooks::inbound_call),
        "call-status" => webhook!(webhooks::call_status),
        "start-v-call" => api!(api::start_v_call),
        "bridge-twiml" => webhook!(webhooks::bridge_twiml),
        "conference-twiml" => webhook!(webhooks::conference_twiml),
        "conference-status" => webhook!(webhooks::conference_status),
        "extension" => webhook!(webhooks::extension),
        "extend-session" => api!(api::extend_session),
        _ => return None,
    })
}

pub type EventFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>;
pub type EventHandler = fn(Arc<App>, serde_json::Value) -> EventFuture;

/// Function name → handler, for functions triggered by events rather than HTTP.
pub fn event_handler(function: &str) -> Option<EventHandler> {
    fn expiry_warning(app: Arc<App>, event: serde_json::Value) -> EventFuture {
        Box::pin(async move { crate::scheduled::on_schedule(&app, &event).await })
    }
    match function {
        "expiry-warning" => Some(expiry_warning as EventHandler),
        _ => None,
    }
}

/// Every function triggered by an event (EventBridge schedule).
pub const EVENT_FUNCTIONS: &[&str] = &["expiry-warning"];

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
];

/// A Lambda function's whole `main`: build the app once (no network I/O), then serve events.
pub async fn run_http(function: &'static str) -> Result<(), lambda_http::Error> {
    crate::logging::init();
    let handler = http_handler(function).ok_or_else(|| format!("no handler named {function}"))?;
    let app = App::from_env().await?;
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handler(app, req).await) }
    }))
    .await
}

/// `main` of an event-triggered function: build the app once, then handle each event.
pub async fn run_event(function: &'static str) -> Result<(), lambda_runtime::Error> {
    crate::logging::init();
    let handler = event_handler(function).ok_or_else(|| format!("no handler named {function}"))?;
    let app = App::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let app = app.clone();
            async move { handler(app, event.payload).await }
        },
    ))
    .await
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
}
