//! `inbound-call`: a participant called a proxy number.

use super::*;
use crate::budget::CALLBACK_TIMEOUT;
use crate::callback;

/// `POST /twilio/voice/inbound`: a participant called a proxy number. One read finds the
/// route; one conditional write logs the leg while the session is still open; the answer
/// dials the other participant with their own proxy number as caller ID.
/// `POST /twilio/voice/inbound/dial-result` is that dial's action (see [`dial_result`]).
pub async fn inbound_call(app: Arc<App>, req: Request) -> Response<Body> {
    if web::raw_path(&req).ends_with(DIAL_RESULT_PATH) {
        return dial_result(app, req).await;
    }
    webhook(app, req, |app, form, _req| async move {
        let call_sid = required(&form, "CallSid")?;
        let to = PhoneNumber::parse(required(&form, "To")?).ok();
        // A withheld caller ID ("anonymous", "+266696687") has no route: the caller is
        // asked to call again with their number shown (186 first), which is all they can do.
        if crate::phone::is_withheld(form.get("From")) {
            tracing::info!(call = call_sid, "caller ID withheld; asked to call with the number shown");
            return Ok(say_and_hang_up(&app, &app.config.prompts.withheld_caller));
        }
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
            twilio_direction: TwilioDirection::Inbound,
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
    let other = crate::model::Participant {
        sid: route.other_participant_sid.clone(),
        identifier: route.other_identifier.clone(),
        proxy_identifier: route.other_proxy.clone(),
        friendly_name: None,
    };
    match crate::domain::vcall::call_into_room(app.ctx(), &route.session_sid, &other, limit).await {
        Ok(_) => {}
        Err(crate::domain::DomainError::SessionClosed(_)) => {
            return Ok(say_and_hang_up(app, &app.config.prompts.session_closed));
        }
        Err(e) => {
            tracing::error!(session = %route.session_sid, error = %e, "could not call the other party into the room");
            return Ok(apology(app));
        }
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

/// The masked call's `<Dial action>`, served by this function too.
const DIAL_RESULT_PATH: &str = "/twilio/voice/inbound/dial-result";

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
            .ring_tone("jp")
            .action(format!(
                "{}{DIAL_RESULT_PATH}?session={}",
                app.config.public_base_url, route.session_sid
            ))
            .method(Method::Post),
    )
}

/// Asks the platform's intercept URL whether this call may go ahead; HTTP 403 blocks it, as
/// in Twilio Proxy. Any other answer, or none within the timeout (cut to the webhook's
/// budget), lets the call through: a slow platform must not silence its users.
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
    match callback::post_form(app, url, &form, app.budget().cap(CALLBACK_TIMEOUT)).await {
        Ok(r) if r.status == StatusCode::FORBIDDEN => {
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
