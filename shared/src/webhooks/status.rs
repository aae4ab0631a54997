//! `call-status`: Twilio's status callbacks for every call leg.

use super::*;
use crate::domain::legs;

/// `POST /twilio/voice/status`: one status callback of one call leg. Updates the leg's
/// interaction (status, duration, cost) and the session's activity in one request when the
/// URL names the session; the caller's own leg is found through its call reference.
pub async fn call_status(app: Arc<App>, req: Request) -> Response<Body> {
    webhook(app, req, |app, form, req| async move {
        let empty = || web::twiml(TwiML::new().to_xml());
        let call_sid = required(&form, "CallSid")?;
        let Some(status) = form.get("CallStatus").and_then(CallStatus::parse) else {
            tracing::warn!(call = call_sid, status = ?form.get("CallStatus"), "unknown call status ignored");
            return Ok(empty());
        };
        let session_sid = match web::query_param(&req, "session").filter(|s| ids::is_sid(ids::SESSION, s)) {
            Some(sid) => sid,
            None => match app.store.session_of_call(call_sid).await? {
                Some(sid) => sid,
                None => {
                    tracing::info!(call = call_sid, "status callback for a call outside any session");
                    return Ok(empty());
                }
            },
        };
        let in_room = status.is_final() && went_through_room(&app, &form, &req, &session_sid).await?;
        let leg = leg_from_callback(&app, &form, &session_sid, web::query_param(&req, "participant"), status, in_room, app.now());
        let outcome = app.store.record_leg(&leg, app.now(), app.config.retention_seconds()).await;
        match outcome {
            Ok(Recorded::Stale) => tracing::debug!(call = call_sid, status = status.as_str(), "late or repeated callback"),
            Ok(r) => {
                tracing::info!(
                    session = %session_sid, call = call_sid, status = status.as_str(),
                    duration = leg.duration, cost_jpy = %leg.cost(), session_closed = (r == Recorded::SessionClosed),
                    "call leg recorded"
                );
                // The store lets a leg's final status through once, so each leg counts once.
                if status.is_final() {
                    app.metrics().emit(leg_metrics(&leg));
                }
            }
            // The session does not exist: nothing to attach the leg to.
            Err(crate::store::StoreError::ConditionFailed) => {
                tracing::warn!(session = %session_sid, call = call_sid, "status callback names an unknown session");
            }
            Err(e) => return Err(e.into()),
        }
        let ended = legs::EndedLeg { call_sid, twilio_direction: leg.twilio_direction, status };
        legs::leg_ended(app.ctx(), &session_sid, ended).await?;
        Ok(empty())
    })
    .await
}

/// Whether a leg spent its life in the session's conference room, so its minutes also carry
/// the conference fee: legs Tsunagu called into a room say so in their callback URL
/// (`room=1`); a caller's own inbound leg went to the room when the session is timed.
async fn went_through_room(
    app: &App,
    form: &TwilioForm,
    req: &Request,
    session_sid: &str,
) -> Result<bool, WebhookError> {
    if web::query_param(req, "room").as_deref() == Some("1") {
        return Ok(true);
    }
    if TwilioDirection::parse(form.get("Direction")) != TwilioDirection::Inbound {
        return Ok(false);
    }
    Ok(app
        .store
        .get_session(session_sid)
        .await?
        .is_some_and(|s| s.is_timed()))
}

/// A leg that ended: `Legs`, its billed minutes and cost, and `Calls` by outcome when the
/// leg is a call of its own (an inbound call, or one the platform placed) rather than the
/// leg a caller's `<Dial>` rang.
pub fn leg_metrics(leg: &Interaction) -> Document {
    let doc = Document::new()
        .metric(name::LEGS, Unit::Count, 1.0)
        .metric(name::BILLED_MINUTES, Unit::Count, leg.billed_minutes as f64)
        .metric(
            name::COST_YEN,
            Unit::None,
            leg.cost_milli_yen as f64 / 1000.0,
        )
        .property("session", leg.session_sid.as_str())
        .property("call", leg.call_sid.as_str())
        .property("direction", leg.twilio_direction.as_str());
    if leg.twilio_direction == TwilioDirection::OutboundDial {
        return doc;
    }
    doc.metric_by(name::CALLS, Unit::Count, 1.0, &[&["outcome"]])
        .dimension("outcome", leg.status.as_str())
}

fn leg_from_callback(
    app: &App,
    form: &TwilioForm,
    session_sid: &str,
    participant: Option<String>,
    status: CallStatus,
    in_room: bool,
    now: i64,
) -> Interaction {
    let twilio_direction = TwilioDirection::parse(form.get("Direction"));
    let direction = if twilio_direction == TwilioDirection::Inbound {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    let parse = |name| form.get(name).and_then(|v| PhoneNumber::parse(v).ok());
    let (from, to) = (parse("From"), parse("To"));
    let mask = |n: &Option<PhoneNumber>, name: &str| match n {
        Some(n) => n.masked().to_string(),
        None => {
            form.get(name)
                .unwrap_or("")
                .chars()
                .take(4)
                .collect::<String>()
                + "…"
        }
    };
    let callee_class = to
        .as_ref()
        .map(PhoneNumber::class)
        .unwrap_or(crate::phone::NumberClass::Other);
    let duration = if status.is_final() {
        form.get("CallDuration")
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(0)
    } else {
        0
    };
    let cost = if in_room {
        pricing::room_leg_cost(&app.config.rates, direction, callee_class, duration)
    } else {
        pricing::leg_cost(&app.config.rates, direction, callee_class, duration)
    };
    Interaction {
        sid: ids::new_sid(ids::INTERACTION),
        session_sid: session_sid.to_owned(),
        call_sid: form.get("CallSid").unwrap_or_default().to_owned(),
        parent_call_sid: form
            .get("ParentCallSid")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        direction,
        twilio_direction,
        from_masked: mask(&from, "From"),
        to_masked: mask(&to, "To"),
        from_participant_sid: None,
        to_participant_sid: participant.filter(|p| ids::is_sid(ids::PARTICIPANT, p)),
        callee_class,
        status,
        duration,
        billed_minutes: pricing::billed_minutes(duration),
        cost_milli_yen: cost.milli(),
        date_created: now,
        date_updated: now,
        date_ended: status.is_final().then_some(now),
    }
}
