//! `inbound-call`: a participant called a proxy number.

use super::*;
use crate::budget::CALLBACK_TIMEOUT;
use crate::callback;
use crate::domain::admission::{self, Admission, InboundCall};

/// `POST /twilio/voice/inbound`: a participant called a proxy number. `domain::admission`
/// decides what they get; this maps it to TwiML: a `<Dial>` of the other participant with
/// their own proxy number as caller ID, the session's room, or a short message and the end
/// of the call. `POST /twilio/voice/inbound/dial-result` is that dial's action (see
/// [`dial_result`]).
pub async fn inbound_call(app: Arc<App>, req: Request) -> Response<Body> {
    if web::raw_path(&req).ends_with(DIAL_RESULT_PATH) {
        return dial_result(app, req).await;
    }
    if web::raw_path(&req).ends_with(WHISPER_PATH) {
        return whisper(app, req).await;
    }
    webhook(app, req, |app, form, _req| async move {
        let call = InboundCall {
            call_sid: required(&form, "CallSid")?,
            from: form.get("From"),
            to: required(&form, "To")?,
        };
        let prompts = &app.config.prompts;
        Ok(match admission::admit(app.ctx(), &*app, call).await? {
            Admission::WithheldCaller => say_and_hang_up(&app, &prompts.withheld_caller),
            Admission::NoSession => out_of_session(&app, &form).await,
            Admission::Closed => say_and_hang_up(&app, &prompts.session_closed),
            Admission::Blocked => say_and_hang_up(&app, &prompts.blocked),
            Admission::Dial { route, limit } => {
                web::twiml(dial_other_party(&app, &route, limit).to_xml())
            }
            // The caller's own leg is limited by the sweep at the deadline; Twilio's four
            // hours stay as the outer bound, since an extension may move the deadline.
            // A recorded session's caller hears the notice before joining; the other party
            // hears it (after their announcement) when they answer (`conference_twiml`).
            Admission::Room { route } => web::twiml(
                recording_notice(&app, TwiML::new(), route.recording_notice.as_deref())
                    .then(join_room(
                        &app,
                        &route.session_sid,
                        &route.participant_sid,
                        MAX_CALL_SECONDS,
                        room_recording(&app, &route.session_sid, route.recording_notice.is_some()),
                    ))
                    .to_xml(),
            ),
        })
    })
    .await
}

/// The masked call's `<Dial action>`, served by this function too.
const DIAL_RESULT_PATH: &str = "/twilio/voice/inbound/dial-result";
/// The `<Number url>` a dialled participant's end runs on answering, served here too.
const WHISPER_PATH: &str = "/twilio/voice/inbound/whisper";

/// `POST /twilio/voice/inbound/whisper?session=…&participant=…`: the dialled participant
/// answered (a masked call's callee, or the other party of a bridge V-call). Twilio runs this
/// TwiML on their end only, while the caller still hears ringing, and connects the two when
/// it ends (TwiML `<Number>`, "url": https://www.twilio.com/docs/voice/twiml/number#url):
/// their announcement, then the recording notice. A session closed meanwhile connects
/// nobody: `<Hangup>` here ends the dialled leg before the bridge.
async fn whisper(app: Arc<App>, req: Request) -> Response<Body> {
    webhook(app, req, |app, _form, req| async move {
        let Some(session) = open_session(&app, &req).await? else {
            return Ok(web::twiml(TwiML::new().hangup().to_xml()));
        };
        let participant = web::query_param(&req, "participant").unwrap_or_default();
        let Some(p) = session
            .participant(&participant)
            .filter(|p| p.sid == participant)
        else {
            return Err(WebhookError::MissingParameter("participant"));
        };
        Ok(web::twiml(on_answer(&app, &session, p).to_xml()))
    })
    .await
}

/// `POST /twilio/voice/inbound/dial-result`: Twilio's request when the masked call's
/// `<Dial>` ends (its `action`; without one Twilio would just hang up on the caller). A
/// caller whose other party was busy, did not answer or could not be called hears why;
/// then, as after a call that took place, the call ends.
async fn dial_result(app: Arc<App>, req: Request) -> Response<Body> {
    webhook(app, req, |app, form, req| async move {
        let status = form.get("DialCallStatus").unwrap_or_default();
        let why = CallStatus::parse(status).and_then(|s| unreachable_prompt(&app, s));
        let Some(text) = why else {
            return Ok(web::twiml(TwiML::new().hangup().to_xml()));
        };
        tracing::info!(
            session = web::query_param(&req, "session"),
            call = form.get("CallSid"),
            status,
            "the other party could not be reached"
        );
        Ok(say_and_hang_up(&app, text))
    })
    .await
}

fn dial_other_party(app: &App, route: &Route, limit: u64) -> TwiML {
    let number = Number::new(route.other_identifier.as_str())
        .status_callback(status_callback_url(
            app,
            &route.session_sid,
            &route.other_participant_sid,
        ))
        .status_callback_event(&["initiated", "ringing", "answered", "completed"])
        .url(
            (route.recording_notice.is_some() || route.other_announced)
                .then(|| whisper_url(app, &route.session_sid, &route.other_participant_sid)),
        );
    let record = route.recording_notice.is_some();
    // The caller hears the recording notice before the other party is dialled.
    recording_notice(app, TwiML::new(), route.recording_notice.as_deref()).dial(
        Dial::new()
            .record(dial_recording(app, &route.session_sid, record))
            .number(number)
            .caller_id(route.other_proxy.as_str())
            .time_limit(limit as u32)
            .timeout(app.config.dial_timeout_seconds)
            // The caller hears ringing, and is billed, only once the other party answers.
            .answer_on_bridge(true)
            .ring_tone("jp")
            .action(format!(
                "{}{DIAL_RESULT_PATH}?session={}",
                app.config.public_base_url, route.session_sid
            ))
            .method(Method::Post),
    )
}

/// A caller without an open session: the platform's out-of-session URL may answer with its
/// own TwiML; otherwise a short message and the end of the call.
async fn out_of_session(app: &App, form: &TwilioForm) -> Response<Body> {
    if let Some(url) = &app.config.out_of_session_callback_url {
        let form: Vec<(&str, &str)> = form
            .pairs()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match callback::post_form(app, url, &form, app.budget().cap(CALLBACK_TIMEOUT)).await {
            Ok(r) if r.status.is_success() && r.body.contains("<Response") => {
                return web::twiml(r.body);
            }
            Ok(r) if r.status.is_success() => {
                tracing::warn!("out-of-session callback answered without TwiML")
            }
            Ok(r) => tracing::warn!(status = r.status.as_u16(), "out-of-session callback failed"),
            Err(e) => tracing::warn!(error = %e, "out-of-session callback unusable"),
        }
    }
    say_and_hang_up(app, &app.config.prompts.no_session)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A correctly signed inbound-call webhook with this `From` (absent when `None`).
    fn inbound_request(from: Option<&str>) -> Request {
        let url = "https://voice.example.jp/twilio/voice/inbound";
        let mut params = vec![
            (
                "CallSid".to_owned(),
                "CA0123456789abcdef0123456789abcdef".to_owned(),
            ),
            ("To".to_owned(), "+815031234567".to_owned()),
        ];
        if let Some(from) = from {
            params.push(("From".to_owned(), from.to_owned()));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        // FixedSecret's auth token.
        let signature = crate::signature::compute("token", url, &params);
        http::Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(Body::Text(body))
            .unwrap()
    }

    #[tokio::test]
    async fn a_withheld_caller_is_asked_to_call_with_the_number_shown() {
        // The app reaches no table: the answer comes before any route is looked up.
        for from in [
            Some("anonymous"),
            Some("Anonymous"),
            Some("+266696687"),
            Some(""),
            None,
        ] {
            let app = super::super::tests::app();
            let answer = inbound_call(app.clone(), inbound_request(from)).await;
            assert_eq!(answer.status(), StatusCode::OK, "{from:?}");
            let Body::Text(xml) = answer.body() else {
                panic!("TwiML is text");
            };
            assert!(
                xml.contains("番号を通知しておかけ直しください。"),
                "{from:?}: {xml}"
            );
            assert!(xml.contains("186"), "{xml}");
            assert!(!xml.contains("お取り扱いしておりません"), "{xml}");
            assert!(xml.contains("<Hangup/>"), "{xml}");
        }
    }
}
