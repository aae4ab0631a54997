//! The platform-facing HTTP API (`/v1/...`, IAM-authorised in AWS). Each handler turns a
//! request into a response and never fails: every error becomes problem+json.

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::budget::{API_ANSWER, Budget};
use crate::clock;
use crate::domain::vcall::{Mode, PlacedLeg, StartCall};
use crate::domain::{participants, sessions, vcall};
use crate::model::{Interaction, ProxyNumber};
use crate::phone::PhoneNumber;
use crate::pricing::Yen;
use crate::problem::{Code, Problem};
use crate::web;

use crate::store::{Claim, StoreError};

pub mod session_input;
use session_input::{CreateSession, SessionView};

/// How long a completed Idempotency-Key answer is replayed.
const IDEMPOTENCY_KEEP_SECONDS: i64 = 24 * 3600;
/// After this, an in-progress claim is considered abandoned (the Lambda timed out).
const IDEMPOTENCY_IN_PROGRESS_SECONDS: i64 = 60;

/// Runs an API handler within the API's budget: its Twilio calls share [`Budget::api`], and
/// an answer still unfinished at `API_ANSWER` becomes a 504, before Lambda's own timeout
/// would cut it off without one. Part of the request may have been done by then (as with
/// any timeout); the detail says so.
pub async fn bounded<F, Fut>(app: Arc<App>, req: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Arc<App>, Request) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    let path = web::raw_path(&req);
    let app = Arc::new(app.within(Budget::api()));
    match tokio::time::timeout(API_ANSWER, handler(app, req)).await {
        Ok(response) => response,
        Err(_) => {
            let p = Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                Code::Upstream,
                "Timed out",
                "Twilio or the table did not answer in time; part of the request may have been \
                 done: read the resource before retrying",
            );
            tracing::error!(path = %path, "API request out of time");
            web::problem(&p, Some(&path))
        }
    }
}

fn respond(req: &Request, result: Result<Response<Body>, Problem>) -> Response<Body> {
    result.unwrap_or_else(|p| {
        if p.status.is_server_error() {
            tracing::error!(code = p.code_number(), detail = %p.detail, "request failed");
        }
        web::problem(&p, Some(&web::raw_path(req)))
    })
}

fn sid_param(req: &Request) -> Result<String, Problem> {
    web::path_param(req, "sid").ok_or_else(|| Problem::not_found("the path names no session"))
}

// ---- sessions ---------------------------------------------------------------------

pub async fn create_session(app: Arc<App>, req: Request) -> Response<Body> {
    let result = idempotent(&app, &req, || async {
        let input: CreateSession = web::read_json(&req)?;
        let new = session_input::validate(input, &app.config, app.now())?;
        refuse_unpriced_participants(&new, &app.config.rates)?;
        let session = sessions::create(app.ctx(), new).await?;
        Ok(web::json(StatusCode::CREATED, &SessionView::of(&session)))
    })
    .await;
    respond(&req, result)
}

/// Foreign numbers are called only at a configured rate (`RATE_OUTBOUND_FOREIGN_JPY_PER_MIN`):
/// without one, a session that would call one is refused before anything is written.
fn refuse_unpriced_participants(
    new: &sessions::NewSession,
    rates: &crate::pricing::Rates,
) -> Result<(), Problem> {
    for (i, p) in new.participants.iter().enumerate() {
        if !rates.calls(p.identifier.class()) {
            return Err(Problem::invalid(format!(
                "participants[{i}].identifier {} is outside Japan, and no rate is configured for calls abroad (RATE_OUTBOUND_FOREIGN_JPY_PER_MIN)",
                p.identifier.masked()
            )));
        }
    }
    Ok(())
}

/// Proxy's page size bounds for lists.
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 50;

/// `GET /v1/sessions/{sid}`, and `GET /v1/sessions` (newest first, paged).
pub async fn get_session(app: Arc<App>, req: Request) -> Response<Body> {
    if web::path_param(&req, "sid").is_none() {
        let result = list_sessions(&app, &req).await;
        return respond(&req, result);
    }
    let result = async {
        let session = sessions::find(app.ctx(), &sid_param(&req)?).await?;
        Ok(web::json(StatusCode::OK, &SessionView::of(&session)))
    }
    .await;
    respond(&req, result)
}

fn page_size(req: &Request) -> Result<usize, Problem> {
    match web::query_param(req, "page_size") {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                Problem::invalid(format!(
                    "page_size {v:?} must be a whole number from 1 to {MAX_PAGE_SIZE}"
                ))
            }),
    }
}

async fn list_sessions(app: &App, req: &Request) -> Result<Response<Body>, Problem> {
    let status = match web::query_param(req, "status").as_deref() {
        None => None,
        Some(s @ ("open" | "in-progress" | "closed")) => Some(s.to_owned()),
        Some(other) => {
            return Err(Problem::invalid(format!(
                "status {other:?} is unknown; use open, in-progress or closed"
            )));
        }
    };
    let page_size = page_size(req)?;
    let start = match web::query_param(req, "page_token") {
        None => None,
        Some(t) => Some(crate::store::PageToken::decode(&t).ok_or_else(|| {
            Problem::invalid(
                "page_token is not one this API handed out; use meta.next_page_token as given",
            )
        })?),
    };
    let page = app
        .store
        .list_sessions(status.as_deref(), page_size, start.as_ref())
        .await?;
    #[derive(Serialize)]
    struct Meta {
        page_size: usize,
        next_page_token: Option<String>,
    }
    #[derive(Serialize)]
    struct List<'a> {
        sessions: Vec<SessionView<'a>>,
        meta: Meta,
    }
    Ok(web::json(
        StatusCode::OK,
        &List {
            sessions: page.sessions.iter().map(SessionView::of).collect(),
            meta: Meta {
                page_size,
                next_page_token: page.next.as_ref().map(crate::store::PageToken::encode),
            },
        },
    ))
}

pub async fn close_session(app: Arc<App>, req: Request) -> Response<Body> {
    let result = async {
        let session = sessions::close(app.ctx(), &sid_param(&req)?, "closed-by-api").await?;
        Ok(web::json(StatusCode::OK, &SessionView::of(&session)))
    }
    .await;
    respond(&req, result)
}

// ---- participants ---------------------------------------------------------------------

#[derive(Serialize)]
struct ParticipantOf<'a> {
    session_sid: &'a str,
    #[serde(flatten)]
    participant: session_input::ParticipantView<'a>,
}

impl<'a> ParticipantOf<'a> {
    fn of(session: &'a crate::model::Session, p: &'a crate::model::Participant) -> Self {
        Self {
            session_sid: &session.sid,
            participant: session_input::ParticipantView::of(p),
        }
    }
}

/// `POST`/`GET /v1/sessions/{sid}/participants`, `GET`/`DELETE …/participants/{participant_sid}`.
pub async fn participants(app: Arc<App>, req: Request) -> Response<Body> {
    let result = match (
        req.method().clone(),
        web::path_param(&req, "participant_sid"),
    ) {
        (Method::POST, None) => idempotent(&app, &req, || add_participant(&app, &req)).await,
        (Method::GET, None) => list_participants(&app, &req).await,
        (Method::GET, Some(p)) => get_participant(&app, &req, &p).await,
        (Method::DELETE, Some(p)) => remove_participant(&app, &req, &p).await,
        // API Gateway routes only the four above (HTTP APIs answer 404 to the rest).
        (method, _) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "Not found",
            format!("{method} is not served here"),
        )),
    };
    respond(&req, result)
}

async fn add_participant(app: &App, req: &Request) -> Result<Response<Body>, Problem> {
    let sid = sid_param(req)?;
    let input: session_input::ParticipantInput = web::read_json(req)?;
    let new = session_input::participant("participant", input, &app.config)?;
    if !app.config.rates.calls(new.identifier.class()) {
        return Err(Problem::invalid(format!(
            "participant.identifier {} is outside Japan, and no rate is configured for calls abroad (RATE_OUTBOUND_FOREIGN_JPY_PER_MIN)",
            new.identifier.masked()
        )));
    }
    let (session, added) = participants::add(app.ctx(), &sid, new).await?;
    Ok(web::json(
        StatusCode::CREATED,
        &ParticipantOf::of(&session, &added),
    ))
}

async fn list_participants(app: &App, req: &Request) -> Result<Response<Body>, Problem> {
    let session = sessions::find(app.ctx(), &sid_param(req)?).await?;
    #[derive(Serialize)]
    struct List<'a> {
        session_sid: &'a str,
        participants: Vec<ParticipantOf<'a>>,
    }
    Ok(web::json(
        StatusCode::OK,
        &List {
            session_sid: &session.sid,
            participants: session
                .participants
                .iter()
                .map(|p| ParticipantOf::of(&session, p))
                .collect(),
        },
    ))
}

async fn get_participant(
    app: &App,
    req: &Request,
    participant_sid: &str,
) -> Result<Response<Body>, Problem> {
    let session = sessions::find(app.ctx(), &sid_param(req)?).await?;
    let p = session
        .participants
        .iter()
        .find(|p| p.sid == participant_sid)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "session {} has no participant {participant_sid:?}",
                session.sid
            ))
        })?;
    Ok(web::json(StatusCode::OK, &ParticipantOf::of(&session, p)))
}

async fn remove_participant(
    app: &App,
    req: &Request,
    participant_sid: &str,
) -> Result<Response<Body>, Problem> {
    participants::remove(app.ctx(), &sid_param(req)?, participant_sid).await?;
    Ok(web::no_content())
}

#[derive(Serialize)]
struct InteractionView<'a> {
    sid: &'a str,
    session_sid: &'a str,
    call_sid: &'a str,
    parent_call_sid: Option<&'a str>,
    direction: crate::pricing::Direction,
    twilio_direction: &'a str,
    from: &'a str,
    to: &'a str,
    from_participant_sid: Option<&'a str>,
    to_participant_sid: Option<&'a str>,
    callee_type: &'static str,
    status: &'static str,
    duration: u64,
    billed_minutes: u64,
    cost: Yen,
    cost_unit: &'static str,
    date_created: String,
    date_updated: String,
    date_ended: Option<String>,
    /// Shown once Twilio has posted the call's recording (sessions with `record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    recording: Option<RecordingView<'a>>,
}

/// A leg's recording as the API shows it: the media stays in the Twilio account, at `url`.
#[derive(Serialize)]
struct RecordingView<'a> {
    sid: &'a str,
    duration: u64,
    channels: u32,
    url: Option<&'a str>,
}

impl<'a> InteractionView<'a> {
    fn of(i: &'a Interaction) -> Self {
        Self {
            sid: &i.sid,
            session_sid: &i.session_sid,
            call_sid: &i.call_sid,
            parent_call_sid: i.parent_call_sid.as_deref(),
            direction: i.direction,
            twilio_direction: i.twilio_direction.as_str(),
            from: &i.from_masked,
            to: &i.to_masked,
            from_participant_sid: i.from_participant_sid.as_deref(),
            to_participant_sid: i.to_participant_sid.as_deref(),
            callee_type: i.callee_class.as_str(),
            status: i.status.as_str(),
            duration: i.duration,
            billed_minutes: i.billed_minutes,
            cost: i.cost(),
            cost_unit: "JPY",
            date_created: clock::iso(i.date_created),
            date_updated: clock::iso(i.date_updated),
            date_ended: i.date_ended.map(clock::iso),
            recording: i
                .recording
                .recording_sid
                .as_deref()
                .map(|sid| RecordingView {
                    sid,
                    duration: i.recording.recording_duration.unwrap_or(0),
                    channels: i.recording.recording_channels.unwrap_or(1),
                    url: i.recording.recording_url.as_deref(),
                }),
        }
    }
}

#[derive(Serialize)]
struct InteractionList<'a> {
    session_sid: &'a str,
    interactions: Vec<InteractionView<'a>>,
    /// The whole session's, every page alike.
    total_cost: Yen,
    cost_unit: &'static str,
    meta: PageMeta,
}

#[derive(Serialize)]
struct PageMeta {
    page_size: usize,
    next_page_token: Option<String>,
}

/// A page of a session's legs, oldest first (a call reads in order), after the leg a
/// `page_token` names. The legs are one partition of the table, read by one Query: paging
/// bounds the answer, not the read. The token is the base64url of the page's last CallSid.
fn legs_page<'a>(
    legs: &'a [Interaction],
    page_size: usize,
    token: Option<&str>,
) -> Result<(&'a [Interaction], Option<String>), Problem> {
    use base64::Engine as _;
    let codec = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let start = match token {
        None => 0,
        Some(t) => {
            let after = codec
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|call_sid| legs.iter().position(|l| l.call_sid == call_sid))
                .ok_or_else(|| {
                    Problem::invalid(
                        "page_token is not one this API handed out for this session; use meta.next_page_token as given",
                    )
                })?;
            after + 1
        }
    };
    let page = &legs[start..legs.len().min(start + page_size)];
    let next = (start + page.len() < legs.len())
        .then(|| page.last().map(|l| codec.encode(l.call_sid.as_bytes())))
        .flatten();
    Ok((page, next))
}

/// `GET /v1/sessions/{sid}/interactions`, and one of them by `interaction_sid`.
pub async fn list_interactions(app: Arc<App>, req: Request) -> Response<Body> {
    let result = async {
        let session = sessions::find(app.ctx(), &sid_param(&req)?).await?;
        let legs = app.store.list_interactions(&session.sid).await?;
        if let Some(wanted) = web::path_param(&req, "interaction_sid") {
            // A session's legs are one partition of a few items: read and picked here.
            let leg = legs.iter().find(|l| l.sid == wanted).ok_or_else(|| {
                Problem::not_found(format!(
                    "session {} has no interaction {wanted:?}",
                    session.sid
                ))
            })?;
            return Ok(web::json(StatusCode::OK, &InteractionView::of(leg)));
        }
        let page_size = page_size(&req)?;
        let token = web::query_param(&req, "page_token");
        let (page, next_page_token) = legs_page(&legs, page_size, token.as_deref())?;
        let body = InteractionList {
            session_sid: &session.sid,
            total_cost: legs.iter().map(Interaction::cost).sum(),
            interactions: page.iter().map(InteractionView::of).collect(),
            cost_unit: "JPY",
            meta: PageMeta {
                page_size,
                next_page_token,
            },
        };
        Ok(web::json(StatusCode::OK, &body))
    }
    .await;
    respond(&req, result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartCallInput {
    mode: String,
    /// Who is rung first: a participant SID or identifier; the first participant by default.
    first: Option<String>,
    call_time_limit: Option<u64>,
}

#[derive(Serialize)]
struct PlacedView<'a> {
    mode: Mode,
    call_time_limit: u64,
    calls: &'a [PlacedLeg],
    session: SessionView<'a>,
}

/// `POST /v1/sessions/{sid}/calls`: V字発信. 202: Twilio is ringing the participants.
pub async fn start_v_call(app: Arc<App>, req: Request) -> Response<Body> {
    let result = idempotent(&app, &req, || async {
        let sid = sid_param(&req)?;
        let input: StartCallInput = web::read_json(&req)?;
        let request = StartCall {
            mode: match input.mode.as_str() {
                "bridge" => Mode::Bridge,
                "conference" => Mode::Conference,
                other => {
                    return Err(Problem::invalid(format!(
                        "mode {other:?} is unknown; use \"bridge\" or \"conference\""
                    )));
                }
            },
            first: input.first,
            call_time_limit: input.call_time_limit,
        };
        let (session, placed) = vcall::start(app.ctx(), &sid, request).await?;
        Ok(web::json(
            StatusCode::ACCEPTED,
            &PlacedView {
                mode: placed.mode,
                call_time_limit: placed.call_time_limit,
                calls: &placed.legs,
                session: SessionView::of(&session),
            },
        ))
    })
    .await;
    respond(&req, result)
}

/// `POST /v1/sessions/{sid}`: Proxy's session update — `status` (`closed`, or `in-progress`
/// to reopen a closed session), `date_expiry`, `ttl`.
pub async fn update_session(app: Arc<App>, req: Request) -> Response<Body> {
    let result = idempotent(&app, &req, || async {
        let sid = sid_param(&req)?;
        let input: session_input::UpdateSession = web::read_json(&req)?;
        let change = session_input::validate_update(input, app.now())?;
        let session = sessions::update(app.ctx(), &sid, change).await?;
        Ok(web::json(StatusCode::OK, &SessionView::of(&session)))
    })
    .await;
    respond(&req, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Extend {
    seconds: u64,
}

/// `POST /v1/sessions/{sid}/extend`: move the session's end by N seconds.
pub async fn extend_session(app: Arc<App>, req: Request) -> Response<Body> {
    let result = idempotent(&app, &req, || async {
        let sid = sid_param(&req)?;
        let input: Extend = web::read_json(&req)?;
        let session = sessions::extend(app.ctx(), &sid, input.seconds).await?;
        Ok(web::json(StatusCode::OK, &SessionView::of(&session)))
    })
    .await;
    respond(&req, result)
}

// ---- the number pool ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNumber {
    phone_number: String,
    #[serde(default)]
    is_reserved: bool,
}

#[derive(Serialize)]
struct NumberView<'a> {
    phone_number: &'a str,
    is_reserved: bool,
    in_use: u64,
    date_created: String,
    date_updated: String,
}

impl<'a> NumberView<'a> {
    fn of(n: &'a ProxyNumber) -> Self {
        Self {
            phone_number: n.phone_number.as_str(),
            is_reserved: n.is_reserved,
            in_use: n.in_use,
            date_created: clock::iso(n.date_created),
            date_updated: clock::iso(n.date_updated),
        }
    }
}

/// `POST /v1/numbers`, `GET /v1/numbers`, and `GET`, `POST` (`is_reserved`) and `DELETE
/// /v1/numbers/{number}`.
pub async fn numbers(app: Arc<App>, req: Request) -> Response<Body> {
    let result = match (req.method().clone(), web::path_param(&req, "number")) {
        (Method::POST, None) => idempotent(&app, &req, || add_number(&app, &req)).await,
        (Method::GET, None) => list_numbers(&app).await,
        (Method::DELETE, Some(number)) => delete_number(&app, &number).await,
        (Method::GET, Some(number)) => get_number(&app, &number).await,
        (Method::POST, Some(number)) => {
            idempotent(&app, &req, || update_number(&app, &req, &number)).await
        }
        // API Gateway routes only the five above and answers 404 to any other method
        // (HTTP APIs have no 405); the same answer here, should a route be added by mistake.
        (method, _) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "Not found",
            format!("{method} is not served here"),
        )),
    };
    respond(&req, result)
}

async fn add_number(app: &App, req: &Request) -> Result<Response<Body>, Problem> {
    let input: AddNumber = web::read_json(req)?;
    let phone_number = PhoneNumber::parse(&input.phone_number)
        .map_err(|e| Problem::invalid(format!("phone_number: {e}")))?;
    let now = app.now();
    let number = ProxyNumber {
        phone_number,
        is_reserved: input.is_reserved,
        in_use: 0,
        date_created: now,
        date_updated: now,
    };
    if !app.store.add_number(&number).await? {
        return Err(Problem::conflict(
            Code::NumberAlreadyInPool,
            "Number already in pool",
            format!("{} is already in the pool", number.phone_number),
        ));
    }
    Ok(web::json(StatusCode::CREATED, &NumberView::of(&number)))
}

async fn list_numbers(app: &App) -> Result<Response<Body>, Problem> {
    let numbers = app.store.list_numbers().await?;
    #[derive(Serialize)]
    struct List<'a> {
        numbers: Vec<NumberView<'a>>,
    }
    Ok(web::json(
        StatusCode::OK,
        &List {
            numbers: numbers.iter().map(NumberView::of).collect(),
        },
    ))
}

/// The `{number}` path parameter. API Gateway may hand it over still percent-encoded
/// ("%2B81…").
fn number_param(raw: &str) -> Result<PhoneNumber, Problem> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    PhoneNumber::parse(&decoded).map_err(|e| Problem::invalid(format!("number: {e}")))
}

async fn get_number(app: &App, raw: &str) -> Result<Response<Body>, Problem> {
    let number = number_param(raw)?;
    let n = app
        .store
        .get_number(&number)
        .await?
        .ok_or_else(|| Problem::not_found(format!("{number} is not in the pool")))?;
    Ok(web::json(StatusCode::OK, &NumberView::of(&n)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateNumber {
    is_reserved: bool,
}

/// `POST /v1/numbers/{number}`: reserve a number (used only when a participant's
/// `proxy_identifier` names it) or release it to automatic allocation. Sessions already on
/// it keep it either way.
async fn update_number(app: &App, req: &Request, raw: &str) -> Result<Response<Body>, Problem> {
    let number = number_param(raw)?;
    let input: UpdateNumber = web::read_json(req)?;
    let updated = app
        .store
        .set_number_reserved(&number, input.is_reserved, app.now())
        .await?
        .ok_or_else(|| Problem::not_found(format!("{number} is not in the pool")))?;
    Ok(web::json(StatusCode::OK, &NumberView::of(&updated)))
}

async fn delete_number(app: &App, raw: &str) -> Result<Response<Body>, Problem> {
    let number = number_param(raw)?;
    let not_in_pool = || Problem::not_found(format!("{number} is not in the pool"));
    let existing = app
        .store
        .get_number(&number)
        .await?
        .ok_or_else(not_in_pool)?;
    let in_use = |n: u64| {
        Problem::conflict(
            Code::NumberInUse,
            "Number in use",
            format!("{number} is used by {n} open session(s); close them first"),
        )
    };
    if existing.in_use > 0 {
        return Err(in_use(existing.in_use));
    }
    match app.store.delete_number(&number).await {
        Ok(()) => Ok(web::no_content()),
        Err(StoreError::ConditionFailed) => match app.store.get_number(&number).await? {
            Some(n) => Err(in_use(n.in_use)),
            None => Err(not_in_pool()),
        },
        Err(e) => Err(e.into()),
    }
}

// ---- idempotency --------------------------------------------------------------------

/// The key, if it is 1 to 255 visible ASCII characters.
fn valid_idempotency_key(bytes: &[u8]) -> Option<&str> {
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// Runs `action` at most once per `Idempotency-Key`: a retry with the same key and body gets
/// the first answer again; the same key with another body is refused. Only successful
/// answers are kept, so a failed request can be retried with its key.
async fn idempotent<F, Fut>(app: &App, req: &Request, action: F) -> Result<Response<Body>, Problem>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Response<Body>, Problem>>,
{
    // Read as raw bytes: a key that is not visible ASCII must be refused, not mistaken for
    // no key at all (which would run the request without idempotency).
    let Some(raw) = req.headers().get("idempotency-key") else {
        return action().await;
    };
    let key = valid_idempotency_key(raw.as_bytes()).ok_or_else(|| {
        Problem::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters")
    })?;
    let hash = hex::encode(Sha256::digest(web::body_bytes(req)));
    // Keys are scoped by route and resource: the same key on another session is another key.
    let record = format!("{} {}#{key}", req.method(), web::raw_path(req));
    let now = app.now();
    let claim = app
        .store
        .claim_idempotency_key(
            &record,
            &hash,
            now,
            IDEMPOTENCY_KEEP_SECONDS,
            IDEMPOTENCY_IN_PROGRESS_SECONDS,
        )
        .await?;
    let reused = || {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Code::IdempotencyKeyReused,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request body; use a new key",
        )
    };
    match claim {
        Claim::New => {}
        Claim::InProgress { request_hash } if request_hash != hash => return Err(reused()),
        Claim::InProgress { .. } => {
            return Err(Problem::conflict(
                Code::IdempotencyInProgress,
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry in a moment",
            ));
        }
        Claim::Completed { request_hash, .. } if request_hash != hash => return Err(reused()),
        Claim::Completed { status, body, .. } => {
            let mut r = web::with_type(
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                "application/json",
                body,
            );
            r.headers_mut().insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
            return Ok(r);
        }
    }
    let result = action().await;
    match &result {
        Ok(response) if response.status().is_success() => {
            let body = match response.body() {
                Body::Text(t) => t.clone(),
                _ => String::new(),
            };
            if let Err(e) = app
                .store
                .complete_idempotency_key(&record, response.status().as_u16(), &body)
                .await
            {
                tracing::error!(error = %e, "could not record the idempotent answer");
            }
        }
        _ => {
            if let Err(e) = app.store.release_idempotency_key(&record).await {
                tracing::error!(error = %e, "could not release an idempotency key");
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_visible_ascii_only() {
        assert_eq!(valid_idempotency_key(b"order-1234"), Some("order-1234"));
        assert_eq!(valid_idempotency_key(&[b'k'; 255]).map(str::len), Some(255));
        for bad in [
            &b""[..],
            &[b'k'; 256][..],
            "注文-1".as_bytes(),
            b"order 1",
            b"order\x7f",
            b"\xff\xfe",
        ] {
            assert_eq!(valid_idempotency_key(bad), None, "{bad:?}");
        }
    }
}
