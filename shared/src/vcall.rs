//! V字発信: the platform rings both parties itself, so both legs are Twilio-outbound (neither
//! user pays a carrier) and each sees only their own proxy number.
//!
//! - **bridge**: one REST call to the first party; when they answer, `bridge-twiml` dials the
//!   other with `<Dial timeLimit>` (no announcement possible).
//! - **conference**: REST calls to both; each answer joins the session's room
//!   (`conference-twiml`), which is what makes the spoken end-of-call warning possible.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::ids;
use crate::model::{CallStatus, Interaction, Participant, Session};
use crate::phone::PhoneNumber;
use crate::pricing::Direction;
use crate::problem::{Code, Problem};
use crate::sessions::{self, MAX_CALL_SECONDS};
use crate::twilio::{NewCall, TwilioError};
use http::StatusCode;

/// Legs that have not reported a final status for this long are taken as lost callbacks,
/// not live calls (Twilio ends every call within four hours).
const LIVE_LEG_HORIZON_SECONDS: i64 = MAX_CALL_SECONDS as i64 + 600;
/// How long the lease taken while placing calls holds, should the function die meanwhile.
const CALL_LOCK_SECONDS: i64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartCall {
    pub mode: String,
    /// Who is rung first: a participant SID or identifier; the first participant by default.
    pub first: Option<String>,
    pub call_time_limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Bridge,
    Conference,
}

#[derive(Debug, Serialize)]
pub struct PlacedLeg {
    pub participant_sid: String,
    pub call_sid: String,
}

#[derive(Debug)]
pub struct Placed {
    pub mode: Mode,
    pub call_time_limit: u64,
    pub legs: Vec<PlacedLeg>,
}

/// The session's conference room name: derived from the SID (random), so nobody can guess
/// it from a participant's number or the session's unique name.
pub fn room_name(session_sid: &str) -> String {
    let digest = Sha256::digest(format!("tsunagu-room:{session_sid}").as_bytes());
    format!("tsunagu-{}", hex::encode(&digest[..12]))
}

/// Seconds a call may last: the request's limit, the session's `call_time_limit` and what is
/// left before `date_expiry`, within Twilio's four hours.
pub fn call_limit(session: &Session, requested: Option<u64>, now: i64) -> u64 {
    let until_expiry = session.date_expiry.map(|t| (t - now).max(1) as u64);
    [
        requested,
        session.call_time_limit,
        until_expiry,
        Some(MAX_CALL_SECONDS),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(MAX_CALL_SECONDS)
}

fn closed(session: &Session) -> Problem {
    Problem::conflict(
        Code::SessionClosed,
        "Session closed",
        format!(
            "session {} is {} and can place no calls",
            session.sid,
            session.status.as_str()
        ),
    )
}

fn busy(session: &Session) -> Problem {
    Problem::conflict(
        Code::CallInProgress,
        "Call in progress",
        format!(
            "session {} already has a live call; wait for it to end",
            session.sid
        ),
    )
}

fn pick_first<'a>(
    session: &'a Session,
    first: Option<&str>,
) -> Result<(&'a Participant, &'a Participant), Problem> {
    let first = match first {
        None => session.participants.first(),
        Some(key) => {
            let e164 = PhoneNumber::parse(key)
                .map(|n| n.to_string())
                .unwrap_or_default();
            session
                .participants
                .iter()
                .find(|p| p.sid == key || p.identifier.as_str() == e164)
        }
    }
    .ok_or_else(|| {
        Problem::invalid("first must be the SID or number of one of the session's participants")
    })?;
    let second = session
        .other(&first.sid)
        .ok_or_else(|| Problem::invalid("the session has only one participant"))?;
    Ok((first, second))
}

/// Rings the session's participants. Refuses closed or expired sessions and sessions with a
/// live call; a half-placed V字発信 (first leg created, second refused) is hung up again.
pub async fn start(
    app: &App,
    sid_or_name: &str,
    request: StartCall,
) -> Result<(Session, Placed), Problem> {
    let mode = match request.mode.as_str() {
        "bridge" => Mode::Bridge,
        "conference" => Mode::Conference,
        other => {
            return Err(Problem::invalid(format!(
                "mode {other:?} is unknown; use \"bridge\" or \"conference\""
            )));
        }
    };
    if let Some(limit) = request.call_time_limit
        && !(60..=MAX_CALL_SECONDS).contains(&limit)
    {
        return Err(Problem::invalid(format!(
            "call_time_limit must be 60 to {MAX_CALL_SECONDS} seconds"
        )));
    }
    let session = sessions::find(app, sid_or_name).await?;
    let now = app.now();
    if !session.status.is_open() || session.deadline().is_some_and(|d| d <= now) {
        return Err(closed(&session));
    }
    let (first, second) = pick_first(&session, request.first.as_deref())?;
    let limit = call_limit(&session, request.call_time_limit, now);

    let legs = app.store.list_interactions(&session.sid).await?;
    if legs
        .iter()
        .any(|l| !l.status.is_final() && l.date_updated > now - LIVE_LEG_HORIZON_SECONDS)
    {
        return Err(busy(&session));
    }
    if !app
        .store
        .lock_calls(&session.sid, now, now + CALL_LOCK_SECONDS)
        .await?
    {
        let fresh = sessions::find(app, &session.sid).await?;
        return Err(if fresh.status.is_open() {
            busy(&fresh)
        } else {
            closed(&fresh)
        });
    }
    let mode_name = match mode {
        Mode::Bridge => "bridge",
        Mode::Conference => "conference",
    };
    let placed = match app
        .store
        .begin_live_call(&session.sid, mode_name, limit, true)
        .await
    {
        Ok(()) => place(app, &session, mode, first, second, limit).await,
        Err(crate::store::StoreError::ConditionFailed) => Err(closed(&session)),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = app.store.unlock_calls(&session.sid).await {
        tracing::error!(session = %session.sid, error = %e, "could not release the call lock; it lapses by itself");
    }
    let placed = placed?;
    Ok((sessions::find(app, &session.sid).await?, placed))
}

async fn place(
    app: &App,
    session: &Session,
    mode: Mode,
    first: &Participant,
    second: &Participant,
    limit: u64,
) -> Result<Placed, Problem> {
    let mut callees = vec![first];
    if mode == Mode::Conference {
        callees.push(second);
    }
    let mut legs: Vec<PlacedLeg> = Vec::new();
    for callee in callees {
        match ring(app, &session.sid, mode, callee, limit).await {
            Ok(call_sid) => legs.push(PlacedLeg {
                participant_sid: callee.sid.clone(),
                call_sid,
            }),
            Err(e) => {
                for placed in &legs {
                    if let Err(hang_up) = app.twilio.hang_up(&app.secrets, &placed.call_sid).await {
                        tracing::error!(call = %placed.call_sid, error = %hang_up, "could not cancel the first leg of a failed V-call");
                    }
                }
                return Err(twilio_problem(e, callee));
            }
        }
    }
    Ok(Placed {
        mode,
        call_time_limit: limit,
        legs,
    })
}

/// Creates one outbound leg and logs it as queued, so a second request sees it as live.
pub async fn ring(
    app: &App,
    session_sid: &str,
    mode: Mode,
    callee: &Participant,
    limit: u64,
) -> Result<String, TwilioError> {
    let base = &app.config.public_base_url;
    let query = format!(
        "session={}&participant={}&limit={limit}",
        session_sid, callee.sid
    );
    let url = match mode {
        Mode::Bridge => format!("{base}/twilio/voice/bridge?{query}"),
        Mode::Conference => format!("{base}/twilio/voice/conference?{query}"),
    };
    let status_callback = format!(
        "{base}/twilio/voice/status?session={}&participant={}",
        session_sid, callee.sid
    );
    // The first leg of a bridge also spans the other party's ringing.
    let leg_limit = match mode {
        Mode::Bridge => limit + u64::from(app.config.dial_timeout_seconds),
        Mode::Conference => limit,
    };
    let call_sid = app
        .twilio
        .create_call(
            &app.secrets,
            &NewCall {
                to: callee.identifier.as_str(),
                from: callee.proxy_identifier.as_str(),
                url: &url,
                status_callback: &status_callback,
                timeout: app.config.dial_timeout_seconds,
                time_limit: leg_limit.min(MAX_CALL_SECONDS),
            },
        )
        .await?;
    let now = app.now();
    let leg = Interaction {
        sid: ids::new_sid(ids::INTERACTION),
        session_sid: session_sid.to_owned(),
        call_sid: call_sid.clone(),
        parent_call_sid: None,
        direction: Direction::Outbound,
        twilio_direction: "outbound-api".into(),
        from_masked: callee.proxy_identifier.masked().to_string(),
        to_masked: callee.identifier.masked().to_string(),
        from_participant_sid: None,
        to_participant_sid: Some(callee.sid.clone()),
        callee_class: callee.identifier.class(),
        status: CallStatus::Queued,
        duration: 0,
        billed_minutes: 0,
        cost_milli_yen: 0,
        date_created: now,
        date_updated: now,
        date_ended: None,
    };
    if let Err(e) = app
        .store
        .record_leg(&leg, now, app.config.retention_seconds())
        .await
    {
        tracing::error!(call = %call_sid, error = %e, "placed a call but could not log it yet; its callbacks will");
    }
    tracing::info!(session = session_sid, call = %call_sid, to = %callee.identifier.masked(), mode = ?mode, "V-call leg placed");
    Ok(call_sid)
}

fn twilio_problem(e: TwilioError, callee: &Participant) -> Problem {
    let who = callee.identifier.masked();
    match e {
        TwilioError::Api { status, code, message } => Problem::new(
            StatusCode::BAD_GATEWAY,
            Code::Upstream,
            "Twilio refused the call",
            format!("calling {who}: Twilio answered {status}: {message} (code {code}); no call is left ringing"),
        )
        .with_twilio_code(Some(code)),
        TwilioError::Transport(why) => Problem::new(
            StatusCode::BAD_GATEWAY,
            Code::Upstream,
            "Twilio unreachable",
            format!("calling {who}: {why}; no call is left ringing"),
        ),
        TwilioError::OutOfTime => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            Code::Upstream,
            "Twilio too slow",
            format!("calling {who}: Twilio did not answer in time; no call is left ringing"),
        ),
        TwilioError::Credentials(why) => Problem::new(
            StatusCode::BAD_GATEWAY,
            Code::Upstream,
            "Twilio credentials unavailable",
            why.to_string(),
        ),
    }
}

#[derive(Serialize)]
pub struct PlacedView<'a> {
    pub mode: Mode,
    pub call_time_limit: u64,
    pub calls: &'a [PlacedLeg],
    pub session: sessions::SessionView<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expiry: Option<i64>, limit: Option<u64>) -> Session {
        Session {
            date_expiry: expiry,
            call_time_limit: limit,
            ..crate::model::sample_session()
        }
    }

    #[test]
    fn the_room_is_not_derived_from_user_data() {
        let room = room_name("KC0123456789abcdef0123456789abcdef");
        assert!(room.starts_with("tsunagu-") && room.len() == 32, "{room}");
        assert_ne!(room, room_name("KC0123456789abcdef0123456789abcdee"));
        assert!(!room.contains("0123456789abcdef"));
    }

    #[test]
    fn the_limit_is_the_tightest_bound() {
        assert_eq!(call_limit(&session(None, None), None, 0), MAX_CALL_SECONDS);
        assert_eq!(call_limit(&session(None, Some(1800)), Some(600), 0), 600);
        assert_eq!(call_limit(&session(Some(300), Some(1800)), None, 0), 300);
    }

    #[test]
    fn first_is_found_by_sid_or_number() {
        let s = session(None, None);
        assert_eq!(pick_first(&s, None).unwrap().0.sid, "KP1");
        assert_eq!(pick_first(&s, Some("KP2")).unwrap().0.sid, "KP2");
        assert_eq!(pick_first(&s, Some("080-9876-5432")).unwrap().1.sid, "KP1");
        assert!(pick_first(&s, Some("070-0000-0000")).is_err());
    }
}
