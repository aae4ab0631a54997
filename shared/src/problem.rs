//! API errors as `application/problem+json` (RFC 9457) with a stable numeric `code`:
//! Twilio Proxy's codes where Proxy has one, Tsunagu's own otherwise. One mapping, at the edge.

use http::StatusCode;
use serde::Serialize;

use crate::domain::DomainError;
use crate::domain::ports::CallError;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Every code the API can answer with. Numbers never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The body is not valid JSON, or a field has the wrong type.
    MalformedBody = 20400,
    /// A field has a value outside its rules (bad phone number, negative ttl, …).
    InvalidParameter = 20001,
    /// Content-Type is not application/json.
    UnsupportedMediaType = 20415,
    /// The body is larger than the API accepts.
    PayloadTooLarge = 20413,
    /// No such session, number or route.
    NotFound = 20404,
    /// The Idempotency-Key was used before with a different request.
    IdempotencyKeyReused = 20409,
    /// A request with the same Idempotency-Key is still being processed.
    IdempotencyInProgress = 20429,
    /// Proxy 80103: the same participant twice in one session.
    ParticipantAlreadyInSession = 80103,
    /// Proxy 80206: no proxy number is free for these participants.
    NoProxyNumberAvailable = 80206,
    /// Proxy 80603: unique_name already used by another session.
    UniqueNameTaken = 80603,
    /// Proxy 80623: the identifier already has an open session on that proxy number.
    IdentifierConflict = 80623,
    /// Proxy 80607: the session is closed.
    SessionClosed = 80607,
    /// Proxy 80608: the requested status change is not allowed.
    InvalidStatusChange = 80608,
    /// The session already has a live call; one call at a time.
    CallInProgress = 80650,
    /// Only voice-only sessions: Japanese numbers have no SMS.
    ModeNotSupported = 80620,
    /// The number is not in the pool.
    NumberNotInPool = 80640,
    /// The number is already in the pool.
    NumberAlreadyInPool = 80641,
    /// The number is still used by open sessions.
    NumberInUse = 80642,
    /// A participant's number is in a country `ALLOWED_COUNTRIES` does not list. Tsunagu's
    /// own codes are four digits: Twilio assigns none in 1000–9999.
    CountryNotAllowed = 8101,
    /// A participant's number is one of the pool's proxy numbers.
    ParticipantIsProxyNumber = 8102,
    /// `date_expiry`, or an extension of it, beyond the furthest end a session may have.
    BeyondMaximumEnd = 8103,
    /// Too much contention to finish now; retrying is safe.
    Busy = 50300,
    /// A dependency (DynamoDB, Secrets Manager, Twilio) failed.
    Upstream = 50200,
    /// A bug; details are in the logs.
    Internal = 50000,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{title}: {detail}")]
pub struct Problem {
    pub status: StatusCode,
    pub code: Code,
    pub title: &'static str,
    pub detail: String,
    /// Twilio's own error code when Twilio refused something (e.g. 21211, invalid number).
    pub twilio_code: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: u32,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    twilio_code: Option<u32>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: Code,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            twilio_code: None,
        }
    }

    pub fn with_twilio_code(mut self, code: Option<u32>) -> Self {
        self.twilio_code = code.filter(|c| *c != 0);
        self
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Code::MalformedBody,
            "Malformed request body",
            detail,
        )
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidParameter,
            "Invalid parameter",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, Code::NotFound, "Not found", detail)
    }

    pub fn conflict(code: Code, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, title, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "Internal error",
            detail,
        )
    }

    pub fn upstream(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            Code::Upstream,
            "Upstream failure",
            detail,
        )
    }

    pub fn code_number(&self) -> u32 {
        self.code as u32
    }

    /// The JSON body; `instance` is the request path.
    pub fn to_json(&self, instance: Option<&str>) -> String {
        serde_json::to_string(&Body {
            kind: format!("https://tsunagu.dev/problems/{}", self.code_number()),
            title: self.title,
            status: self.status.as_u16(),
            code: self.code_number(),
            detail: &self.detail,
            instance,
            twilio_code: self.twilio_code,
        })
        .unwrap_or_else(|_| r#"{"title":"Internal error","status":500,"code":50000}"#.to_owned())
    }
}

impl From<DomainError> for Problem {
    fn from(e: DomainError) -> Self {
        use DomainError as E;
        match e {
            E::Invalid(detail) => Problem::invalid(detail),
            E::NotFound(detail) => Problem::not_found(detail),
            E::SessionClosed(detail) => {
                Problem::conflict(Code::SessionClosed, "Session closed", detail)
            }
            E::CallInProgress(detail) => {
                Problem::conflict(Code::CallInProgress, "Call in progress", detail)
            }
            E::NothingToExtend(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                Code::InvalidStatusChange,
                "Nothing to extend",
                detail,
            ),
            E::SessionChanged(detail) => {
                Problem::conflict(Code::InvalidStatusChange, "Session changed", detail)
            }
            E::ParticipantIsProxyNumber(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                Code::ParticipantIsProxyNumber,
                "Participant is a proxy number",
                detail,
            ),
            E::BeyondMaximumEnd(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                Code::BeyondMaximumEnd,
                "Beyond the maximum end",
                detail,
            ),
            E::NoProxyNumber(detail) => Problem::conflict(
                Code::NoProxyNumberAvailable,
                "No proxy number available",
                detail,
            ),
            E::NumberNotInPool(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                Code::NumberNotInPool,
                "Number not in pool",
                detail,
            ),
            E::IdentifierConflict(detail) => {
                Problem::conflict(Code::IdentifierConflict, "Identifier conflict", detail)
            }
            E::UniqueNameTaken(detail) => {
                Problem::conflict(Code::UniqueNameTaken, "Unique name taken", detail)
            }
            E::Contention(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Busy,
                "Too much contention",
                detail,
            ),
            E::CallNotPlaced { callee, cause } => call_not_placed(&callee, cause),
            E::Store(e) => e.into(),
        }
    }
}

/// A V-call leg Twilio did not place: 502 with Twilio's code, or 504 when it was too slow.
fn call_not_placed(who: &str, cause: CallError) -> Problem {
    match cause {
        CallError::Refused { status, code, message } => Problem::new(
            StatusCode::BAD_GATEWAY,
            Code::Upstream,
            "Twilio refused the call",
            format!("calling {who}: Twilio answered {status}: {message} (code {code}); no call is left ringing"),
        )
        .with_twilio_code(Some(code)),
        CallError::Unreachable(why) => Problem::new(
            StatusCode::BAD_GATEWAY,
            Code::Upstream,
            "Twilio unreachable",
            format!("calling {who}: {why}; no call is left ringing"),
        ),
        CallError::OutOfTime => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            Code::Upstream,
            "Twilio too slow",
            format!("calling {who}: Twilio did not answer in time; no call is left ringing"),
        ),
        CallError::Credentials(why) => Problem::new(
            StatusCode::BAD_GATEWAY,
            Code::Upstream,
            "Twilio credentials unavailable",
            why,
        ),
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Busy,
            "Storage unavailable",
            "the session store did not answer; nothing was changed, retry later",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_status_code_and_detail() {
        let p = Problem::conflict(
            Code::SessionClosed,
            "Session closed",
            "session KC1 is closed",
        );
        let v: serde_json::Value =
            serde_json::from_str(&p.to_json(Some("/v1/sessions/KC1"))).unwrap();
        assert_eq!(v["status"], 409);
        assert_eq!(v["code"], 80607);
        assert_eq!(v["detail"], "session KC1 is closed");
        assert_eq!(v["instance"], "/v1/sessions/KC1");
        assert_eq!(v["type"], "https://tsunagu.dev/problems/80607");
    }
}
