//! `extension`: the press-1-to-extend dialogue (`/twilio/voice/extension/{prompt,answer,hold}`).

use super::*;

fn minutes_left(seconds: i64) -> i64 {
    (seconds.max(0) + 59) / 60
}

/// `POST /twilio/voice/extension/{prompt,answer,hold}`: the deciding party's warning and
/// answer, and the other party's hold message.
pub async fn extension(app: Arc<App>, req: Request) -> Response<Body> {
    let path = web::raw_path(&req);
    let step = path.rsplit('/').next().unwrap_or_default().to_owned();
    webhook(app, req, |app, form, req| async move {
        match step.as_str() {
            "hold" => Ok(web::twiml(
                TwiML::new()
                    .say(say(&app, &app.config.prompts.hold))
                    .pause(20)
                    .to_xml(),
            )),
            "prompt" => extension_prompt(&app, &req).await,
            "answer" => extension_answer(&app, &form, &req).await,
            _ => Err(WebhookError::MissingParameter("extension step")),
        }
    })
    .await
}

async fn extension_prompt(app: &App, req: &Request) -> Result<Response<Body>, WebhookError> {
    let Some(session) = open_session(app, req).await? else {
        return Ok(say_and_hang_up(app, &app.config.prompts.session_closed));
    };
    let now = app.now();
    let deadline = session
        .live_call
        .as_ref()
        .and_then(|l| l.deadline)
        .unwrap_or(now);
    let minutes = minutes_left(deadline - now).to_string();
    let answer = format!(
        "{}/twilio/voice/extension/answer?session={}&deadline={deadline}",
        app.config.public_base_url, session.sid
    );
    if session.extension_count >= session.extension.max_count {
        // Nothing to offer: say the time left and go back to the call.
        let text = app
            .config
            .prompts
            .warning_final
            .replace("{minutes}", &minutes);
        let back = format!("{answer}&offer=none");
        return Ok(web::twiml(
            TwiML::new().say(say(app, &text)).redirect(back).to_xml(),
        ));
    }
    let text = app.config.prompts.warning.replace("{minutes}", &minutes);
    let gather = Gather::new()
        .input("dtmf")
        .num_digits(1)
        .timeout(8)
        .action(answer)
        .method(Method::Post)
        .action_on_empty_result(true)
        .say(say(app, &text));
    Ok(web::twiml(TwiML::new().gather(gather).to_xml()))
}

async fn extension_answer(
    app: &App,
    form: &TwilioForm,
    req: &Request,
) -> Result<Response<Body>, WebhookError> {
    let Some(session) = open_session(app, req).await? else {
        return Ok(say_and_hang_up(app, &app.config.prompts.session_closed));
    };
    let Some(decider) = session.decider().cloned() else {
        return Err(WebhookError::MissingParameter("participant"));
    };
    let now = app.now();
    let warned = web::query_param(req, "deadline").and_then(|d| d.parse::<i64>().ok());
    let current = session.live_call.as_ref().and_then(|l| l.deadline);
    let extension = session.extension;
    let pressed_one = form.get("Digits") == Some("1");
    let mut deadline = current.unwrap_or(now);
    let offered = web::query_param(req, "offer").as_deref() != Some("none");
    let mut extended = false;
    let text = if !offered {
        String::new()
    } else if !pressed_one {
        app.config.prompts.not_extended.clone()
    } else if session.extension_count >= extension.max_count
        || current.is_none()
        || warned != current
    {
        app.config.prompts.no_more_extensions.clone()
    } else {
        let to = deadline + extension.seconds as i64;
        let due = to - session.warning_lead as i64;
        match app
            .store
            .extend_live_call(
                &session,
                deadline,
                to,
                due.max(now + 1),
                extension.max_count,
                now,
            )
            .await
        {
            Ok(()) => {
                deadline = to;
                extended = true;
                tracing::info!(session = %session.sid, deadline, "call extended");
                app.config
                    .prompts
                    .extended
                    .replace("{extension}", &(extension.seconds / 60).to_string())
                    .replace("{minutes}", &minutes_left(to - now).to_string())
            }
            Err(crate::store::StoreError::ConditionFailed) => {
                // A close (or another answer) got there first: the close wins.
                if open_session(app, req).await?.is_none() {
                    return Ok(say_and_hang_up(app, &app.config.prompts.session_closed));
                }
                app.config.prompts.no_more_extensions.clone()
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Back to the call: the other party comes off hold, the deciding party rejoins the room.
    // Twilio is asked side by side, so a slow Twilio costs the caller one wait, not several.
    let off_hold = async {
        if let Some(conference) = &session.current_conference
            && let Some(record) = app.store.get_conference(&session.sid, conference).await?
        {
            let others = record
                .legs
                .iter()
                .filter(|(label, _)| **label != decider.sid);
            futures::future::join_all(others.map(|(_, call_sid)| async move {
                if let Err(e) = app.twilio.hold(&app.secrets, conference, call_sid, None).await {
                    tracing::error!(call = %call_sid, error = %e, "could not take the other party off hold");
                }
            }))
            .await;
        }
        Ok::<_, WebhookError>(())
    };
    let limits = async {
        if extended {
            extend_time_limits(app, &session, deadline).await;
        }
    };
    futures::future::join(off_hold, limits).await.0?;
    let remaining = (deadline - now).max(1) as u64;
    let rejoin = room_dial(
        app,
        &session.sid,
        &decider.sid,
        safety_limit(&session, remaining),
    );
    let answer = if text.is_empty() {
        TwiML::new()
    } else {
        TwiML::new().say(say(app, &text))
    };
    Ok(web::twiml(answer.dial(rejoin).to_xml()))
}

/// The live legs' Twilio `TimeLimit`, moved past the new deadline. The sweep ends the call
/// at the deadline itself; this limit is the safety net should the sweep not run. It counts
/// from each leg's creation, so it never cuts a call early whichever way Twilio counts.
async fn extend_time_limits(app: &App, session: &Session, deadline: i64) {
    let Ok(legs) = app.store.list_interactions(&session.sid).await else {
        return;
    };
    let live = legs
        .iter()
        .filter(|l| !l.status.is_final() && l.parent_call_sid.is_none());
    futures::future::join_all(live.map(|leg| async move {
        let limit = (deadline - leg.date_created).max(60) as u64 + 120;
        if let Err(e) = app
            .twilio
            .set_time_limit(&app.secrets, &leg.call_sid, limit.min(MAX_CALL_SECONDS))
            .await
        {
            tracing::warn!(call = %leg.call_sid, error = %e, "could not move the call's TimeLimit");
        }
    }))
    .await;
}

/// A conference leg's `<Dial timeLimit>`: past every possible extension, as a safety net
/// only — the sweep ends timed calls exactly, and a leg that rejoins gets a new limit.
pub fn safety_limit(session: &Session, limit: u64) -> u64 {
    let extensions = session.extension.seconds
        * u64::from(
            session
                .extension
                .max_count
                .saturating_sub(session.extension_count),
        );
    (limit + extensions + 120).min(MAX_CALL_SECONDS)
}
