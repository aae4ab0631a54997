//! API errors as `application/problem+json` (RFC 9457) with a stable numeric `code`:
//! Twilio Proxy's codes where Proxy has one, Tsunagu's own otherwise. One mapping, at the edge.

use http::StatusCode;
use serde::Serialize;

use crate::domain::DomainError;
use crate::domain::ports::CallError;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Every code the API can answer with. Numbers never change meaning.
///
/// Five-digit codes are Twilio's, used only with the meaning Twilio's error catalogue
/// (https://www.twilio.com/docs/api/errors) gives them, so a client migrating from Proxy
/// reads them right. Tsunagu's own codes have six digits, `1SSSNN` (SSS an HTTP status, NN a
/// sequence): Twilio's catalogue is laid out in five-digit ranges (00000 to 99999), so no
/// six-digit code can collide with one of Twilio's. The README's error table lists them all
/// (a test below reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The body is not valid JSON, or a field has the wrong type.
    MalformedBody = 140000,
    /// Proxy 80701 "Parameter Validation Failed": a field has a value outside its rules.
    InvalidParameter = 80701,
    /// Content-Type is not application/json.
    UnsupportedMediaType = 141500,
    /// The body is larger than the API accepts.
    PayloadTooLarge = 141300,
    /// Twilio 20404 "Not Found": no such session or number.
    NotFound = 20404,
    /// The Idempotency-Key was used before with a different request.
    IdempotencyKeyReused = 142200,
    /// A request with the same Idempotency-Key is still being processed (Twilio's 20429 is
    /// "Too Many Requests", a rate limit: not this).
    IdempotencyInProgress = 140900,
    /// Proxy 80103 "Participant Already In Session": the same participant twice.
    ParticipantAlreadyInSession = 80103,
    /// Proxy 80609 "Too Many Added Participants": a session has at most two.
    TooManyParticipants = 80609,
    /// Proxy 80205 "No Proxies For Service": the pool has no numbers at all.
    NoNumbersInPool = 80205,
    /// Proxy 80207 "No unreserved numbers in proxy pool": only reserved numbers, which are
    /// used only when asked for by `proxy_identifier`.
    OnlyReservedNumbers = 80207,
    /// Proxy 80208 "No Available Unused Proxy": every unreserved number is already used by
    /// this participant in another open session.
    NoProxyNumberAvailable = 80208,
    /// Proxy 80603 "Non Unique Session Name".
    UniqueNameTaken = 80603,
    /// Proxy 80604 "Proxy Identifier In Use": the requested proxy number already routes this
    /// participant in another open session.
    IdentifierConflict = 80604,
    /// Proxy 80605 "Proxy Identifier Not In Service": the requested number is not in the pool.
    NumberNotInPool = 80605,
    /// Proxy 80607 "Session Closed".
    SessionClosed = 80607,
    /// Proxy 80608 "Session Status Invalid": a status change the lifecycle does not allow
    /// (Proxy: reopen is closed → in-progress; close is open or in-progress → closed).
    SessionStatusInvalid = 80608,
    /// Proxy 80616 "Unsupported Identifier Type For Session Mode": Japanese numbers have no
    /// SMS, so only voice-only sessions.
    ModeNotSupported = 80616,
    /// Proxy 80611 "Proxy Number In Active Sessions": it cannot leave the pool yet.
    NumberInUse = 80611,
    /// The number is already in the pool.
    NumberAlreadyInPool = 140901,
    /// The session already has a live call; one call at a time.
    CallInProgress = 140902,
    /// The session changed between reading and writing (a close or another extension won).
    InvalidStatusChange = 140903,
    /// An extension that would take the live call past the session's `max_cost`.
    ExtensionPastMaxCost = 140904,
    /// An extension asked of a session without an end to move.
    NothingToExtend = 140001,
    /// A participant's number is in a country `ALLOWED_COUNTRIES` does not list.
    CountryNotAllowed = 140002,
    /// A participant's number is one of the pool's proxy numbers.
    ParticipantIsProxyNumber = 140003,
    /// `date_expiry`, or an extension of it, beyond the furthest end a session may have.
    BeyondMaximumEnd = 140004,
    /// Too much contention, or storage unavailable; nothing was written, retrying is safe.
    Busy = 150300,
    /// A dependency (Twilio, or the table within the time budget) failed.
    Upstream = 150200,
    /// A bug; details are in the logs.
    Internal = 150000,
}

impl Code {
    /// The HTTP statuses a problem with this code is answered with.
    pub fn statuses(self) -> &'static [u16] {
        match self {
            Code::MalformedBody
            | Code::InvalidParameter
            | Code::ParticipantAlreadyInSession
            | Code::TooManyParticipants
            | Code::SessionStatusInvalid
            | Code::NumberNotInPool
            | Code::ModeNotSupported
            | Code::NothingToExtend
            | Code::CountryNotAllowed
            | Code::ParticipantIsProxyNumber
            | Code::BeyondMaximumEnd => &[400],
            Code::NotFound => &[404],
            Code::PayloadTooLarge => &[413],
            Code::UnsupportedMediaType => &[415],
            Code::IdempotencyKeyReused => &[422],
            Code::IdempotencyInProgress
            | Code::NoNumbersInPool
            | Code::OnlyReservedNumbers
            | Code::NoProxyNumberAvailable
            | Code::UniqueNameTaken
            | Code::IdentifierConflict
            | Code::SessionClosed
            | Code::NumberInUse
            | Code::NumberAlreadyInPool
            | Code::CallInProgress
            | Code::InvalidStatusChange
            | Code::ExtensionPastMaxCost => &[409],
            Code::Internal => &[500],
            Code::Upstream => &[502, 504],
            Code::Busy => &[503],
        }
    }

    /// Whether the code is Twilio's (five digits) rather than Tsunagu's own (six).
    pub fn is_twilios(self) -> bool {
        (self as u32) < 100_000
    }
}

/// Lists the variants once: `Code::ALL`, and a match the compiler refuses while a variant
/// is missing from the list.
macro_rules! every_code {
    ($($variant:ident),* $(,)?) => {
        impl Code {
            /// Every code, for the README check and the contract test against docs/openapi.yaml.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];
        }
        #[allow(dead_code)]
        fn every_variant_is_listed(code: Code) {
            match code {
                $(Code::$variant)|* => {}
            }
        }
    };
}

every_code!(
    MalformedBody,
    InvalidParameter,
    UnsupportedMediaType,
    PayloadTooLarge,
    NotFound,
    IdempotencyKeyReused,
    IdempotencyInProgress,
    ParticipantAlreadyInSession,
    TooManyParticipants,
    NoNumbersInPool,
    OnlyReservedNumbers,
    NoProxyNumberAvailable,
    UniqueNameTaken,
    IdentifierConflict,
    NumberNotInPool,
    SessionClosed,
    SessionStatusInvalid,
    ModeNotSupported,
    NumberInUse,
    NumberAlreadyInPool,
    CallInProgress,
    InvalidStatusChange,
    ExtensionPastMaxCost,
    NothingToExtend,
    CountryNotAllowed,
    ParticipantIsProxyNumber,
    BeyondMaximumEnd,
    Busy,
    Upstream,
    Internal,
);

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
        // The README's error table lists each code with its statuses; keep them true.
        debug_assert!(
            code.statuses().contains(&status.as_u16()),
            "{code:?} answered with {status}"
        );
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
        .unwrap_or_else(|_| r#"{"title":"Internal error","status":500,"code":150000}"#.to_owned())
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
            E::TooManyParticipants(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                Code::TooManyParticipants,
                "Too many participants",
                detail,
            ),
            E::ParticipantAlreadyInSession(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                Code::ParticipantAlreadyInSession,
                "Participant already in session",
                detail,
            ),
            E::InvalidStatusTransition(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                Code::SessionStatusInvalid,
                "Session status invalid",
                detail,
            ),
            E::CallInProgress(detail) => {
                Problem::conflict(Code::CallInProgress, "Call in progress", detail)
            }
            E::NothingToExtend(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                Code::NothingToExtend,
                "Nothing to extend",
                detail,
            ),
            E::ExtensionPastMaxCost(detail) => Problem::conflict(
                Code::ExtensionPastMaxCost,
                "Extension past max_cost",
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
            E::NoNumbersInPool(detail) => {
                Problem::conflict(Code::NoNumbersInPool, "No numbers in the pool", detail)
            }
            E::OnlyReservedNumbers(detail) => Problem::conflict(
                Code::OnlyReservedNumbers,
                "Only reserved numbers in the pool",
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

    /// The README's error table: code → status cell.
    fn readme_table() -> Vec<(u32, String)> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("| code | status | meaning |")
            .expect("README has the error table");
        readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let code = cells[1].parse().unwrap_or_else(|_| panic!("bad row {l:?}"));
                (code, cells[2].to_owned())
            })
            .collect()
    }

    #[test]
    fn every_code_is_in_the_readme_with_its_statuses_and_no_other() {
        let table = readme_table();
        for &code in Code::ALL {
            let n = code as u32;
            let Some((_, status)) = table.iter().find(|(c, _)| *c == n) else {
                panic!("{code:?} ({n}) is missing from the README's error table");
            };
            for s in code.statuses() {
                assert!(
                    status.contains(&s.to_string()),
                    "{n}: README says {status:?}, code answers {s}"
                );
            }
        }
        for (n, _) in &table {
            assert!(
                Code::ALL.iter().any(|c| *c as u32 == *n),
                "the README lists {n}, which the code never emits"
            );
        }
    }

    #[test]
    fn own_codes_stay_out_of_twilios_five_digit_ranges() {
        for &code in Code::ALL {
            let n = code as u32;
            assert!(
                (10_000..100_000).contains(&n) || (100_000..200_000).contains(&n),
                "{code:?} {n}"
            );
            if !code.is_twilios() {
                // 1SSSNN: the middle three digits are one of the code's statuses.
                let status = (n / 100) % 1000;
                assert!(code.statuses().contains(&(status as u16)), "{code:?} {n}");
            }
        }
        // The codes the issue found misused are gone.
        for misused in [80623, 80640, 80620, 20429, 50200, 50300, 50000] {
            assert!(Code::ALL.iter().all(|c| *c as u32 != misused), "{misused}");
        }
    }
}
