//! A local stand-in for API Gateway (HTTP API, payload 2.0) and for Lambda's Invoke API.
//! Every route of `template.yaml` reaches the real handler in-process, through the same
//! event decoding as in AWS (`lambda_http::request::from_str`), base64 form bodies included.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tracing::Instrument;
use tsunagu::App;
use tsunagu::handlers::http_handler;

use crate::console::TwilioConsole;
use crate::control::{self, CallRequest, Control};
use crate::template::Route;

#[derive(Clone)]
pub struct Gateway {
    /// Each function's own app: its own clients, held to its own IAM policy.
    pub apps: Arc<HashMap<String, Arc<App>>>,
    pub routes: Arc<Vec<Route>>,
    /// With the simulator: every number `POST /v1/numbers` adds becomes the simulated
    /// account's own, as the operator would set it up in the Twilio console.
    pub console: Option<TwilioConsole>,
    /// With the simulator: `POST /_local/calls` places a call as a phone would (`make call`).
    pub control: Option<Control>,
}

impl Gateway {
    fn app(&self, function: &str) -> Result<Arc<App>, String> {
        self.apps
            .get(function)
            .cloned()
            .ok_or_else(|| format!("{function} is not a function of template.yaml"))
    }
}

/// Serves on `listener` until the task is aborted.
pub fn spawn(listener: tokio::net::TcpListener, gateway: Gateway) -> tokio::task::JoinHandle<()> {
    // API Gateway's own limit on a request's payload (HTTP API quotas: 10 MB); axum's default
    // (2 MB) would refuse hostile bodies that reach the functions on AWS.
    let router = axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(10 * 1024 * 1024))
        .with_state(gateway);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("gateway stopped: {e}");
        }
    })
}

async fn handle(
    State(gw): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if path == "/healthz" {
        return (StatusCode::OK, "ok\n").into_response();
    }
    if path == "/_local/calls" && method == Method::POST {
        return local_call(&gw, &body).await;
    }
    if let Some(function) = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
    {
        return invoke(&gw, function, &body).await;
    }
    let Some((route, params)) = gw
        .routes
        .iter()
        .find_map(|r| r.matches(method.as_str(), path).map(|p| (r, p)))
    else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response();
    };
    let event = http_api_event(route, &method, &uri, &headers, &body, &params);
    match run_event(&gw, &route.function, &event).await {
        Ok(response) => {
            if route.function == "numbers" && method == Method::POST {
                provision_added_number(&gw, &response).await;
            }
            to_axum(response)
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"message": e})),
        )
            .into_response(),
    }
}

/// `POST /_local/calls`: a phone calls a proxy number; answers with the call's report.
async fn local_call(gw: &Gateway, body: &[u8]) -> Response {
    let bad = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": message})),
        )
            .into_response()
    };
    let Some(control) = &gw.control else {
        return bad("this stack runs without the simulator: no phones to call with".into());
    };
    let request: CallRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return bad(format!("invalid call request: {e}")),
    };
    match control::place_call(control, request).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(message) => bad(message),
    }
}

/// A number the pool just took (201) is provisioned before the API answers, so the next
/// request can already use it as a caller ID.
async fn provision_added_number(gw: &Gateway, response: &lambda_http::Response<lambda_http::Body>) {
    let Some(console) = &gw.console else { return };
    if response.status() != StatusCode::CREATED {
        return;
    }
    let lambda_http::Body::Text(text) = response.body() else {
        return;
    };
    let added: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(number) = added["phone_number"].as_str()
        && let Err(e) = console.provision(number).await
    {
        eprintln!("{e}");
    }
}

/// Builds the HTTP API payload 2.0 event API Gateway would send for this request.
pub fn http_api_event(
    route: &Route,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    params: &[(String, String)],
) -> Value {
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match header_map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                header_map.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // HTTP APIs pass JSON and text through and base64-encode everything else (forms too).
    let textual = content_type.starts_with("application/json") || content_type.starts_with("text/");
    let (body_value, encoded) = if body.is_empty() {
        (Value::Null, false)
    } else if textual && std::str::from_utf8(body).is_ok() {
        (
            Value::String(String::from_utf8_lossy(body).into_owned()),
            false,
        )
    } else {
        (
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        )
    };
    let path_parameters: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(percent_decode(v))))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let route_key = route.route_key();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or(""),
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or(""),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
            "timeEpoch": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        },
        "isBase64Encoded": encoded,
    });
    if !path_parameters.is_empty() {
        event["pathParameters"] = Value::Object(path_parameters);
    }
    if !body_value.is_null() {
        event["body"] = body_value;
    }
    event
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Hands an event to the named function's handler, exactly as the Lambda runtime would.
pub async fn run_event(
    gw: &Gateway,
    function: &str,
    event: &Value,
) -> Result<lambda_http::Response<lambda_http::Body>, String> {
    let handler = http_handler(function).ok_or_else(|| format!("no function named {function}"))?;
    let request = lambda_http::request::from_str(&event.to_string())
        .map_err(|e| format!("event does not decode: {e}"))?;
    let app = gw.app(function)?;
    let span = invocation(&app);
    Ok(handler(app, request).instrument(span).await)
}

/// The span `handlers::run_http` and `run_event` give each invocation on Lambda, with a
/// request id of Lambda's form (a UUID); there is no X-Ray locally, so no trace id.
fn invocation(app: &App) -> tracing::Span {
    app.telemetry
        .invocation(&uuid::Uuid::new_v4().to_string(), None)
}

/// `POST /2015-03-31/functions/{name}/invocations`: Lambda's Invoke API, so
/// `aws lambda invoke --endpoint-url` works against the local stack.
async fn invoke(gw: &Gateway, function: &str, body: &[u8]) -> Response {
    let event: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"Type": "User", "Message": format!("invalid event JSON: {e}")})),
            )
                .into_response();
        }
    };
    if let Some(handler) = tsunagu::handlers::event_handler(function) {
        let app = match gw.app(function) {
            Ok(app) => app,
            Err(e) => {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"Type": "User", "Message": e})),
                )
                    .into_response();
            }
        };
        let span = invocation(&app);
        return match handler(app, event).instrument(span).await {
            Ok(result) => axum::Json(result).into_response(),
            Err(e) => (
                StatusCode::OK,
                [("x-amz-function-error", "Unhandled")],
                axum::Json(json!({"errorType": "SweepFailed", "errorMessage": e})),
            )
                .into_response(),
        };
    }
    if http_handler(function).is_none() {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"Type": "User", "Message": format!("Function not found: {function}")}),
            ),
        )
            .into_response();
    }
    match run_event(gw, function, &event).await {
        Ok(r) => axum::Json(lambda_response_json(r)).into_response(),
        Err(e) => (
            StatusCode::OK,
            [("x-amz-function-error", "Unhandled")],
            axum::Json(json!({"errorType": "InvalidEvent", "errorMessage": e})),
        )
            .into_response(),
    }
}

/// A handler's response as the payload 2.0 JSON a Lambda function returns.
pub fn lambda_response_json(r: lambda_http::Response<lambda_http::Body>) -> Value {
    let headers: serde_json::Map<String, Value> = r
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let (body, encoded) = match r.body() {
        lambda_http::Body::Empty => (String::new(), false),
        lambda_http::Body::Text(t) => (t.clone(), false),
        lambda_http::Body::Binary(b) => (base64::engine::general_purpose::STANDARD.encode(b), true),
        _ => (String::new(), false),
    };
    json!({"statusCode": r.status().as_u16(), "headers": headers, "body": body, "isBase64Encoded": encoded})
}

fn to_axum(r: lambda_http::Response<lambda_http::Body>) -> Response {
    let (parts, body) = r.into_parts();
    let bytes: Vec<u8> = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn path_parameters_are_decoded() {
        assert_eq!(percent_decode("%2B815031234567"), "+815031234567");
        assert_eq!(percent_decode("order-1"), "order-1");
        assert_eq!(percent_decode("bad%2"), "bad%2");
        assert_eq!(percent_decode("%E6%B3%A8"), "注");
    }
}
