//! `POST /v1/sessions`'s request, checked against the API's rules, and the session as the
//! API shows it.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::domain::sessions::{
    MAX_CALL_SECONDS, MAX_END_AHEAD_SECONDS, MAX_UNIQUE_NAME, MODE_VOICE_ONLY, NewParticipant,
    NewSession, SessionChange, StatusChange,
};
use crate::ids;
use crate::model::{Extension, Session};
use crate::phone::PhoneNumber;
use crate::problem::{Code, Problem};

const MAX_TTL_SECONDS: u64 = 365 * 86_400;
const MAX_FRIENDLY_NAME: usize = 255;

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
    /// The most a live call may cost, in yen; needs `call_time_limit`.
    pub max_cost: Option<serde_json::Value>,
    /// The participant (identifier) who hears the end-of-call warning and may extend.
    pub decider: Option<String>,
    #[serde(default)]
    pub participants: Vec<ParticipantInput>,
    /// Record every call of the session (both parties are told first).
    pub record: Option<bool>,
    /// The notice both parties hear before a recorded call connects.
    pub recording_announcement: Option<String>,
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
    /// Spoken to this participant when they answer a call placed to them.
    pub announcement: Option<String>,
    /// Audio played instead (https only).
    pub announcement_url: Option<String>,
}

/// The longest `announcement` or `recording_announcement`, in characters.
pub const MAX_ANNOUNCEMENT: usize = 200;
/// The longest `announcement_url`.
const MAX_ANNOUNCEMENT_URL: usize = 1024;

/// Text spoken to a caller: 1 to 200 printable characters.
fn spoken_text(field: &str, text: &str) -> Result<(), Problem> {
    if text.trim().is_empty() || text.chars().count() > MAX_ANNOUNCEMENT || !printable(text) {
        return Err(Problem::invalid(format!(
            "{field} must have 1 to {MAX_ANNOUNCEMENT} printable characters (no control or invisible format characters)"
        )));
    }
    Ok(())
}

/// One participant of a request (`POST /v1/sessions`' `participants[i]`, or a participant
/// added on its own), checked against the API's rules. `field` names it in errors.
pub fn participant(
    field: &str,
    p: ParticipantInput,
    defaults: &crate::config::Config,
) -> Result<NewParticipant, Problem> {
    let identifier = field_number(&format!("{field}.identifier"), &p.identifier)?;
    if !defaults.country_allowed(&identifier) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            Code::CountryNotAllowed,
            "Country not allowed",
            format!(
                "{field}.identifier {} is not in an allowed country (calling codes {}; ALLOWED_COUNTRIES)",
                identifier.masked(),
                defaults.allowed_countries.join(", ")
            ),
        ));
    }
    let proxy_identifier = p
        .proxy_identifier
        .as_deref()
        .map(|v| field_number(&format!("{field}.proxy_identifier"), v))
        .transpose()?;
    if proxy_identifier.as_ref() == Some(&identifier) {
        return Err(Problem::invalid(
            "a proxy_identifier cannot be a participant's own number",
        ));
    }
    if let Some(name) = &p.friendly_name
        && (name.chars().count() > MAX_FRIENDLY_NAME || !printable(name))
    {
        return Err(Problem::invalid(format!(
            "{field}.friendly_name must have at most {MAX_FRIENDLY_NAME} printable characters (no control or invisible format characters)"
        )));
    }
    if p.announcement.is_some() && p.announcement_url.is_some() {
        return Err(Problem::invalid(format!(
            "{field}: give announcement (text) or announcement_url (audio), not both"
        )));
    }
    if let Some(text) = &p.announcement {
        spoken_text(&format!("{field}.announcement"), text)?;
    }
    if let Some(url) = &p.announcement_url {
        audio_url(&format!("{field}.announcement_url"), url)?;
    }
    Ok(NewParticipant {
        identifier,
        friendly_name: p.friendly_name,
        proxy_identifier,
        announcement: p.announcement,
        announcement_url: p.announcement_url,
    })
}

/// An audio URL Twilio will `<Play>`: https, with a host, no credentials, no spaces.
fn audio_url(field: &str, url: &str) -> Result<(), Problem> {
    let bad = || {
        Problem::invalid(format!(
            "{field} must be an https URL of at most {MAX_ANNOUNCEMENT_URL} characters"
        ))
    };
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if url.len() > MAX_ANNOUNCEMENT_URL
        || host.is_empty()
        || host.contains('@')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(())
}

fn field_number(name: &str, value: &str) -> Result<PhoneNumber, Problem> {
    PhoneNumber::parse(value).map_err(|e| Problem::invalid(format!("{name}: {e}")))
}

/// Unicode's format characters (general category Cf, Unicode 16): bidi overrides and
/// isolates, zero-width spaces and joiners, the BOM, soft hyphens, tags. Invisible, they can
/// make one name look like another or reorder what a person reads around them.
pub fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{0890}'..='\u{0891}' | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// A name a person will read: no control and no format characters.
fn printable(name: &str) -> bool {
    !name.chars().any(|c| c.is_control() || is_format_char(c))
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
        if !printable(name) {
            return Err(Problem::invalid(
                "unique_name must not contain control or invisible format characters (bidi controls, zero-width characters)",
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
    let date_expiry = req
        .date_expiry
        .as_deref()
        .map(|s| date_expiry(s, now))
        .transpose()?;
    if let Some(limit) = req.call_time_limit
        && !(60..=MAX_CALL_SECONDS).contains(&limit)
    {
        return Err(Problem::invalid(format!(
            "call_time_limit is {limit} seconds; it must be 60 to {MAX_CALL_SECONDS}"
        )));
    }
    let max_cost = match &req.max_cost {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(max_cost(value, req.call_time_limit)?),
    };
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
    if req.participants.len() > 2 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            Code::TooManyParticipants,
            "Too many participants",
            format!(
                "a session connects at most two participants; got {}",
                req.participants.len()
            ),
        ));
    }
    // Zero, one or two: the others may be added later (POST …/participants), as in Proxy.
    let participants = req
        .participants
        .into_iter()
        .enumerate()
        .map(|(i, p)| participant(&format!("participants[{i}]"), p, defaults))
        .collect::<Result<Vec<_>, _>>()?;
    if let [a, b] = &participants[..]
        && a.identifier == b.identifier
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            Code::ParticipantAlreadyInSession,
            "Participant already in session",
            format!(
                "both participants are {}; a session needs two different numbers",
                a.identifier.masked()
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
    let record = req.record.unwrap_or(false);
    if let Some(text) = &req.recording_announcement {
        if !record {
            return Err(Problem::invalid(
                "recording_announcement needs \"record\": true",
            ));
        }
        spoken_text("recording_announcement", text)?;
    }
    let recording_announcement = record.then(|| {
        req.recording_announcement
            .unwrap_or_else(|| crate::model::DEFAULT_RECORDING_ANNOUNCEMENT.to_owned())
    });
    Ok(NewSession {
        record,
        recording_announcement,
        decider,
        unique_name: req.unique_name,
        ttl,
        date_expiry,
        call_time_limit: req.call_time_limit,
        warning_lead,
        extension,
        max_cost,
        participants,
    })
}

/// The most a session's call may cost, in yen.
pub const MAX_COST_YEN: u64 = 1_000_000;

/// `max_cost`: a positive yen amount (a JSON number, at most 3 decimals), on a session whose
/// calls are timed: the cap is kept by ending the call, which only a timed call can be.
fn max_cost(
    value: &serde_json::Value,
    call_time_limit: Option<u64>,
) -> Result<crate::pricing::Yen, Problem> {
    let yen = match value {
        serde_json::Value::Number(n) => crate::pricing::Yen::parse(&n.to_string())
            .map_err(|e| Problem::invalid(format!("max_cost: {e}")))?,
        _ => {
            return Err(Problem::invalid(
                "max_cost must be a number of yen, such as 500 or 99.5",
            ));
        }
    };
    if yen == crate::pricing::Yen::ZERO || yen.milli() > MAX_COST_YEN * 1_000 {
        return Err(Problem::invalid(format!(
            "max_cost is {yen} yen; it must be more than 0 and at most {MAX_COST_YEN}"
        )));
    }
    if call_time_limit.is_none() {
        return Err(Problem::invalid(
            "max_cost needs call_time_limit: the cap is kept by ending a timed call",
        ));
    }
    Ok(yen)
}

/// `POST /v1/sessions/{sid}`'s request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    pub status: Option<String>,
    pub date_expiry: Option<String>,
    pub ttl: Option<u64>,
}

/// Checks an update against the same rules as creation (`date_expiry`, `ttl`); `open` is
/// never set by a request (80608), as in Proxy.
pub fn validate_update(req: UpdateSession, now: i64) -> Result<SessionChange, Problem> {
    let status = match req.status.as_deref() {
        None => None,
        Some("closed") => Some(StatusChange::Close),
        Some("in-progress") => Some(StatusChange::Reopen),
        Some("open") => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                Code::SessionStatusInvalid,
                "Session status invalid",
                "status open is set only at creation; reopen a closed session with in-progress",
            ));
        }
        Some(other) => {
            return Err(Problem::invalid(format!(
                "status {other:?} is unknown; use \"closed\" or \"in-progress\""
            )));
        }
    };
    if let Some(ttl) = req.ttl
        && ttl > MAX_TTL_SECONDS
    {
        return Err(Problem::invalid(format!(
            "ttl is {ttl} seconds; at most {MAX_TTL_SECONDS} (one year)"
        )));
    }
    let date_expiry = req
        .date_expiry
        .as_deref()
        .map(|s| date_expiry(s, now))
        .transpose()?;
    if status.is_none() && date_expiry.is_none() && req.ttl.is_none() {
        return Err(Problem::invalid(
            "nothing to change: give status, date_expiry or ttl",
        ));
    }
    Ok(SessionChange {
        status,
        date_expiry,
        ttl: req.ttl,
    })
}

/// A `date_expiry` as the API takes it: ISO 8601, in the future, at most 365 days ahead.
fn date_expiry(s: &str, now: i64) -> Result<i64, Problem> {
    let t = clock::parse_iso(s).ok_or_else(|| {
        Problem::invalid(format!(
            "date_expiry {s:?} is not an ISO 8601 date-time like 2026-12-01T09:00:00+09:00"
        ))
    })?;
    if t <= now {
        return Err(Problem::invalid(format!("date_expiry {s} is in the past")));
    }
    if t > now.saturating_add(MAX_END_AHEAD_SECONDS) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            Code::BeyondMaximumEnd,
            "Beyond the maximum end",
            format!(
                "date_expiry {s} is more than 365 days ahead; a session ends at most 365 days from now"
            ),
        ));
    }
    Ok(t)
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
    /// The most a live call may cost, in yen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<crate::pricing::Yen>,
    /// The participant SID who hears the warning and may extend.
    pub decider: Option<&'a str>,
    /// The call in progress under a time limit, if any.
    pub live_call: Option<&'a crate::model::LiveCall>,
    /// Shown only when true (absent means not recorded), with the notice.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// The notice both parties hear before a recorded call connects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_announcement: Option<&'a str>,
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
    /// Shown only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcement: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcement_url: Option<&'a str>,
}

impl<'a> ParticipantView<'a> {
    pub fn of(p: &'a crate::model::Participant) -> Self {
        ParticipantView {
            sid: &p.sid,
            identifier: p.identifier.as_str(),
            proxy_identifier: p.proxy_identifier.as_str(),
            friendly_name: p.friendly_name.as_deref(),
            announcement: p.announcement.as_deref(),
            announcement_url: p.announcement_url.as_deref(),
        }
    }
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
            max_cost: s.max_cost(),
            decider: s.decider().map(|p| p.sid.as_str()),
            live_call: s.live_call.as_ref(),
            record: s.record,
            recording_announcement: s.recording_notice(),
            participants: s.participants.iter().map(ParticipantView::of).collect(),
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
        assert_eq!(s.max_cost, None);
        let s = validate(
            request(r#"{"call_time_limit":600,"max_cost":99.5,"participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,),
            &config(),
            NOW,
        )
        .unwrap();
        assert_eq!(s.max_cost, Some(crate::pricing::Yen::from_milli(99_500)));
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
                r#"{"participants":[{"identifier":"1"},{"identifier":"2"},{"identifier":"3"}]}"#,
                Code::TooManyParticipants,
                "at most two",
            ),
            (
                r#"{"decider":"090-1234-5678","participants":[]}"#,
                Code::InvalidParameter,
                "decider",
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
                r#"{"date_expiry":"9999-12-31T23:59:59Z","participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::BeyondMaximumEnd,
                "365 days",
            ),
            (
                r#"{"unique_name":"order\u202e1","participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "format characters",
            ),
            (
                r#"{"participants":[{"identifier":"090-1234-5678","friendly_name":"a\u200bb"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "participants[0].friendly_name",
            ),
            (
                r#"{"participants":[{"identifier":"090-1234-5678"},{"identifier":"+14155550100"}]}"#,
                Code::CountryNotAllowed,
                "participants[1].identifier +1",
            ),
            (
                r#"{"call_time_limit":5,"participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "call_time_limit",
            ),
            (
                r#"{"call_time_limit":600,"max_cost":0,"participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "more than 0",
            ),
            (
                r#"{"call_time_limit":600,"max_cost":-5,"participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "max_cost",
            ),
            (
                r#"{"call_time_limit":600,"max_cost":1.2345,"participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "3 decimal places",
            ),
            (
                r#"{"call_time_limit":600,"max_cost":"500","participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "number of yen",
            ),
            (
                r#"{"call_time_limit":600,"max_cost":1000001,"participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "at most 1000000",
            ),
            (
                r#"{"max_cost":500,"participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#,
                Code::InvalidParameter,
                "needs call_time_limit",
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
    fn announcements_and_recording_are_checked() {
        let two = |a: &str| {
            format!(
                r#"{{"record":true,"participants":[{{"identifier":"090-1234-5678"{a}}},{{"identifier":"080-9876-5432"}}]}}"#
            )
        };
        let s = validate(
            request(&two(
                r#","announcement":"〇〇アプリのお取引についてのお電話です。""#,
            )),
            &config(),
            NOW,
        )
        .unwrap();
        assert!(s.record);
        assert_eq!(
            s.recording_announcement.as_deref(),
            Some(crate::model::DEFAULT_RECORDING_ANNOUNCEMENT)
        );
        assert_eq!(
            s.participants[0].announcement.as_deref(),
            Some("〇〇アプリのお取引についてのお電話です。")
        );
        let url = validate(
            request(&two(
                r#","announcement_url":"https://cdn.example.jp/a.mp3""#,
            )),
            &config(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            url.participants[0].announcement_url.as_deref(),
            Some("https://cdn.example.jp/a.mp3")
        );
        let long = "あ".repeat(MAX_ANNOUNCEMENT + 1);
        let cases = [
            (two(&format!(r#","announcement":"{long}""#)), "1 to 200"),
            (two(r#","announcement":"a","announcement_url":"https://x.jp/a.mp3""#), "not both"),
            (two(r#","announcement_url":"http://x.jp/a.mp3""#), "https"),
            (two(r#","announcement_url":"https://u:p@x.jp/a.mp3""#), "https"),
            (two(r#","announcement":"""#), "1 to 200"),
            (
                r#"{"recording_announcement":"録音します","participants":[{"identifier":"090-1234-5678"},{"identifier":"080-9876-5432"}]}"#.to_owned(),
                "record",
            ),
        ];
        for (json, needle) in cases {
            let p = validate(request(&json), &config(), NOW).unwrap_err();
            assert_eq!(p.code, Code::InvalidParameter, "{json}: {p}");
            assert!(p.detail.contains(needle), "{json}: {}", p.detail);
        }
        let limit = two(&format!(
            r#","announcement":"{}""#,
            "あ".repeat(MAX_ANNOUNCEMENT)
        ));
        assert!(validate(request(&limit), &config(), NOW).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<CreateSession>(r#"{"participants":[],"tll":5}"#).is_err());
    }
}
