//! Twilio's webhooks (`/twilio/voice/...`, public). Every request is checked against
//! `X-Twilio-Signature` first (403 and nothing else on failure); after that, whatever goes
//! wrong, Twilio gets valid TwiML — a short Japanese apology — never a 5xx.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::budget::{Budget, WEBHOOK_ANSWER};
use crate::domain::sessions::MAX_CALL_SECONDS;
use crate::ids;
use crate::model::{CallStatus, Interaction, Session, TwilioDirection};
use crate::phone::PhoneNumber;
use crate::pricing::{self, Direction};
use crate::signature;
use crate::store::{Recorded, Route};
use crate::telemetry::metrics::name;
use crate::telemetry::{Document, Unit};
use crate::twiml::{Conference, Dial, Gather, Method, Number, Recording, Response as TwiML, Say};
use crate::web;

mod extension;
mod inbound;
mod recording;
mod status;
mod vcall;

pub use extension::{extension, safety_limit};
pub use inbound::inbound_call;
pub use recording::recording_status;
pub use status::call_status;
pub use vcall::{bridge_twiml, conference_status, conference_twiml, join_room, room_dial};

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

/// Twilio's voice webhooks are small forms: a real one is under 2 KiB and has about 30
/// parameters. Anything far larger is refused before it is parsed or a secret is read.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 32 * 1024;
/// At most this many form parameters (counted as `&`-separated pieces, before parsing).
pub const MAX_WEBHOOK_PARAMS: usize = 200;
/// The one media type Twilio uses for voice webhooks and status callbacks ("Twilio's request
/// to your application", https://www.twilio.com/docs/usage/webhooks/voice-webhooks: a POST
/// carries its parameters as `application/x-www-form-urlencoded`). Twilio sends JSON only from
/// other products (Event Streams, some Messaging and Studio hooks), none of which call us.
pub const WEBHOOK_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Why [`guard`] refused a webhook request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over [`MAX_WEBHOOK_BODY_BYTES`]: 413.
    TooLarge,
    /// Not [`WEBHOOK_CONTENT_TYPE`]: 415.
    NotAForm,
    /// Over [`MAX_WEBHOOK_PARAMS`] parameters: 400.
    TooManyParameters,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::NotAForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::TooManyParameters => StatusCode::BAD_REQUEST,
        }
    }

    pub fn response(self) -> Response<Body> {
        let why = match self {
            Refusal::TooLarge => "the body is larger than 32 KiB",
            Refusal::NotAForm => "send application/x-www-form-urlencoded",
            Refusal::TooManyParameters => "more than 200 form parameters",
        };
        web::with_type(self.status(), "text/plain; charset=utf-8", why.into())
    }
}

/// Cheap checks on a webhook request before anything else: its size, its media type and how
/// many parameters it has. Reads only the body's length, the `Content-Type` header and the
/// body's bytes (counting `&`) and allocates nothing.
pub fn guard(req: &Request) -> Result<(), Refusal> {
    let body = web::body_bytes(req);
    if body.len() > MAX_WEBHOOK_BODY_BYTES {
        tracing::warn!(path = %web::raw_path(req), bytes = body.len(), "webhook body too large");
        return Err(Refusal::TooLarge);
    }
    let media_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|m| m.eq_ignore_ascii_case(WEBHOOK_CONTENT_TYPE)) {
        tracing::warn!(path = %web::raw_path(req), "webhook with another media type than a form");
        return Err(Refusal::NotAForm);
    }
    if parameter_count(body) > MAX_WEBHOOK_PARAMS {
        tracing::warn!(path = %web::raw_path(req), "webhook with too many parameters");
        return Err(Refusal::TooManyParameters);
    }
    Ok(())
}

/// How many `&`-separated pieces the form has, an upper bound on its parameters; stops
/// counting past the limit.
fn parameter_count(body: &[u8]) -> usize {
    if body.is_empty() {
        return 0;
    }
    1 + body
        .iter()
        .filter(|&&b| b == b'&')
        .take(MAX_WEBHOOK_PARAMS)
        .count()
}

/// Checks the request's signature over `PUBLIC_BASE_URL` + raw path + raw query and its form
/// parameters, with the secret's current token or, during a rotation, its previous one. On a
/// mismatch the secret is fetched once more (at most once per interval), in case the token
/// was rotated; while Secrets Manager is down, the tokens already cached decide.
pub async fn verify(app: &App, req: &Request) -> Result<TwilioForm, Rejected> {
    let Some(header) = web::header(req, "x-twilio-signature") else {
        tracing::warn!(path = %web::raw_path(req), "webhook without X-Twilio-Signature");
        app.metrics().signature_failure();
        return Err(Rejected::Forbidden);
    };
    let params = signature::parse_form(web::body_bytes(req));
    let url = app
        .config
        .public_url(&web::raw_path(req), web::raw_query(req));
    let signed_by = |versions: &crate::secrets::SecretVersions| {
        versions
            .auth_tokens()
            .any(|token| signature::is_valid(token, &url, &params, header))
    };
    let versions = app
        .secrets
        .versions()
        .await
        .map_err(|e| Rejected::Unverifiable(e.to_string()))?;
    if signed_by(&versions) {
        return Ok(TwilioForm(params));
    }
    match app.secrets.refresh_after_failure().await {
        Ok(Some(fresh)) if signed_by(&fresh) => {
            tracing::info!("auth token rotated; new token accepted");
            Ok(TwilioForm(params))
        }
        Ok(_) => {
            tracing::warn!(path = %web::raw_path(req), "webhook with a wrong X-Twilio-Signature");
            app.metrics().signature_failure();
            Err(Rejected::Forbidden)
        }
        Err(e) => Err(Rejected::Unverifiable(e.to_string())),
    }
}

pub(super) fn forbidden() -> Response<Body> {
    web::with_type(
        StatusCode::FORBIDDEN,
        "text/plain; charset=utf-8",
        "forbidden".into(),
    )
}

pub(super) fn say(app: &App, text: &str) -> Say {
    Say::new(text)
        .language(app.config.prompts.language.clone())
        .voice(app.config.prompts.voice.clone())
}

/// A spoken message and the end of the call.
pub(super) fn say_and_hang_up(app: &App, text: &str) -> Response<Body> {
    web::twiml(TwiML::new().say(say(app, text)).hangup().to_xml())
}

pub(super) fn apology(app: &App) -> Response<Body> {
    say_and_hang_up(app, &app.config.prompts.apology)
}

/// What a masked call's caller hears when the other party could not be reached: why, by
/// the other leg's final status; `None` when it was reached.
pub(super) fn unreachable_prompt(app: &App, other: CallStatus) -> Option<&str> {
    let prompts = &app.config.prompts;
    match other {
        CallStatus::Busy => Some(&prompts.other_busy),
        CallStatus::NoAnswer => Some(&prompts.other_no_answer),
        CallStatus::Failed | CallStatus::Canceled => Some(&prompts.other_failed),
        _ => None,
    }
}

/// Runs a webhook: [`guard`] and the signature first, then the handler; every failure after the signature
/// check becomes the apology TwiML, logged. Everything it waits on shares one
/// [`Budget::webhook`], and whatever is still unfinished at `WEBHOOK_ANSWER` is dropped for
/// the apology, so Twilio always gets TwiML before its own timeout.
pub(super) async fn webhook<F, Fut>(app: Arc<App>, req: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Arc<App>, TwilioForm, Request) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Body>, WebhookError>>,
{
    if let Err(refused) = guard(&req) {
        return refused.response();
    }
    let app = Arc::new(app.within(Budget::webhook()));
    answer_within(WEBHOOK_ANSWER, app.clone(), async move {
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
    })
    .await
}

/// `work`'s answer, or the apology once `limit` has passed.
async fn answer_within(
    limit: Duration,
    app: Arc<App>,
    work: impl std::future::Future<Output = Response<Body>>,
) -> Response<Body> {
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(
                limit_ms = limit.as_millis() as u64,
                "webhook out of time; answering with an apology"
            );
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
    /// A domain rule could not be carried out; the caller hears the apology.
    #[error(transparent)]
    Domain(#[from] crate::domain::DomainError),
}

pub(super) fn required<'a>(
    form: &'a TwilioForm,
    name: &'static str,
) -> Result<&'a str, WebhookError> {
    form.get(name)
        .filter(|v| !v.is_empty())
        .ok_or(WebhookError::MissingParameter(name))
}

/// The session named by a webhook URL (`?session=`), if it still routes calls.
pub(super) async fn open_session(
    app: &App,
    req: &Request,
) -> Result<Option<Session>, WebhookError> {
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

/// Where Twilio posts a recording's status (`recordingStatusCallback`); the session is in
/// the URL, which Twilio signs with the rest.
pub(super) fn recording_status_url(app: &App, session_sid: &str) -> String {
    format!(
        "{}/twilio/voice/recording-status?session={session_sid}",
        app.config.public_base_url
    )
}

/// A recorded session's `<Dial>`: both parties, one per channel, from the answer
/// (TwiML `<Dial>`, "record": `record-from-answer-dual`,
/// https://www.twilio.com/docs/voice/twiml/dial#record), and a callback once the
/// recording is ready ("recordingStatusCallbackEvent": `completed`).
pub(super) fn dial_recording(app: &App, session_sid: &str, record: bool) -> Option<Recording> {
    record.then(|| Recording {
        mode: "record-from-answer-dual",
        status_callback: recording_status_url(app, session_sid),
        status_callback_event: "completed",
    })
}

/// A recorded session's room: the conference from its start (TwiML `<Conference>`,
/// "record": `record-from-start`, https://www.twilio.com/docs/voice/twiml/conference#record;
/// a conference recording has one mixed channel).
pub(super) fn room_recording(app: &App, session_sid: &str, record: bool) -> Option<Recording> {
    record.then(|| Recording {
        mode: "record-from-start",
        status_callback: recording_status_url(app, session_sid),
        status_callback_event: "completed",
    })
}

/// What a participant hears first when they answer a call placed to them: their
/// announcement (spoken, or played), then the recording notice of a recorded session.
pub(super) fn on_answer(
    app: &App,
    session: &Session,
    participant: &crate::model::Participant,
) -> TwiML {
    let twiml = match participant.announcement() {
        Some(crate::model::Announcement::Say(text)) => TwiML::new().say(say(app, text)),
        Some(crate::model::Announcement::Play(url)) => TwiML::new().play(url),
        None => TwiML::new(),
    };
    recording_notice(app, twiml, session.recording_notice())
}

/// `twiml`, then the recording notice if there is one.
pub(super) fn recording_notice(app: &App, twiml: TwiML, notice: Option<&str>) -> TwiML {
    match notice {
        Some(text) => twiml.say(say(app, text)),
        None => twiml,
    }
}

/// The `<Number url>` the dialled participant's end runs on answering, before the bridge,
/// when they have something to hear (their announcement, the recording notice).
pub(super) fn whisper_url(app: &App, session_sid: &str, participant_sid: &str) -> String {
    format!(
        "{}/twilio/voice/inbound/whisper?session={session_sid}&participant={participant_sid}",
        app.config.public_base_url
    )
}

pub(super) fn status_callback_url(app: &App, session_sid: &str, participant_sid: &str) -> String {
    format!(
        "{}/twilio/voice/status?session={session_sid}&participant={participant_sid}",
        app.config.public_base_url
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::Config;
    use crate::secrets::FixedSecret;
    use aws_config::{BehaviorVersion, Region, SdkConfig};

    /// An app that makes no request unless asked to (none of these tests asks).
    pub(crate) fn app() -> Arc<App> {
        let config = Config::from_lookup(|name| match name {
            "TABLE_NAME" => Some("tsunagu".into()),
            "TWILIO_SECRET_ID" => Some("tsunagu/twilio".into()),
            "PUBLIC_BASE_URL" => Some("https://voice.example.jp".into()),
            _ => None,
        })
        .unwrap();
        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("ap-northeast-1"))
            .build();
        Arc::new(App::with_secret_source(
            config,
            aws_sdk_dynamodb::Client::new(&aws),
            Arc::new(SystemClock),
            Arc::new(FixedSecret),
        ))
    }

    fn form_request(content_type: Option<&str>, body: Vec<u8>) -> Request {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("https://voice.example.jp/twilio/voice/inbound");
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(Body::Binary(body)).unwrap()
    }

    fn status_of(r: Result<(), Refusal>) -> Option<u16> {
        r.err().map(|r| r.status().as_u16())
    }

    #[test]
    fn the_guard_refuses_large_bodies_other_media_types_and_many_parameters() {
        let form = Some("application/x-www-form-urlencoded");
        let ok = |ct, body: &str| status_of(guard(&form_request(ct, body.into())));
        assert_eq!(ok(form, "CallSid=CA1&From=%2B8190"), None);
        assert_eq!(
            ok(
                Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
                "a=1"
            ),
            None
        );
        assert_eq!(ok(form, ""), None, "an empty form is still a form");

        let big = "a".repeat(MAX_WEBHOOK_BODY_BYTES + 1);
        assert_eq!(ok(form, &big), Some(413));
        assert_eq!(ok(form, &"a".repeat(MAX_WEBHOOK_BODY_BYTES)), None);

        assert_eq!(ok(Some("application/json"), "{}"), Some(415));
        assert_eq!(ok(Some("text/plain"), "a=1"), Some(415));
        assert_eq!(ok(None, "a=1"), Some(415));

        let params = |n: usize| vec!["a=1"; n].join("&");
        assert_eq!(ok(form, &params(MAX_WEBHOOK_PARAMS)), None);
        assert_eq!(ok(form, &params(MAX_WEBHOOK_PARAMS + 1)), Some(400));
        assert_eq!(ok(form, &"&".repeat(5_000)), Some(400));
    }

    #[tokio::test]
    async fn a_refused_webhook_never_reaches_the_secret() {
        struct NeverFetched;
        #[async_trait::async_trait]
        impl crate::secrets::SecretSource for NeverFetched {
            async fn fetch(
                &self,
            ) -> Result<crate::secrets::TwilioCredentials, crate::secrets::SecretError>
            {
                panic!("a refused webhook must not read the secret")
            }
        }
        let config = (*app().config).clone();
        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("ap-northeast-1"))
            .build();
        let app = Arc::new(App::with_secret_source(
            config,
            aws_sdk_dynamodb::Client::new(&aws),
            Arc::new(SystemClock),
            Arc::new(NeverFetched),
        ));
        let signed = |ct: &str, body: String| {
            http::Request::builder()
                .method("POST")
                .uri("https://voice.example.jp/twilio/voice/inbound")
                .header("content-type", ct)
                .header("x-twilio-signature", "c2lnbmF0dXJl")
                .body(Body::Text(body))
                .unwrap()
        };
        let form = "application/x-www-form-urlencoded";
        for (req, status) in [
            (signed(form, "a&".repeat(2_250_000)), 413),
            (signed("application/json", "{}".into()), 415),
            (signed(form, "a&".repeat(1_000)), 400),
        ] {
            let answer = inbound_call(app.clone(), req).await;
            assert_eq!(answer.status().as_u16(), status);
        }
    }

    #[tokio::test]
    async fn work_unfinished_at_the_limit_becomes_the_apology() {
        let app = app();
        let answer = answer_within(
            Duration::from_millis(10),
            app.clone(),
            std::future::pending(),
        )
        .await;
        assert_eq!(answer.status(), StatusCode::OK);
        let Body::Text(xml) = answer.body() else {
            panic!("TwiML is text");
        };
        assert!(xml.contains(&app.config.prompts.apology), "{xml}");
        assert!(xml.contains("<Hangup/>"), "{xml}");
    }

    #[tokio::test]
    async fn only_a_request_scoped_app_has_a_deadline() {
        let app = app();
        assert_eq!(
            app.budget().remaining(),
            None,
            "the container's app has none"
        );
        let scoped = app.within(Budget::webhook());
        let left = scoped.budget().remaining().unwrap();
        assert!(left <= crate::budget::WEBHOOK_REST && left > Duration::ZERO);
    }
}
