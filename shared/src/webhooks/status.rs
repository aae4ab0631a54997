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
        let named = web::query_param(&req, "session").filter(|s| ids::is_sid(ids::SESSION, s));
        let (session_sid, first_seen) = match named {
            Some(sid) => (sid, None),
            None => match session_of_callers_leg(&app, &form, call_sid).await? {
                Some(found) => found,
                None => {
                    tracing::info!(call = call_sid, "status callback for a call outside any session");
                    return Ok(empty());
                }
            },
        };
        // A caller's own leg is logged here, at its final callback, whole: its participants
        // come from the session, which also says whether the call went through the room.
        let caller = if TwilioDirection::parse(form.get("Direction")) == TwilioDirection::Inbound && status.is_final() {
            app.store.get_session(&session_sid).await?
        } else {
            None
        };
        let in_room = status.is_final() && (web::query_param(&req, "room").as_deref() == Some("1") || caller.as_ref().is_some_and(Session::is_timed));
        let mut leg = leg_from_callback(&app, &form, &session_sid, web::query_param(&req, "participant"), status, in_room, app.now());
        if let Some(session) = &caller {
            let from = form.get("From").and_then(|f| PhoneNumber::parse(f).ok());
            if let Some(me) = session.participants.iter().find(|p| Some(&p.identifier) == from.as_ref()) {
                leg.from_participant_sid = Some(me.sid.clone());
                leg.to_participant_sid = session.other(&me.sid).map(|o| o.sid.clone());
            }
        }
        if let Some(t) = first_seen {
            leg.date_created = t;
        }
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
        let ended = legs::EndedLeg { call_sid, twilio_direction: leg.twilio_direction, status, session: caller.as_ref() };
        legs::leg_ended(app.ctx(), &session_sid, ended).await?;
        Ok(empty())
    })
    .await
}

/// The session of a caller's own leg, whose callbacks (the number's "Call status changes")
/// cannot name it, and when the call was first seen: its call reference, written with the
/// callbacks of the leg its `<Dial>` rang (or by `inbound-call` for a timed call); else the
/// route that admitted it, while the session is open (a call whose `<Dial>` rang nobody).
async fn session_of_callers_leg(
    app: &App,
    form: &TwilioForm,
    call_sid: &str,
) -> Result<Option<(String, Option<i64>)>, WebhookError> {
    if let Some(r) = app.store.call_ref(call_sid).await? {
        return Ok(Some((r.session_sid, r.date_created)));
    }
    let parse = |name| form.get(name).and_then(|v| PhoneNumber::parse(v).ok());
    let (Some(to), Some(from)) = (parse("To"), parse("From")) else {
        return Ok(None);
    };
    Ok(app
        .store
        .get_route(&to, &from)
        .await?
        .filter(|r| r.last_call_sid.as_deref() == Some(call_sid))
        .map(|r| (r.session_sid, r.last_call_at)))
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
        recording: Default::default(),
    }
}
