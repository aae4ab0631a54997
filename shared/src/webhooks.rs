//! Twilio's webhooks (`/twilio/voice/...`, public). Every request is checked against
//! `X-Twilio-Signature` first (403 and nothing else on failure); after that, whatever goes
//! wrong, Twilio gets valid TwiML — a short Japanese apology — never a 5xx.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::http as web;
use crate::ids;
use crate::model::{CallStatus, Interaction, Session};
use crate::phone::PhoneNumber;
use crate::pricing::{self, Direction};
use crate::sessions::MAX_CALL_SECONDS;
use crate::signature;
use crate::store::{Recorded, Route};
use crate::twiml::{Conference, Dial, Gather, Method, Number, Response as TwiML, Say};

/// Form parameters of a request whose signature checked out.
#[derive(Debug)]
pub struct TwilioForm(Vec<(String, String)>);

impl TwilioForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// Why a webhook request was not processed.
#[derive(Debug)]
pub enum Rejected {
    /// Missing or wrong signature: answer 403 and do nothing.
    Forbidden,
    /// The auth token could not be read, so nothing can be trusted: apologise to the caller.
    Unverifiable(String),
}

/// Checks the request's signature over `PUBLIC_BASE_URL` + raw path + raw query and its form
/// parameters. On a mismatch the secret is fetched once more, in case the token was rotated.
pub async fn verify(app: &App, req: &Request) -> Result<TwilioForm, Rejected> {
    let Some(header) = web::header(req, "x-twilio-signature") else {
        tracing::warn!(path = %web::raw_path(req), "webhook without X-Twilio-Signature");
        return Err(Rejected::Forbidden);
    };
    let params = signature::parse_form(web::body_bytes(req));
    let url = app
        .config
        .public_url(&web::raw_path(req), web::raw_query(req));
    let creds = app
        .secrets
        .get()
        .await
        .map_err(|e| Rejected::Unverifiable(e.to_string()))?;
    if signature::is_valid(&creds.auth_token, &url, &params, header) {
        return Ok(TwilioForm(params));
    }
    match app.secrets.refresh_after_failure().await {
        Ok(Some(fresh)) if signature::is_valid(&fresh.auth_token, &url, &params, header) => {
            tracing::info!("auth token rotated; new token accepted");
            Ok(TwilioForm(params))
        }
        Ok(_) => {
            tracing::warn!(path = %web::raw_path(req), "webhook with a wrong X-Twilio-Signature");
            Err(Rejected::Forbidden)
        }
        Err(e) => Err(Rejected::Unverifiable(e.to_string())),
    }
}

fn forbidden() -> Response<Body> {
    web::with_type(
        StatusCode::FORBIDDEN,
        "text/plain; charset=utf-8",
        "forbidden".into(),
    )
}

fn say(app: &App, text: &str) -> Say {
    Say::new(text)
        .language(app.config.prompts.language.clone())
        .voice(app.config.prompts.voice.clone())
}

/// A spoken message and the end of the call.
fn say_and_hang_up(app: &App, text: &str) -> Response<Body> {
    web::twiml(TwiML::new().say(say(app, text)).hangup().to_xml())
}

fn apology(app: &App) -> Response<Body> {
    say_and_hang_up(app, &app.config.prompts.apology)
}

/// Runs a webhook: signature first, then the handler; every failure after the signature
/// check becomes the apology TwiML, logged.
async fn webhook<F, Fut>(app: Arc<App>, req: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Arc<App>, TwilioForm, Request) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Body>, WebhookError>>,
{
    let form = match verify(&app, &req).await {
        Ok(form) => form,
        Err(Rejected::Forbidden) => return forbidden(),
        Err(Rejected::Unverifiable(why)) => {
            tracing::error!(error = %why, "cannot verify webhook: credentials unavailable");
            return apology(&app);
        }
    };
    match handler(app.clone(), form, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "webhook failed; answering with an apology");
            apology(&app)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("Twilio sent no {0}")]
    MissingParameter(&'static str),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn required<'a>(form: &'a TwilioForm, name: &'static str) -> Result<&'a str, WebhookError> {
    form.get(name)
        .filter(|v| !v.is_empty())
        .ok_or(WebhookError::MissingParameter(name))
}

// ---- inbound-call -------------------------------------------------------------------

/// `POST /twilio/voice/inbound`: a participant called a proxy number. One read finds the
/// route; one conditional write logs the leg while the session is still open; the answer
/// dials the other participant with their own proxy number as caller ID.
pub async fn inbound_call(app: Arc<App>, req: Request) -> Response<Body> {
    webhook(app, req, |app, form, _req| async move {
        let call_sid = required(&form, "CallSid")?;
        let to = PhoneNumber::parse(required(&form, "To")?).ok();
        // Withheld caller IDs ("anonymous", "+266696687") parse as nothing: no route.
        let from = form.get("From").and_then(|f| PhoneNumber::parse(f).ok());
        let (Some(from), Some(to)) = (from, to) else {
            return Ok(out_of_session(&app, &form).await);
        };
        let Some(route) = app.store.get_route(&to, &from).await? else {
            tracing::info!(from = %from.masked(), to = %to.masked(), call = call_sid, "caller has no open session on this number");
            return Ok(out_of_session(&app, &form).await);
        };
        let now = app.now();
        if route.date_expiry.is_some_and(|t| t <= now) {
            return Ok(say_and_hang_up(&app, &app.config.prompts.session_closed));
        }
        if intercepted(&app, &route, call_sid, &from).await {
            return Ok(say_and_hang_up(&app, &app.config.prompts.blocked));
        }
        let leg = Interaction {
            sid: ids::new_sid(ids::INTERACTION),
            session_sid: route.session_sid.clone(),
            call_sid: call_sid.to_owned(),
            parent_call_sid: None,
            direction: Direction::Inbound,
            twilio_direction: "inbound".into(),
            from_masked: from.masked().to_string(),
            to_masked: to.masked().to_string(),
            from_participant_sid: Some(route.participant_sid.clone()),
            to_participant_sid: Some(route.other_participant_sid.clone()),
            callee_class: to.class(),
            status: CallStatus::InProgress,
            duration: 0,
            billed_minutes: 0,
            cost_milli_yen: 0,
            date_created: now,
            date_updated: now,
            date_ended: None,
        };
        if !app.store.start_inbound_leg(&leg, now, app.config.retention_seconds()).await? {
            tracing::info!(session = %route.session_sid, call = call_sid, "session closed or expired; call refused");
            return Ok(say_and_hang_up(&app, &app.config.prompts.session_closed));
        }
        tracing::info!(session = %route.session_sid, call = call_sid, from = %from.masked(), to = %route.other_identifier.masked(), "connecting masked call");
        if route.timed {
            return conference_the_other_party(&app, &route, now).await;
        }
        Ok(web::twiml(dial_other_party(&app, &route, now).to_xml()))
    })
    .await
}

/// A session with a time limit and a warning runs its calls through a conference, so the
/// warning can be spoken: the caller joins the session's room and Twilio calls the other
/// participant into it, from the proxy number they know.
async fn conference_the_other_party(
    app: &App,
    route: &Route,
    now: i64,
) -> Result<Response<Body>, WebhookError> {
    let limit = time_limit(route, now);
    match app
        .store
        .begin_live_call(&route.session_sid, "conference", limit, false)
        .await
    {
        Ok(()) => {}
        Err(crate::store::StoreError::ConditionFailed) => {
            return Ok(say_and_hang_up(app, &app.config.prompts.session_closed));
        }
        Err(e) => return Err(e.into()),
    }
    let other = crate::model::Participant {
        sid: route.other_participant_sid.clone(),
        identifier: route.other_identifier.clone(),
        proxy_identifier: route.other_proxy.clone(),
        friendly_name: None,
    };
    if let Err(e) = crate::vcall::ring(
        app,
        &route.session_sid,
        crate::vcall::Mode::Conference,
        &other,
        limit,
    )
    .await
    {
        tracing::error!(session = %route.session_sid, error = %e, "could not call the other party into the room");
        return Ok(apology(app));
    }
    // The caller's own leg is limited by the sweep at the deadline; Twilio's four hours
    // stay as the outer bound, since an extension may move the deadline.
    Ok(web::twiml(
        join_room(
            app,
            &route.session_sid,
            &route.participant_sid,
            MAX_CALL_SECONDS,
        )
        .to_xml(),
    ))
}

/// The seconds a call may last: the session's `call_time_limit`, cut to what is left before
/// `date_expiry`, within Twilio's four hours.
pub fn time_limit(route: &Route, now: i64) -> u64 {
    let until_expiry = route.date_expiry.map(|t| (t - now).max(1) as u64);
    [route.call_time_limit, until_expiry, Some(MAX_CALL_SECONDS)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(MAX_CALL_SECONDS)
}

fn status_callback_url(app: &App, session_sid: &str, participant_sid: &str) -> String {
    format!(
        "{}/twilio/voice/status?session={session_sid}&participant={participant_sid}",
        app.config.public_base_url
    )
}

fn dial_other_party(app: &App, route: &Route, now: i64) -> TwiML {
    let number = Number::new(route.other_identifier.as_str())
        .status_callback(status_callback_url(
            app,
            &route.session_sid,
            &route.other_participant_sid,
        ))
        .status_callback_event(&["initiated", "ringing", "answered", "completed"]);
    TwiML::new().dial(
        Dial::new()
            .number(number)
            .caller_id(route.other_proxy.as_str())
            .time_limit(time_limit(route, now) as u32)
            .timeout(app.config.dial_timeout_seconds)
            // The caller hears ringing, and is billed, only once the other party answers.
            .answer_on_bridge(true)
            .ring_tone("jp"),
    )
}

/// Asks the platform's intercept URL whether this call may go ahead; HTTP 403 blocks it, as
/// in Twilio Proxy. Any other answer, or none within the timeout, lets the call through: a
/// slow platform must not silence its users.
async fn intercepted(app: &App, route: &Route, call_sid: &str, from: &PhoneNumber) -> bool {
    let Some(url) = &app.config.intercept_callback_url else {
        return false;
    };
    let form = [
        ("session_sid", route.session_sid.as_str()),
        ("inbound_participant_sid", route.participant_sid.as_str()),
        (
            "outbound_participant_sid",
            route.other_participant_sid.as_str(),
        ),
        ("call_sid", call_sid),
        ("interaction_type", "voice"),
    ];
    match app
        .http
        .post(url)
        .timeout(Duration::from_secs(3))
        .form(&form)
        .send()
        .await
    {
        Ok(r) if r.status() == StatusCode::FORBIDDEN => {
            tracing::info!(session = %route.session_sid, call = call_sid, from = %from.masked(), "intercept callback blocked the call");
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "intercept callback failed; letting the call through");
            false
        }
    }
}

/// A caller without an open session: the platform's out-of-session URL may answer with its
/// own TwiML; otherwise a short message and the end of the call.
async fn out_of_session(app: &App, form: &TwilioForm) -> Response<Body> {
    if let Some(url) = &app.config.out_of_session_callback_url {
        let answer = app
            .http
            .post(url)
            .timeout(Duration::from_secs(3))
            .form(form.pairs())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => match r.text().await {
                Ok(body) if body.contains("<Response") => return web::twiml(body),
                _ => tracing::warn!("out-of-session callback answered without TwiML"),
            },
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                "out-of-session callback failed"
            ),
            Err(e) => tracing::warn!(error = %e, "out-of-session callback unreachable"),
        }
    }
    say_and_hang_up(app, &app.config.prompts.no_session)
}

// ---- call-status --------------------------------------------------------------------

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
        let leg = leg_from_callback(&app, &form, &session_sid, web::query_param(&req, "participant"), status, app.now());
        let outcome = app.store.record_leg(&leg, app.now(), app.config.retention_seconds()).await;
        match outcome {
            Ok(Recorded::Stale) => tracing::debug!(call = call_sid, status = status.as_str(), "late or repeated callback"),
            Ok(r) => tracing::info!(
                session = %session_sid, call = call_sid, status = status.as_str(),
                duration = leg.duration, cost_jpy = %leg.cost(), session_closed = (r == Recorded::SessionClosed),
                "call leg recorded"
            ),
            // The session does not exist: nothing to attach the leg to.
            Err(crate::store::StoreError::ConditionFailed) => {
                tracing::warn!(session = %session_sid, call = call_sid, "status callback names an unknown session");
            }
            Err(e) => return Err(e.into()),
        }
        if leg.twilio_direction == "outbound-api" && status.is_final() && status != CallStatus::Completed {
            release_other_v_call_legs(&app, &session_sid, call_sid).await;
        }
        if status.is_final() && leg.twilio_direction != "outbound-dial" {
            end_room_left_by(&app, &session_sid, call_sid).await?;
        }
        Ok(empty())
    })
    .await
}

/// A conference leg that ends — even outside the room, as during the warning prompt — ends
/// the room, so the other party is never left alone on hold.
async fn end_room_left_by(
    app: &App,
    session_sid: &str,
    call_sid: &str,
) -> Result<(), WebhookError> {
    let Some(conference) = app
        .store
        .get_session(session_sid)
        .await?
        .and_then(|s| s.current_conference)
    else {
        return Ok(());
    };
    let in_room = app
        .store
        .get_conference(session_sid, &conference)
        .await?
        .is_some_and(|c| c.legs.values().any(|leg| leg == call_sid));
    if in_room && let Err(e) = app.twilio.end_conference(&app.secrets, &conference).await {
        tracing::error!(conference = %conference, error = %e, "could not end the conference its party left");
    }
    Ok(())
}

/// A V字発信 party who could not be reached (busy, no answer, failed) must not leave the other
/// waiting in an empty room: the other legs the platform placed hear why, and end.
async fn release_other_v_call_legs(app: &App, session_sid: &str, unreachable_call: &str) {
    let legs = match app.store.list_interactions(session_sid).await {
        Ok(legs) => legs,
        Err(e) => {
            tracing::error!(session = session_sid, error = %e, "could not list the V-call's other legs");
            return;
        }
    };
    let message = TwiML::new()
        .say(say(app, &app.config.prompts.other_unreachable))
        .hangup()
        .to_xml();
    for other in legs.iter().filter(|l| {
        l.twilio_direction == "outbound-api"
            && !l.status.is_final()
            && l.call_sid != unreachable_call
    }) {
        if let Err(e) = app
            .twilio
            .play_and_end(&app.secrets, &other.call_sid, &message)
            .await
        {
            tracing::error!(call = %other.call_sid, error = %e, "could not release the other V-call leg");
        }
    }
}

fn leg_from_callback(
    app: &App,
    form: &TwilioForm,
    session_sid: &str,
    participant: Option<String>,
    status: CallStatus,
    now: i64,
) -> Interaction {
    let twilio_direction = form.get("Direction").unwrap_or("outbound-dial").to_owned();
    let direction = if twilio_direction == "inbound" {
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
    let cost = pricing::leg_cost(&app.config.rates, direction, callee_class, duration);
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

// ---- V字発信: bridge-twiml, conference-twiml, conference-status ---------------------

/// The session named by a webhook URL (`?session=`), if it still routes calls.
async fn open_session(app: &App, req: &Request) -> Result<Option<Session>, WebhookError> {
    let Some(sid) = web::query_param(req, "session").filter(|s| ids::is_sid(ids::SESSION, s))
    else {
        return Ok(None);
    };
    let now = app.now();
    Ok(app
        .store
        .get_session(&sid)
        .await?
        .filter(|s| s.status.is_open() && s.date_expiry.is_none_or(|t| t > now)))
}

fn limit_param(req: &Request, session: &Session, now: i64) -> u64 {
    let requested = web::query_param(req, "limit").and_then(|l| l.parse().ok());
    crate::vcall::call_limit(session, requested, now)
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
        let number = Number::new(other.identifier.as_str())
            .status_callback(status_callback_url(&app, &session.sid, &other.sid))
            .status_callback_event(&["initiated", "ringing", "answered", "completed"]);
        let twiml = TwiML::new().dial(
            Dial::new()
                .number(number)
                .caller_id(other.proxy_identifier.as_str())
                .time_limit(limit_param(&req, &session, now) as u32)
                .timeout(app.config.dial_timeout_seconds)
                .answer_on_bridge(true)
                .action(format!("{base}/twilio/voice/bridge?session={}&participant={participant}&stage=after-dial", session.sid)),
        );
        start_the_clock(&app, &session.sid, now).await?;
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
        if session.participant(&participant).is_none() {
            return Err(WebhookError::MissingParameter("participant"));
        }
        let limit = limit_param(&req, &session, app.now());
        Ok(web::twiml(
            join_room(
                &app,
                &session.sid,
                &participant,
                safety_limit(&session, limit),
            )
            .to_xml(),
        ))
    })
    .await
}

/// `<Dial><Conference>` into the session's room. No leg ends the room when it leaves
/// (`endConferenceOnExit="false"`): the warning flow takes legs out and back in.
pub fn join_room(app: &App, session_sid: &str, participant_sid: &str, limit: u64) -> TwiML {
    TwiML::new().dial(room_dial(app, session_sid, participant_sid, limit))
}

pub fn room_dial(app: &App, session_sid: &str, participant_sid: &str, limit: u64) -> Dial {
    let base = &app.config.public_base_url;
    let conference = Conference::new(crate::vcall::room_name(session_sid))
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
        .participant_label(participant_sid);
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
                start_the_clock(&app, &session_sid, now).await?;
            }
            "participant-join" => {
                let leg = label.zip(call_sid);
                app.store.record_conference(&session_sid, conference_sid, room, leg, now, retention).await?;
            }
            "participant-leave" => {
                if let Some(call_sid) = call_sid {
                    end_if_hung_up(&app, &session_sid, conference_sid, call_sid).await;
                }
            }
            "conference-end" => {
                let reason = form.get("ReasonConferenceEnded").unwrap_or("ended");
                app.store.end_conference(&session_sid, conference_sid, reason, now).await?;
                if let Some(session) = app.store.get_session(&session_sid).await? {
                    let after = Session { live_call: None, ..session };
                    app.store.clear_live_call(&session_sid, crate::expiry::next_due(&after, false, now)).await?;
                }
            }
            _ => {}
        }
        tracing::info!(session = %session_sid, conference = conference_sid, event, "conference event");
        Ok(empty())
    })
    .await
}

/// Both parties are connected: the live call's deadline is now + its limit (never past the
/// session's `date_expiry`), and the sweep is filed for the warning before it.
async fn start_the_clock(app: &App, session_sid: &str, now: i64) -> Result<(), WebhookError> {
    let Some(session) = app.store.get_session(session_sid).await? else {
        return Ok(());
    };
    let Some(live) = session.live_call.as_ref().filter(|l| l.deadline.is_none()) else {
        return Ok(());
    };
    let deadline = session
        .date_expiry
        .map_or(now + live.limit as i64, |e| e.min(now + live.limit as i64));
    let due = (deadline - session.warning_lead as i64).max(now + 1);
    if app
        .store
        .connect_live_call(session_sid, deadline, due)
        .await?
    {
        tracing::info!(
            session = session_sid,
            deadline,
            "call connected; its clock is running"
        );
    }
    Ok(())
}

/// A leg leaves the room when its phone hangs up — and also when the warning flow gives it
/// new TwiML. Only the first leaves the other alone, so ask Twilio which it was.
async fn end_if_hung_up(app: &App, session_sid: &str, conference_sid: &str, call_sid: &str) {
    match app.twilio.call_status(&app.secrets, call_sid).await {
        Ok(status) if CallStatus::parse(&status).is_some_and(CallStatus::is_final) => {
            tracing::info!(
                session = session_sid,
                call = call_sid,
                "a party hung up; ending the conference for the other"
            );
            if let Err(e) = app
                .twilio
                .end_conference(&app.secrets, conference_sid)
                .await
            {
                tracing::error!(conference = conference_sid, error = %e, "could not end the conference");
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(call = call_sid, error = %e, "could not read the call that left the conference")
        }
    }
}

// ---- extension: the press-1 dialogue -------------------------------------------------

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
                tracing::info!(session = %session.sid, deadline, "call extended");
                extend_time_limits(app, &session, to).await;
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
    if let Some(conference) = &session.current_conference
        && let Some(record) = app.store.get_conference(&session.sid, conference).await?
    {
        for (label, call_sid) in &record.legs {
            if *label != decider.sid
                && let Err(e) = app
                    .twilio
                    .hold(&app.secrets, conference, call_sid, None)
                    .await
            {
                tracing::error!(call = %call_sid, error = %e, "could not take the other party off hold");
            }
        }
    }
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
    for leg in legs
        .iter()
        .filter(|l| !l.status.is_final() && l.parent_call_sid.is_none())
    {
        let limit = (deadline - leg.date_created).max(60) as u64 + 120;
        if let Err(e) = app
            .twilio
            .set_time_limit(&app.secrets, &leg.call_sid, limit.min(MAX_CALL_SECONDS))
            .await
        {
            tracing::warn!(call = %leg.call_sid, error = %e, "could not move the call's TimeLimit");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn route(expiry: Option<i64>, limit: Option<u64>) -> Route {
        Route {
            session_sid: "KC1".into(),
            participant_sid: "KP1".into(),
            other_participant_sid: "KP2".into(),
            other_identifier: PhoneNumber::parse("080-9876-5432").unwrap(),
            other_proxy: PhoneNumber::parse("050-3123-4567").unwrap(),
            date_expiry: expiry,
            call_time_limit: limit,
            timed: false,
        }
    }

    #[test]
    fn time_limit_is_the_tightest_bound() {
        assert_eq!(time_limit(&route(None, None), 1000), MAX_CALL_SECONDS);
        assert_eq!(time_limit(&route(None, Some(600)), 1000), 600);
        assert_eq!(time_limit(&route(Some(1300), Some(600)), 1000), 300);
        assert_eq!(
            time_limit(&route(Some(1000), None), 1000),
            1,
            "never zero: Twilio would read it as no limit"
        );
        assert_eq!(
            time_limit(&route(Some(100_000), None), 1000),
            MAX_CALL_SECONDS
        );
    }
}
