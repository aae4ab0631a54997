//! `extension`: the press-1-to-extend dialogue (`/twilio/voice/extension/{prompt,answer,hold}`),
//! and what the other party hears meanwhile: `hold` serves their hold music and the
//! announcements of the time left and of the outcome.

use super::*;
use crate::domain::extension::{self, Answer};

fn minutes_left(seconds: i64) -> i64 {
    (seconds.max(0) + 59) / 60
}

/// `POST /twilio/voice/extension/{prompt,answer,hold}`: the deciding party's warning and
/// answer, and the other party's hold message and announcements.
pub async fn extension(app: Arc<App>, req: Request) -> Response<Body> {
    let path = web::raw_path(&req);
    let step = path.rsplit('/').next().unwrap_or_default().to_owned();
    webhook(app, req, |app, form, req| async move {
        match step.as_str() {
            "hold" => Ok(other_party(&app, &req)),
            "prompt" => extension_prompt(&app, &req).await,
            "answer" => extension_answer(&app, &form, &req).await,
            _ => Err(WebhookError::MissingParameter("extension step")),
        }
    })
    .await
}

/// What the party who is not asked hears, from the (signed) URL's parameters alone:
/// - `deadline` (and `offer=none`), as hold music: the time left and that the other party
///   is being asked (or just the time left), then the plain hold message;
/// - `told=extended&by=N&deadline=D`, `told=ending`, as an announcement: the outcome;
/// - `told=time-left&deadline=D`, as an announcement to the room: the time left;
/// - `told=notice`, as an announcement to the room: the call is about to be cut;
/// - nothing: the plain hold message, a pause, and (Twilio loops hold music) again.
///
/// Hold music and announcements may only Say, Play, Pause or Redirect (Twilio's Conference
/// Participant resource, `HoldUrl` and `AnnounceUrl`).
fn other_party(app: &App, req: &Request) -> Response<Body> {
    let prompts = &app.config.prompts;
    let session = web::query_param(req, "session").unwrap_or_default();
    let number = |name: &str| web::query_param(req, name).and_then(|v| v.parse::<i64>().ok());
    let minutes = || {
        number("deadline")
            .map(|d| minutes_left(d - app.now()).to_string())
            .unwrap_or_default()
    };
    let told = web::query_param(req, "told");
    let text = match told.as_deref() {
        Some("extended") => Some(
            prompts
                .extended
                .replace("{extension}", &number("by").unwrap_or(0).to_string())
                .replace("{minutes}", &minutes()),
        ),
        Some("ending") => Some(prompts.ending.clone()),
        Some("time-left") => Some(prompts.warning_final.replace("{minutes}", &minutes())),
        Some("notice") => Some(prompts.notice.clone()),
        _ => None,
    };
    if let Some(text) = text {
        return web::twiml(TwiML::new().say(say(app, &text)).to_xml());
    }
    if number("deadline").is_some() {
        let asked = web::query_param(req, "offer").as_deref() != Some("none");
        let text = if asked {
            &prompts.warning_other
        } else {
            &prompts.warning_final
        };
        // Said once; the plain hold message is what loops.
        let hold = format!(
            "{}/twilio/voice/extension/hold?session={session}",
            app.config.public_base_url
        );
        return web::twiml(
            TwiML::new()
                .say(say(app, &text.replace("{minutes}", &minutes())))
                .redirect(hold)
                .to_xml(),
        );
    }
    web::twiml(TwiML::new().say(say(app, &prompts.hold)).pause(20).to_xml())
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
    let warned_for = web::query_param(req, "deadline").and_then(|d| d.parse::<i64>().ok());
    let offered = web::query_param(req, "offer").as_deref() != Some("none");
    let pressed_one = form.get("Digits") == Some("1");
    let outcome = extension::answer(
        app.ctx(),
        &session,
        &decider.sid,
        warned_for,
        offered,
        pressed_one,
    )
    .await?;
    if outcome.answer == Answer::Extended {
        app.metrics()
            .emit(Document::new().metric(name::EXTENSIONS, Unit::Count, 1.0));
    }
    let now = app.now();
    let prompts = &app.config.prompts;
    // The same outcome the other party is told as they come off hold.
    let text = match outcome.answer {
        Answer::SessionClosed => return Ok(say_and_hang_up(app, &prompts.session_closed)),
        Answer::NotOffered => String::new(),
        Answer::Declined => format!("{}{}", prompts.not_extended, prompts.ending),
        Answer::NoneLeft => format!("{}{}", prompts.no_more_extensions, prompts.ending),
        Answer::CostLimit => format!("{}{}", prompts.cost_limit, prompts.ending),
        Answer::Extended => prompts
            .extended
            .replace("{extension}", &(session.extension.seconds / 60).to_string())
            .replace(
                "{minutes}",
                &minutes_left(outcome.deadline - now).to_string(),
            ),
    };
    // Back to the call: the deciding party rejoins the room.
    let remaining = (outcome.deadline - now).max(1) as u64;
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
