//! Twilio's REST API for calls and conferences, as the functions use it through
//! `TWILIO_API_BASE_URL`: `/2010-04-01/Accounts/{AccountSid}/Calls...` and
//! `.../Conferences...`.

mod conferences;
mod numbers;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::calls::{self, Call, CallStatus, OutboundCall, StatusCallbackConfig, TwimlSource};
use super::transcript::Event;
use super::twiml::{HttpMethod, ProgressEvent};
use super::{Inner, rfc2822};

const API_PREFIX: &str = "/2010-04-01/Accounts/";

/// An injected failure (`Simulator::fail_next_rest`).
#[derive(Clone, Debug)]
pub struct RestFailure {
    pub prefix: String,
    /// Only requests with this `To` parameter fail (None: any).
    pub to: Option<String>,
    pub status: u16,
    pub code: u32,
    pub message: String,
}

/// Twilio's error body.
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(path: &str) -> Self {
        Self::new(
            404,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }

    fn body(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        })
    }
}

type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The axum handler for every path: routing by hand keeps unknown paths recorded too.
pub async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Concurrency as Twilio would see it: requests in flight at once, each held for the
    // configured latency (real time) so overlapping requests really overlap.
    let in_flight = inner
        .rest_in_flight
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    inner
        .rest_max_in_flight
        .fetch_max(in_flight, std::sync::atomic::Ordering::SeqCst);
    let latency = *inner.rest_latency.lock().unwrap_or_else(|e| e.into_inner());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    inner
        .rest_in_flight
        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    let path = uri.path().to_owned();
    let (call_sid, result) = respond(&inner, &method, &uri, &headers, &body);
    let (status, body) = match result {
        Ok((status, body)) => (status, body),
        Err(error) => (error.status, error.body()),
    };
    let now = inner.clock.now();
    let event = Event::Rest {
        method: method.to_string(),
        path,
        status,
    };
    inner.state().record(now, call_sid.as_deref(), event);
    // A DELETE answers 204 with no body.
    let body = if status == 204 {
        String::new()
    } else {
        body.to_string()
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

type Outcome = (Option<String>, Result<(u16, Value), ApiError>);

fn respond(inner: &Inner, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Outcome {
    let path = uri.path();
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return (None, Err(ApiError::not_found(path)));
    };
    if !authorized(inner, headers) {
        return (None, Err(ApiError::new(401, 20003, "Authenticate")));
    }
    let (account, resource) = rest.split_once('/').unwrap_or((rest, ""));
    if account != inner.config.account_sid {
        return (None, Err(ApiError::not_found(path)));
    }
    let call_sid = resource
        .strip_prefix("Calls/")
        .and_then(|f| f.strip_suffix(".json"))
        .map(str::to_owned);
    // Failures may target a callee: the To of a call being created.
    let to = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "To").map(|(_, v)| v));
    if let Some(failure) = inner.take_failure(method.as_str(), path, resource, to.as_deref()) {
        let error = ApiError::new(failure.status, failure.code, failure.message);
        return (call_sid, Err(error));
    }
    let params: Params = if *method == Method::GET {
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default()
    } else {
        match serde_urlencoded::from_bytes(body) {
            Ok(params) => params,
            Err(e) => {
                return (
                    call_sid,
                    Err(ApiError::new(400, 20001, format!("invalid form body: {e}"))),
                );
            }
        }
    };
    let now = inner.clock.now();
    let mut state = inner.state();
    if resource.starts_with("Conferences") {
        return conferences::respond(&mut state, method.as_str(), resource, &params, path, now);
    }
    if resource.starts_with("IncomingPhoneNumbers") {
        let outcome = numbers::respond(&mut state, method.as_str(), resource, &params, path);
        return (None, outcome);
    }
    match (method.as_str(), resource, &call_sid) {
        ("POST", "Calls.json", _) => match create_call(&mut state, &params, now) {
            Ok(sid) => {
                let body = state
                    .call(&sid)
                    .map(|c| resource_json(&state.account_sid, c, now));
                (Some(sid), Ok((201, body.unwrap_or(Value::Null))))
            }
            Err(e) => (None, Err(e)),
        },
        ("GET", "Calls.json", _) => (None, Ok((200, list_calls(&state, &params, path, now)))),
        ("GET", _, Some(sid)) => {
            let result = match state.call(sid) {
                Some(call) => Ok((200, resource_json(&state.account_sid, call, now))),
                None => Err(ApiError::not_found(path)),
            };
            (Some(sid.clone()), result)
        }
        ("POST", _, Some(sid)) => {
            let result = update_call(&mut state, sid, &params, now).and_then(|()| {
                state
                    .call(sid)
                    .map(|c| (200, resource_json(&state.account_sid, c, now)))
                    .ok_or_else(|| ApiError::not_found(path))
            });
            (Some(sid.clone()), result)
        }
        (_, "Calls.json", _) | (_, _, Some(_)) => (
            call_sid,
            Err(ApiError::new(405, 20004, "Method not allowed")),
        ),
        _ => (None, Err(ApiError::not_found(path))),
    }
}

/// HTTP Basic with the account's credentials or its API key.
fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Some(decoded) = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
    else {
        return false;
    };
    let Some((user, password)) = decoded.split_once(':') else {
        return false;
    };
    let config = &inner.config;
    (user == config.account_sid && password == config.auth_token)
        || config
            .api_key
            .as_ref()
            .is_some_and(|(sid, secret)| user == sid && password == secret)
}

/// `From` (a number of the account) and `To` (E.164) of a call to place.
fn validate_from_to(state: &calls::State, params: &Params) -> Result<(String, String), ApiError> {
    let to = param(params, "To")
        .ok_or_else(|| ApiError::new(400, 21201, "No 'To' number is specified"))?;
    let from = param(params, "From")
        .ok_or_else(|| ApiError::new(400, 21213, "No 'From' number is specified"))?;
    // Twilio places a call only from a number the account owns (an IncomingPhoneNumber) or
    // has verified; anything else is error 21210 ("'From' phone number not verified",
    // https://www.twilio.com/docs/errors/21210).
    if !state.numbers.contains_key(from) {
        let message = format!(
            "The source phone number provided, {from}, is not yet verified for your account. You may only make calls from phone numbers that you've verified or purchased from Twilio."
        );
        return Err(ApiError::new(400, 21210, message));
    }
    if !calls::is_e164(to) {
        return Err(ApiError::new(
            400,
            21211,
            format!("Invalid 'To' Phone Number: {to}"),
        ));
    }
    Ok((from.to_owned(), to.to_owned()))
}

/// `StatusCallback`, `StatusCallbackMethod` and `StatusCallbackEvent` of a call to place.
fn status_callback(params: &Params) -> Result<Option<StatusCallbackConfig>, ApiError> {
    let Some(url) = param(params, "StatusCallback") else {
        return Ok(None);
    };
    let events: Vec<&str> = params
        .iter()
        .filter(|(n, _)| n == "StatusCallbackEvent")
        .map(|(_, v)| v.as_str())
        .collect();
    let events = ProgressEvent::parse_list(&events).map_err(|e| ApiError::new(400, 20001, e))?;
    Ok(Some(StatusCallbackConfig {
        url: valid_url(url)?.to_owned(),
        method: method_param(params, "StatusCallbackMethod")?,
        events,
    }))
}

fn create_call(
    state: &mut calls::State,
    params: &Params,
    now: OffsetDateTime,
) -> Result<String, ApiError> {
    let (from, to) = validate_from_to(state, params)?;
    let twiml = twiml_source(params)?
        .ok_or_else(|| ApiError::new(400, 21205, "Url parameter is required."))?;
    let status_callback = status_callback(params)?;
    // Twilio caps the ring time at 600 s.
    let timeout = seconds_param(params, "Timeout", 60)?.min(600);
    let time_limit = seconds_param(params, "TimeLimit", 14_400)?;
    let request = OutboundCall {
        from,
        to,
        twiml,
        status_callback,
        ring_timeout: Duration::from_secs(timeout),
        time_limit: Duration::from_secs(time_limit),
    };
    Ok(state.create_outbound(now, request))
}

fn update_call(
    state: &mut calls::State,
    sid: &str,
    params: &Params,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let Some(call) = state.call(sid) else {
        let path = format!("{API_PREFIX}{}/Calls/{sid}.json", state.account_sid);
        return Err(ApiError::not_found(&path));
    };
    let live = call.status.is_live();
    let ringing = matches!(call.status, CallStatus::Queued | CallStatus::Ringing);
    // Validate everything before changing anything.
    let twiml = twiml_source(params)?;
    if twiml.is_some() && !live {
        return Err(ApiError::new(
            400,
            21220,
            "Call is not in-progress. Cannot redirect.",
        ));
    }
    let status = param(params, "Status");
    if let Some(other) = status.filter(|s| !matches!(*s, "completed" | "canceled")) {
        return Err(ApiError::new(
            400,
            20001,
            format!("Invalid Status {other:?}: use completed or canceled"),
        ));
    }
    let time_limit = match param(params, "TimeLimit") {
        Some(_) => Some(seconds_param(params, "TimeLimit", 0)?),
        None => None,
    };

    if let Some(source) = twiml {
        state.redirect(sid, source, now);
    }
    if let Some(limit) = time_limit {
        state.set_time_limit(sid, Duration::from_secs(limit), now);
    }
    match status {
        Some("completed") => state.end_via_api(sid, now),
        // Twilio ignores `canceled` for a call that is already answered.
        Some("canceled") if ringing => state.end_call(sid, CallStatus::Canceled, now),
        _ => {}
    }
    Ok(())
}

fn twiml_source(params: &Params) -> Result<Option<TwimlSource>, ApiError> {
    if let Some(twiml) = param(params, "Twiml") {
        return Ok(Some(TwimlSource::Inline(twiml.to_owned())));
    }
    match param(params, "Url") {
        None => Ok(None),
        Some(url) => Ok(Some(TwimlSource::Url(
            valid_url(url)?.to_owned(),
            method_param(params, "Method")?,
        ))),
    }
}

fn valid_url(url: &str) -> Result<&str, ApiError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url)
    } else {
        Err(ApiError::new(
            400,
            21205,
            format!("Url is not a valid URL: {url}"),
        ))
    }
}

fn method_param(params: &Params, name: &str) -> Result<HttpMethod, ApiError> {
    param(params, name)
        .map_or(Ok(HttpMethod::Post), HttpMethod::parse)
        .map_err(|e| ApiError::new(400, 20001, format!("{name}: {e}")))
}

fn seconds_param(params: &Params, name: &str, default: u64) -> Result<u64, ApiError> {
    match param(params, name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            ApiError::new(
                400,
                20001,
                format!("{name} must be a whole number of seconds, not {v:?}"),
            )
        }),
    }
}

fn list_calls(state: &calls::State, params: &Params, path: &str, now: OffsetDateTime) -> Value {
    let matches = |call: &&Call| {
        param(params, "Status").is_none_or(|s| s == call.status.as_str())
            && param(params, "To").is_none_or(|s| s == call.to)
            && param(params, "From").is_none_or(|s| s == call.from)
            && param(params, "ParentCallSid").is_none_or(|s| call.parent_sid.as_deref() == Some(s))
    };
    // Newest first, as Twilio lists them.
    let calls: Vec<Value> = state
        .calls
        .iter()
        .rev()
        .filter(matches)
        .map(|c| resource_json(&state.account_sid, c, now))
        .collect();
    json!({
        "calls": calls,
        "page": 0,
        "page_size": 50,
        "first_page_uri": path,
        "next_page_uri": null,
        "previous_page_uri": null,
        "uri": path,
        "start": 0,
        "end": calls.len().saturating_sub(1),
    })
}

/// A call as Twilio's REST API represents it.
pub fn resource_json(account_sid: &str, call: &Call, now: OffsetDateTime) -> Value {
    let uri = format!("{API_PREFIX}{account_sid}/Calls/{}.json", call.sid);
    let started = (call.status != CallStatus::Queued).then_some(call.created_at);
    let updated = call
        .ended_at
        .or(call.answered_at)
        .unwrap_or(call.created_at);
    json!({
        "sid": call.sid,
        "account_sid": account_sid,
        "parent_call_sid": call.parent_sid,
        "to": call.to,
        "to_formatted": call.to,
        "from": call.from,
        "from_formatted": call.from,
        "phone_number_sid": null,
        "status": call.status.as_str(),
        "start_time": started.map(rfc2822),
        "end_time": call.ended_at.map(rfc2822),
        "duration": call.ended_at.map(|_| call.duration_secs(now).to_string()),
        "price": null,
        "price_unit": "JPY",
        "direction": call.direction.as_str(),
        "answered_by": null,
        "api_version": "2010-04-01",
        "forwarded_from": null,
        "group_sid": null,
        "caller_name": null,
        "queue_time": "0",
        "trunk_sid": null,
        "date_created": rfc2822(call.created_at),
        "date_updated": rfc2822(updated),
        "uri": uri,
        "subresource_uris": {
            "notifications": uri.replace(".json", "/Notifications.json"),
            "recordings": uri.replace(".json", "/Recordings.json"),
        },
    })
}
