//! V字発信's webhooks: `bridge-twiml`, `conference-twiml` and `conference-status`.

use super::*;
use crate::domain::legs;

fn limit_param(req: &Request, session: &Session, now: i64) -> u64 {
    let requested = web::query_param(req, "limit").and_then(|l| l.parse().ok());
    crate::domain::vcall::call_limit(session, requested, now)
}

/// `POST /twilio/voice/bridge`: the first party of a bridge V-call answered; dial the other
/// with the number they know (their proxy) as caller ID. After the dial (`stage=after-dial`),
/// tell the first party if the other could not be reached.
pub async fn bridge_twiml(app: Arc<App>, req: Request) -> Response<Body> {
    webhook(app, req, |app, form, req| async move {
        if web::query_param(&req, "stage").as_deref() == Some("after-dial") {
            let unreachable = matches!(form.get("DialCallStatus"), Some("busy" | "no-answer" | "failed" | "canceled"));
            return Ok(if unreachable {
                say_and_hang_up(&app, &app.config.prompts.other_unreachable)
            } else {
                web::twiml(TwiML::new().hangup().to_xml())
            });
        }
        let Some(session) = open_session(&app, &req).await? else {
            return Ok(say_and_hang_up(&app, &app.config.prompts.session_closed));
        };
        let participant = web::query_param(&req, "participant").unwrap_or_default();
        let Some(other) = session.other(&participant).filter(|_| session.participant(&participant).is_some()) else {
            return Err(WebhookError::MissingParameter("participant"));
        };
        let now = app.now();
        let base = &app.config.public_base_url;
        let Some(me) = session.participant(&participant) else {
            return Err(WebhookError::MissingParameter("participant"));
        };
        let whisper = session.record || other.announcement().is_some();
        let number = Number::new(other.identifier.as_str())
            .status_callback(status_callback_url(&app, &session.sid, &other.sid))
            .status_callback_event(&["initiated", "ringing", "answered", "completed"])
            .url(whisper.then(|| whisper_url(&app, &session.sid, &other.sid)));
        // The first party hears their announcement and the recording notice before the
        // other is dialled; the other hears theirs on answering (the `<Number url>`).
        let twiml = on_answer(&app, &session, me).dial(
            Dial::new()
                .record(dial_recording(&app, &session.sid, session.record))
                .number(number)
                .caller_id(other.proxy_identifier.as_str())
                .time_limit(limit_param(&req, &session, now) as u32)
                .timeout(app.config.dial_timeout_seconds)
                .answer_on_bridge(true)
                .action(format!("{base}/twilio/voice/bridge?session={}&participant={participant}&stage=after-dial", session.sid)),
        );
        crate::domain::vcall::start_the_clock_of(app.ctx(), &session).await?;
        tracing::info!(session = %session.sid, to = %other.identifier.masked(), "bridging V-call");
        Ok(web::twiml(twiml.to_xml()))
    })
    .await
}

/// `POST /twilio/voice/conference`: a participant of a conference V-call answered; join the
/// session's room. `?wait=1` serves the music-less wait message played until the other joins.
pub async fn conference_twiml(app: Arc<App>, req: Request) -> Response<Body> {
    webhook(app, req, |app, _form, req| async move {
        if web::query_param(&req, "wait").is_some() {
            return Ok(web::twiml(
                TwiML::new()
                    .say(say(&app, &app.config.prompts.conference_wait))
                    .pause(10)
                    .to_xml(),
            ));
        }
        let Some(session) = open_session(&app, &req).await? else {
            return Ok(say_and_hang_up(&app, &app.config.prompts.session_closed));
        };
        let participant = web::query_param(&req, "participant").unwrap_or_default();
        let Some(me) = session
            .participant(&participant)
            .filter(|p| p.sid == participant)
        else {
            return Err(WebhookError::MissingParameter("participant"));
        };
        let limit = limit_param(&req, &session, app.now());
        // Their announcement and the recording notice first, then the room.
        Ok(web::twiml(
            on_answer(&app, &session, me)
                .then(join_room(
                    &app,
                    &session.sid,
                    &participant,
                    safety_limit(&session, limit),
                    room_recording(&app, &session.sid, session.record),
                ))
                .to_xml(),
        ))
    })
    .await
}

/// `<Dial><Conference>` into the session's room. No leg ends the room when it leaves
/// (`endConferenceOnExit="false"`): the warning flow takes legs out and back in.
pub fn join_room(
    app: &App,
    session_sid: &str,
    participant_sid: &str,
    limit: u64,
    recording: Option<Recording>,
) -> TwiML {
    TwiML::new().dial(room_dial_recorded(
        app,
        session_sid,
        participant_sid,
        limit,
        recording,
    ))
}

pub fn room_dial(app: &App, session_sid: &str, participant_sid: &str, limit: u64) -> Dial {
    room_dial_recorded(app, session_sid, participant_sid, limit, None)
}

/// [`room_dial`], recording the room from its start when `recording` says so (a leg
/// rejoining a room already recorded needs nothing more: the recording is the room's).
fn room_dial_recorded(
    app: &App,
    session_sid: &str,
    participant_sid: &str,
    limit: u64,
    recording: Option<Recording>,
) -> Dial {
    let base = &app.config.public_base_url;
    let conference = Conference::new(crate::domain::vcall::room_name(session_sid))
        .beep(false)
        .start_conference_on_enter(true)
        .end_conference_on_exit(false)
        .wait_url(format!(
            "{base}/twilio/voice/conference?session={session_sid}&wait=1"
        ))
        .wait_method(Method::Post)
        .status_callback(format!(
            "{base}/twilio/voice/conference-status?session={session_sid}"
        ))
        .status_callback_event(&["start", "end", "join", "leave", "hold", "announcement"])
        .participant_label(participant_sid)
        .record(recording);
    Dial::new().conference(conference).time_limit(limit as u32)
}

/// `POST /twilio/voice/conference-status`: keeps the ConferenceSid and each leg's CallSid on
/// the session (tolerating repeats and any order), and ends the room when a party hangs up so
/// the other is not left alone in silence.
pub async fn conference_status(app: Arc<App>, req: Request) -> Response<Body> {
    webhook(app, req, |app, form, req| async move {
        let empty = || web::twiml(TwiML::new().to_xml());
        let Some(session_sid) = web::query_param(&req, "session").filter(|s| ids::is_sid(ids::SESSION, s)) else {
            return Ok(empty());
        };
        let conference_sid = required(&form, "ConferenceSid")?;
        let room = form.get("FriendlyName").unwrap_or_default();
        let event = form.get("StatusCallbackEvent").unwrap_or_default();
        let label = form.get("ParticipantLabel").filter(|l| ids::is_sid(ids::PARTICIPANT, l));
        let call_sid = form.get("CallSid").filter(|c| !c.is_empty());
        let now = app.now();
        let retention = app.config.retention_seconds();
        match event {
            "conference-start" => {
                app.store.record_conference(&session_sid, conference_sid, room, None, now, retention).await?;
                crate::domain::vcall::start_the_clock(app.ctx(), &session_sid).await?;
            }
            "participant-join" => {
                let leg = label.zip(call_sid);
                app.store.record_conference(&session_sid, conference_sid, room, leg, now, retention).await?;
            }
            "participant-leave" => {
                if let Some(call_sid) = call_sid {
                    let leave = legs::Leave {
                        call_sid,
                        label,
                        reason: form.get("ReasonParticipantLeft"),
                        reported: reported_call_end(&form),
                    };
                    legs::left_room(app.ctx(), &session_sid, conference_sid, leave).await;
                }
            }
            "conference-end" => {
                let reason = form.get("ReasonConferenceEnded").unwrap_or("ended");
                legs::room_ended(app.ctx(), &session_sid, conference_sid, reason).await?;
            }
            _ => {}
        }
        tracing::info!(session = %session_sid, conference = conference_sid, event, "conference event");
        Ok(empty())
    })
    .await
}

/// Whether the call that left the room is over, from the callback's own
/// `ParticipantCallStatus` (sent on `participant-leave` since 2023-10-25: `completed`,
/// `busy`, `no-answer`, `failed`, `canceled` once the call is over, `in-progress` when it
/// goes on elsewhere); `None` for older callbacks, or a status this code does not know.
fn reported_call_end(form: &TwilioForm) -> Option<bool> {
    form.get("ParticipantCallStatus")
        .and_then(CallStatus::parse)
        .map(CallStatus::is_final)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> TwilioForm {
        TwilioForm(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_leave_callback_says_itself_whether_the_call_is_over() {
        for (status, over) in [
            ("completed", true),
            ("busy", true),
            ("no-answer", true),
            ("failed", true),
            ("canceled", true),
            ("in-progress", false),
        ] {
            let leave = form(&[
                ("ParticipantCallStatus", status),
                ("ReasonParticipantLeft", "participant_hung_up"),
            ]);
            assert_eq!(reported_call_end(&leave), Some(over), "{status}");
        }
        let older = form(&[("StatusCallbackEvent", "participant-leave")]);
        assert_eq!(reported_call_end(&older), None, "before 2023-10-25");
        let unknown = form(&[("ParticipantCallStatus", "teleported")]);
        assert_eq!(reported_call_end(&unknown), None);
    }
}
