//! Sessions: validating a create request, allocating proxy numbers, reading and closing.

use std::collections::HashSet;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::clock;
use crate::ids;
use crate::model::{Extension, Interaction, Participant, Session, SessionStatus};
use crate::phone::PhoneNumber;
use crate::pool::{self, Need, Shortage};
use crate::problem::{Code, Problem};
use crate::store::{CreateConflict, CreateError, StoreError};

pub const MODE_VOICE_ONLY: &str = "voice-only";
/// Twilio's `<Dial timeLimit>` and Call `TimeLimit` top out at four hours.
pub const MAX_CALL_SECONDS: u64 = 14_400;
const MAX_TTL_SECONDS: u64 = 365 * 86_400;
const MAX_UNIQUE_NAME: usize = 191;
const MAX_FRIENDLY_NAME: usize = 255;
/// Races over the same proxy slot are retried; each retry sees the winner's routes.
const MAX_CREATE_ATTEMPTS: usize = 25;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub unique_name: Option<String>,
    pub ttl: Option<u64>,
    pub date_expiry: Option<String>,
    pub mode: Option<String>,
    pub call_time_limit: Option<u64>,
    pub warning_lead: Option<u64>,
    pub extension: Option<ExtensionInput>,
    /// The participant (identifier) who hears the end-of-call warning and may extend.
    pub decider: Option<String>,
    pub participants: Vec<ParticipantInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionInput {
    pub seconds: u64,
    pub max_count: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantInput {
    pub identifier: String,
    pub friendly_name: Option<String>,
    pub proxy_identifier: Option<String>,
}

/// A create request that passed validation: everything but the proxy numbers is decided.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub unique_name: Option<String>,
    pub ttl: u64,
    pub date_expiry: Option<i64>,
    pub call_time_limit: Option<u64>,
    pub warning_lead: u64,
    pub extension: Extension,
    /// Index into `participants` of the deciding participant.
    pub decider: usize,
    pub participants: Vec<NewParticipant>,
}

#[derive(Debug, Clone)]
pub struct NewParticipant {
    pub identifier: PhoneNumber,
    pub friendly_name: Option<String>,
    pub proxy_identifier: Option<PhoneNumber>,
}

fn field_number(name: &str, value: &str) -> Result<PhoneNumber, Problem> {
    PhoneNumber::parse(value).map_err(|e| Problem::invalid(format!("{name}: {e}")))
}

/// Checks a create request against the API's rules; `now` is for `date_expiry`.
pub fn validate(
    req: CreateSession,
    defaults: &crate::config::Config,
    now: i64,
) -> Result<NewSession, Problem> {
    match req.mode.as_deref() {
        None | Some(MODE_VOICE_ONLY) => {}
        Some(m @ ("voice-and-message" | "message-only")) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                Code::ModeNotSupported,
                "Mode not supported",
                format!(
                    "mode {m:?} needs SMS, and Japanese numbers have no SMS; use \"voice-only\""
                ),
            ));
        }
        Some(m) => {
            return Err(Problem::invalid(format!(
                "mode {m:?} is unknown; use \"voice-only\""
            )));
        }
    }
    if let Some(name) = &req.unique_name {
        if name.trim().is_empty() || name.chars().count() > MAX_UNIQUE_NAME {
            return Err(Problem::invalid(format!(
                "unique_name must have 1 to {MAX_UNIQUE_NAME} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Problem::invalid(
                "unique_name must not contain control characters",
            ));
        }
        if ids::is_sid(ids::SESSION, name) {
            return Err(Problem::invalid(
                "unique_name must not look like a session SID (KC + 32 hex digits)",
            ));
        }
    }
    let ttl = req.ttl.unwrap_or(defaults.default_ttl_seconds);
    if ttl > MAX_TTL_SECONDS {
        return Err(Problem::invalid(format!(
            "ttl is {ttl} seconds; at most {MAX_TTL_SECONDS} (one year)"
        )));
    }
    let date_expiry = match &req.date_expiry {
        None => None,
        Some(s) => {
            let t = clock::parse_iso(s).ok_or_else(|| {
                Problem::invalid(format!(
                    "date_expiry {s:?} is not an ISO 8601 date-time like 2026-12-01T09:00:00+09:00"
                ))
            })?;
            if t <= now {
                return Err(Problem::invalid(format!("date_expiry {s} is in the past")));
            }
            Some(t)
        }
    };
    if let Some(limit) = req.call_time_limit
        && !(60..=MAX_CALL_SECONDS).contains(&limit)
    {
        return Err(Problem::invalid(format!(
            "call_time_limit is {limit} seconds; it must be 60 to {MAX_CALL_SECONDS}"
        )));
    }
    let warning_lead = req
        .warning_lead
        .unwrap_or(defaults.default_warning_lead_seconds);
    if warning_lead > 3_600 {
        return Err(Problem::invalid(
            "warning_lead must be at most 3600 seconds",
        ));
    }
    let extension = match req.extension {
        None => Extension {
            seconds: defaults.default_extension_seconds,
            max_count: defaults.default_extension_max_count,
        },
        Some(e) => {
            if !(60..=MAX_CALL_SECONDS).contains(&e.seconds) || e.max_count > 10 {
                return Err(Problem::invalid(format!(
                    "extension.seconds must be 60 to {MAX_CALL_SECONDS} and extension.max_count at most 10"
                )));
            }
            Extension {
                seconds: e.seconds,
                max_count: e.max_count,
            }
        }
    };
    if req.participants.len() != 2 {
        return Err(Problem::invalid(format!(
            "a session connects exactly two participants; got {}",
            req.participants.len()
        )));
    }
    let mut participants = Vec::with_capacity(2);
    for (i, p) in req.participants.into_iter().enumerate() {
        let identifier = field_number(&format!("participants[{i}].identifier"), &p.identifier)?;
        let proxy_identifier = p
            .proxy_identifier
            .as_deref()
            .map(|v| field_number(&format!("participants[{i}].proxy_identifier"), v))
            .transpose()?;
        if let Some(name) = &p.friendly_name
            && (name.chars().count() > MAX_FRIENDLY_NAME || name.chars().any(char::is_control))
        {
            return Err(Problem::invalid(format!(
                "participants[{i}].friendly_name must have at most {MAX_FRIENDLY_NAME} printable characters"
            )));
        }
        participants.push(NewParticipant {
            identifier,
            friendly_name: p.friendly_name,
            proxy_identifier,
        });
    }
    if participants[0].identifier == participants[1].identifier {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            Code::ParticipantAlreadyInSession,
            "Participant already in session",
            format!(
                "both participants are {}; a session needs two different numbers",
                participants[0].identifier.masked()
            ),
        ));
    }
    for p in &participants {
        if let Some(proxy) = &p.proxy_identifier
            && participants.iter().any(|q| &q.identifier == proxy)
        {
            return Err(Problem::invalid(
                "a proxy_identifier cannot be a participant's own number",
            ));
        }
    }
    let decider = match &req.decider {
        None => 0,
        Some(d) => {
            let number = field_number("decider", d)?;
            participants
                .iter()
                .position(|p| p.identifier == number)
                .ok_or_else(|| {
                    Problem::invalid("decider must be the identifier of one of the participants")
                })?
        }
    };
    Ok(NewSession {
        decider,
        unique_name: req.unique_name,
        ttl,
        date_expiry,
        call_time_limit: req.call_time_limit,
        warning_lead,
        extension,
        participants,
    })
}

fn shortage_problem(s: Shortage, pool_empty: bool) -> Problem {
    match s {
        Shortage::NoneFree { participant } => Problem::conflict(
            Code::NoProxyNumberAvailable,
            "No proxy number available",
            if pool_empty {
                "the number pool is empty; add numbers with POST /v1/numbers".to_owned()
            } else {
                format!(
                    "{} already has an open session on every unreserved proxy number; close one of their sessions or add numbers with POST /v1/numbers",
                    participant.masked()
                )
            },
        ),
        Shortage::NotInPool { number } => Problem::new(
            StatusCode::BAD_REQUEST,
            Code::NumberNotInPool,
            "Number not in pool",
            format!(
                "proxy_identifier {number} is not in the number pool; add it with POST /v1/numbers"
            ),
        ),
        Shortage::Taken {
            number,
            participant,
        } => Problem::conflict(
            Code::IdentifierConflict,
            "Identifier conflict",
            format!(
                "{} already has an open session on proxy number {number}; choose another proxy_identifier",
                participant.masked()
            ),
        ),
    }
}

/// Creates the session: picks proxy numbers and writes everything in one transaction,
/// retrying when a concurrent create took the same slot first.
pub async fn create(app: &App, new: NewSession) -> Result<Session, Problem> {
    for attempt in 0..MAX_CREATE_ATTEMPTS {
        let (numbers, taken_a, taken_b) = futures::try_join!(
            app.store.list_numbers(),
            app.store.proxies_of(&new.participants[0].identifier),
            app.store.proxies_of(&new.participants[1].identifier),
        )?;
        let taken: [HashSet<PhoneNumber>; 2] =
            [taken_a.into_iter().collect(), taken_b.into_iter().collect()];
        let needs: Vec<Need<'_>> = new
            .participants
            .iter()
            .zip(&taken)
            .map(|(p, taken)| Need {
                identifier: &p.identifier,
                requested: p.proxy_identifier.as_ref(),
                taken,
            })
            .collect();
        let chosen = pool::choose(&numbers, &needs, random_index())
            .map_err(|s| shortage_problem(s, numbers.is_empty()))?;

        let now = app.now();
        let session = Session {
            sid: ids::new_sid(ids::SESSION),
            unique_name: new.unique_name.clone(),
            status: SessionStatus::Open,
            closed_reason: None,
            mode: MODE_VOICE_ONLY.into(),
            ttl: new.ttl,
            date_expiry: new.date_expiry,
            date_created: now,
            date_updated: now,
            date_last_interaction: None,
            call_time_limit: new.call_time_limit,
            warning_lead: new.warning_lead,
            extension: new.extension,
            extension_count: 0,
            total_cost_milli_yen: 0,
            current_conference: None,
            decider: None,
            live_call: None,
            participants: new
                .participants
                .iter()
                .zip(chosen)
                .map(|(p, proxy)| Participant {
                    sid: ids::new_sid(ids::PARTICIPANT),
                    identifier: p.identifier.clone(),
                    proxy_identifier: proxy,
                    friendly_name: p.friendly_name.clone(),
                })
                .collect(),
        };
        let mut session = session;
        session.decider = session.participants.get(new.decider).map(|p| p.sid.clone());
        match app.store.create_session(&session, now).await {
            Ok(()) => {
                tracing::info!(session = %session.sid, attempt, "session created");
                return Ok(session);
            }
            Err(CreateError::Store(e)) => return Err(e.into()),
            Err(CreateError::Conflict(CreateConflict::UniqueName)) => {
                return Err(Problem::conflict(
                    Code::UniqueNameTaken,
                    "Unique name taken",
                    format!(
                        "another session already has unique_name {:?}",
                        new.unique_name.unwrap_or_default()
                    ),
                ));
            }
            Err(CreateError::Conflict(CreateConflict::Route { proxy, participant })) => {
                let requested = new.participants.iter().any(|p| {
                    p.identifier == participant && p.proxy_identifier.as_ref() == Some(&proxy)
                });
                if requested {
                    return Err(shortage_problem(
                        Shortage::Taken {
                            number: proxy,
                            participant,
                        },
                        false,
                    ));
                }
                // Someone else took this slot a moment ago; the next read sees it.
            }
            Err(CreateError::Conflict(
                CreateConflict::NumberGone(_) | CreateConflict::Contention,
            )) => {}
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        Code::Busy,
        "Too much contention",
        "many sessions were created for these participants at once; nothing was written, retry",
    ))
}

fn random_index() -> usize {
    uuid::Uuid::new_v4().as_u128() as usize
}

/// A few milliseconds, growing and jittered, so racing creates do not collide again in step.
fn backoff(attempt: usize) -> Duration {
    let base = 5u64 << attempt.min(5);
    Duration::from_millis(base + (random_index() as u64 % (base + 1)))
}

/// Reads a session by SID, or by unique name when the key is not a SID.
pub async fn find(app: &App, sid_or_name: &str) -> Result<Session, Problem> {
    let sid = if ids::is_sid(ids::SESSION, sid_or_name) {
        Some(sid_or_name.to_owned())
    } else if sid_or_name.is_empty() || sid_or_name.len() > 4 * MAX_UNIQUE_NAME {
        None
    } else {
        app.store.session_sid_by_unique_name(sid_or_name).await?
    };
    let session = match sid {
        Some(sid) => app.store.get_session(&sid).await?,
        None => None,
    };
    session.ok_or_else(|| Problem::not_found(format!("no session {sid_or_name:?}")))
}

/// Closes a session (I3) and ends its live calls. Closing a closed session returns it as it
/// is: DELETE is idempotent.
pub async fn close(app: &App, sid_or_name: &str, reason: &str) -> Result<Session, Problem> {
    loop {
        let session = find(app, sid_or_name).await?;
        if !session.status.is_open() {
            return Ok(session);
        }
        let now = app.now();
        match app
            .store
            .close_session(&session, reason, now, now + app.config.retention_seconds())
            .await
        {
            Ok(()) => {
                end_live_calls(app, &session.sid).await;
                tracing::info!(session = %session.sid, reason, "session closed");
                return find(app, &session.sid).await;
            }
            // A concurrent close or status change won; read again and answer from that.
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Asks Twilio to end every call leg of the session still live. Ending a parent ends the
/// leg it dialled, so only legs without a logged parent are ended directly. Failures are
/// logged: the session is already closed and routes nothing, whatever Twilio says.
pub async fn end_live_calls(app: &App, session_sid: &str) {
    let legs = match app.store.list_interactions(session_sid).await {
        Ok(legs) => legs,
        Err(e) => {
            tracing::error!(session = session_sid, error = %e, "could not list calls to end");
            return;
        }
    };
    let live: Vec<&Interaction> = legs.iter().filter(|l| !l.status.is_final()).collect();
    let live_sids: HashSet<&str> = live.iter().map(|l| l.call_sid.as_str()).collect();
    let roots = live.iter().filter(|l| {
        l.parent_call_sid
            .as_deref()
            .is_none_or(|p| !live_sids.contains(p))
    });
    for leg in roots {
        if let Err(e) = app.twilio.end_call(&app.secrets, &leg.call_sid).await {
            tracing::error!(session = session_sid, call = %leg.call_sid, error = %e, "could not end live call");
        }
    }
}

/// The session as the API shows it.
#[derive(Debug, Serialize)]
pub struct SessionView<'a> {
    pub sid: &'a str,
    pub unique_name: Option<&'a str>,
    pub status: &'static str,
    pub closed_reason: Option<&'a str>,
    pub mode: &'a str,
    pub ttl: u64,
    pub date_expiry: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub date_last_interaction: Option<String>,
    pub call_time_limit: Option<u64>,
    pub warning_lead: u64,
    pub extension: Extension,
    pub extension_count: u32,
    /// The participant SID who hears the warning and may extend.
    pub decider: Option<&'a str>,
    /// The call in progress under a time limit, if any.
    pub live_call: Option<&'a crate::model::LiveCall>,
    pub participants: Vec<ParticipantView<'a>>,
    /// Every logged leg's cost so far.
    pub total_cost: crate::pricing::Yen,
    pub cost_unit: &'static str,
    pub links: Links,
}

#[derive(Debug, Serialize)]
pub struct ParticipantView<'a> {
    pub sid: &'a str,
    pub identifier: &'a str,
    pub proxy_identifier: &'a str,
    pub friendly_name: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct Links {
    pub interactions: String,
}

impl<'a> SessionView<'a> {
    pub fn of(s: &'a Session) -> Self {
        Self {
            sid: &s.sid,
            unique_name: s.unique_name.as_deref(),
            status: s.status.as_str(),
            closed_reason: s.closed_reason.as_deref(),
            mode: &s.mode,
            ttl: s.ttl,
            date_expiry: s.date_expiry.map(clock::iso),
            date_created: clock::iso(s.date_created),
            date_updated: clock::iso(s.date_updated),
            date_last_interaction: s.date_last_interaction.map(clock::iso),
            call_time_limit: s.call_time_limit,
            warning_lead: s.warning_lead,
            extension: s.extension,
            extension_count: s.extension_count,
            decider: s.decider().map(|p| p.sid.as_str()),
            live_call: s.live_call.as_ref(),
            participants: s
                .participants
                .iter()
                .map(|p| ParticipantView {
                    sid: &p.sid,
                    identifier: p.identifier.as_str(),
                    proxy_identifier: p.proxy_identifier.as_str(),
                    friendly_name: p.friendly_name.as_deref(),
                })
                .collect(),
            total_cost: s.total_cost(),
            cost_unit: "JPY",
            links: Links {
                interactions: format!("/v1/sessions/{}/interactions", s.sid),
            },
        }
    }
}

/// Moves the session's end by `seconds`: its `date_expiry` and its live call's deadline,
/// whichever it has (`POST /v1/sessions/{sid}/extend`).
pub async fn extend(app: &App, sid_or_name: &str, seconds: u64) -> Result<Session, Problem> {
    if !(1..=30 * 86_400).contains(&seconds) {
        return Err(Problem::invalid("seconds must be 1 to 2592000 (30 days)"));
    }
    let session = find(app, sid_or_name).await?;
    if !session.status.is_open() {
        return Err(Problem::conflict(
            Code::SessionClosed,
            "Session closed",
            format!("session {} is closed", session.sid),
        ));
    }
    let deadline = session.live_call.as_ref().and_then(|l| l.deadline);
    if session.date_expiry.is_none() && deadline.is_none() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidStatusChange,
            "Nothing to extend",
            "the session has no date_expiry and no call under a time limit; set a ttl or date_expiry instead",
        ));
    }
    let now = app.now();
    let seconds = seconds as i64;
    // The sweep must wake for the moved end (and its warning), not the old one.
    let due = crate::expiry::next_due(&session.extended_by(seconds), false, now);
    match app.store.extend_session(&session, seconds, due, now).await {
        Ok(()) => find(app, &session.sid).await,
        Err(StoreError::ConditionFailed) => Err(Problem::conflict(
            Code::InvalidStatusChange,
            "Session changed",
            "the session closed or its end moved meanwhile; read it again and retry",
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> crate::config::Config {
        crate::config::Config::from_lookup(|k| {
            match k {
                "TABLE_NAME" => Some("t"),
                "TWILIO_SECRET_ID" => Some("s"),
                "PUBLIC_BASE_URL" => Some("https://x.test"),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap()
    }

    fn request(json: &str) -> CreateSession {
        serde_json::from_str(json).unwrap()
    }

    const NOW: i64 = 1_795_552_200;

    #[test]
    fn a_valid_request_is_normalised() {
        let s = validate(
            request(
                r#"{"unique_name":"order-1","ttl":600,"participants":[
                {"identifier":"090-1234-5678","friendly_name":"買い手"},
                {"identifier":"+81 80 9876 5432"}]}"#,
            ),
            &config(),
            NOW,
        )
        .unwrap();
        assert_eq!(s.participants[0].identifier.as_str(), "+819012345678");
        assert_eq!(s.participants[1].identifier.as_str(), "+818098765432");
        assert_eq!(s.ttl, 600);
        assert_eq!(s.warning_lead, 180);
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let cases = [
            (
                r#"{"mode":"message-only","participants":[]}"#,
                Code::ModeNotSupported,
                "SMS",
            ),
            (
                r#"{"mode":"video","participants":[]}"#,
                Code::InvalidParameter,
                "video",
            ),
            (
                r#"{"participants":[{"identifier":"090-1234-5678"}]}"#,
                Code::InvalidParameter,
                "exactly two",
            ),
            (
                r#"{"participants":[{"identifier":"090-1234-5678"},{"identifier":"12"}]}"#,
                Code::InvalidParameter,
                "participants[1].identifier",
            ),
            (
                r#"{"participants":[{"identifier":"090-1234-5678"},{"identifier":"+819012345678"}]}"#,
                Code::ParticipantAlreadyInSession,
                "two different",
            ),
            (
                r#"{"date_expiry":"2020-01-01T00:00:00Z","participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "past",
            ),
            (
                r#"{"call_time_limit":5,"participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "call_time_limit",
            ),
            (
                r#"{"unique_name":"KC0123456789abcdef0123456789abcdef","participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "SID",
            ),
        ];
        for (json, code, needle) in cases {
            let p = validate(request(json), &config(), NOW).unwrap_err();
            assert_eq!(p.code, code, "{json}: {p}");
            assert!(p.detail.contains(needle), "{json}: {}", p.detail);
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<CreateSession>(r#"{"participants":[],"tll":5}"#).is_err());
    }
}
