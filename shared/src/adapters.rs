//! The domain's ports, implemented: the session store by the DynamoDB `Store`, call control by
//! Twilio's REST API through the app's (request-scoped) `TwilioClient`, the intercept by a
//! signed request to the platform's intercept URL.

use async_trait::async_trait;

use crate::app::App;
use crate::budget::CALLBACK_TIMEOUT;
use crate::callback;
use crate::domain::ports::{
    CallControl, CallError, CallNote, ConferenceRecord, CreateError, Ctx, DueCursor, DueSession,
    Goodbye, Intercept, Mode, Recorded, Ring, Route, RouteCheck, SessionStore, Settings,
    StoreError, TimerError, TimerKind, Timers, Told,
};
use crate::model::{
    CallStatus, Interaction, LiveCall, Participant, ProxyNumber, Session, WarningOutcome,
};
use crate::phone::PhoneNumber;
use crate::store::Store;
use crate::twilio::{NewCall, TwilioError};
use crate::twiml::{Response as TwiML, Say};

impl App {
    /// The domain's view of this app: its store, its Twilio calls (within this request's
    /// budget), its clock and settings.
    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: &self.store,
            calls: self,
            timers: self,
            clock: &*self.clock,
            settings: Settings {
                retention_seconds: self.config.retention_seconds(),
                dial_timeout_seconds: self.config.dial_timeout_seconds,
                rates: self.config.rates,
            },
        }
    }
}

impl From<TwilioError> for CallError {
    fn from(e: TwilioError) -> Self {
        match e {
            TwilioError::Api {
                status,
                code,
                message,
            } => CallError::Refused {
                status,
                code,
                message,
            },
            TwilioError::Transport(why) => CallError::Unreachable(why),
            TwilioError::OutOfTime => CallError::OutOfTime,
            TwilioError::Credentials(why) => CallError::Credentials(why.to_string()),
        }
    }
}

/// Timers as EventBridge schedules. Without `SCHEDULE_GROUP` there are none to set or
/// remove: the minute sweep alone keeps time, as the configuration asked.
#[async_trait]
impl Timers for App {
    async fn set(
        &self,
        session_sid: &str,
        kind: TimerKind,
        at: i64,
        deadline: i64,
    ) -> Result<(), TimerError> {
        match &self.schedules {
            Some(s) => s.put(session_sid, kind, at, deadline).await,
            None => Ok(()),
        }
    }

    async fn cancel(&self, session_sid: &str, kind: TimerKind) -> Result<(), TimerError> {
        match &self.schedules {
            Some(s) => s.delete(session_sid, kind).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl CallControl for App {
    async fn ring(&self, leg: &Ring<'_>) -> Result<String, CallError> {
        let base = &self.config.public_base_url;
        let query = format!(
            "session={}&participant={}&limit={}",
            leg.session_sid, leg.callee.sid, leg.limit
        );
        let url = match leg.mode {
            Mode::Bridge => format!("{base}/twilio/voice/bridge?{query}"),
            Mode::Conference => format!("{base}/twilio/voice/conference?{query}"),
        };
        // `room=1` tells the status callback that this leg's minutes carry the conference fee.
        let room = match leg.mode {
            Mode::Bridge => "",
            Mode::Conference => "&room=1",
        };
        let status_callback = format!(
            "{base}/twilio/voice/status?session={}&participant={}{room}",
            leg.session_sid, leg.callee.sid
        );
        let call = NewCall {
            to: leg.callee.identifier.as_str(),
            from: leg.callee.proxy_identifier.as_str(),
            url: &url,
            status_callback: &status_callback,
            timeout: self.config.dial_timeout_seconds,
            time_limit: leg.leg_limit,
        };
        Ok(self.twilio.create_call(&self.secrets, &call).await?)
    }

    async fn hang_up(&self, call_sid: &str) -> Result<(), CallError> {
        Ok(self.twilio.hang_up(&self.secrets, call_sid).await?)
    }

    async fn cancel(&self, call_sid: &str) -> Result<(), CallError> {
        Ok(self.twilio.cancel(&self.secrets, call_sid).await?)
    }

    async fn end_call(&self, call_sid: &str) -> Result<(), CallError> {
        Ok(self.twilio.end_call(&self.secrets, call_sid).await?)
    }

    async fn call_status(&self, call_sid: &str) -> Result<Option<CallStatus>, CallError> {
        let status = self.twilio.call_status(&self.secrets, call_sid).await?;
        Ok(CallStatus::parse(&status))
    }

    async fn say_goodbye(&self, call_sid: &str, why: Goodbye) -> Result<(), CallError> {
        let prompts = &self.config.prompts;
        let text = match why {
            Goodbye::OtherUnreachable => &prompts.other_unreachable,
            Goodbye::OtherBusy => &prompts.other_busy,
            Goodbye::OtherNoAnswer => &prompts.other_no_answer,
            Goodbye::OtherFailed => &prompts.other_failed,
        };
        let say = Say::new(text)
            .language(prompts.language.clone())
            .voice(prompts.voice.clone());
        let message = TwiML::new().say(say).hangup().to_xml();
        Ok(self
            .twilio
            .play_and_end(&self.secrets, call_sid, &message)
            .await?)
    }

    async fn end_conference(&self, conference_sid: &str) -> Result<(), CallError> {
        Ok(self
            .twilio
            .end_conference(&self.secrets, conference_sid)
            .await?)
    }

    async fn hold_for_warning(
        &self,
        session_sid: &str,
        deadline: i64,
        asking: bool,
        conference_sid: &str,
        call_sid: &str,
    ) -> Result<(), CallError> {
        let base = &self.config.public_base_url;
        let offer = if asking { "" } else { "&offer=none" };
        let hold_url = format!(
            "{base}/twilio/voice/extension/hold?session={session_sid}&deadline={deadline}{offer}"
        );
        Ok(self
            .twilio
            .hold(
                &self.secrets,
                conference_sid,
                call_sid,
                Some(&hold_url),
                None,
            )
            .await?)
    }

    async fn unhold(
        &self,
        session_sid: &str,
        conference_sid: &str,
        call_sid: &str,
        told: Option<Told>,
    ) -> Result<(), CallError> {
        let base = &self.config.public_base_url;
        // The outcome plays to this participant alone, as they come off hold.
        let announce = told.map(|told| {
            let what = match told {
                Told::Extended { minutes, deadline } => {
                    format!("told=extended&by={minutes}&deadline={deadline}")
                }
                Told::Ending => "told=ending".to_owned(),
            };
            format!("{base}/twilio/voice/extension/hold?session={session_sid}&{what}")
        });
        Ok(self
            .twilio
            .hold(
                &self.secrets,
                conference_sid,
                call_sid,
                None,
                announce.as_deref(),
            )
            .await?)
    }

    async fn announce_notice(
        &self,
        session_sid: &str,
        _deadline: i64,
        conference_sid: &str,
    ) -> Result<(), CallError> {
        let base = &self.config.public_base_url;
        let url = format!("{base}/twilio/voice/extension/hold?session={session_sid}&told=notice");
        Ok(self
            .twilio
            .announce_to_conference(&self.secrets, conference_sid, &url)
            .await?)
    }

    async fn announce_time_left(
        &self,
        session_sid: &str,
        deadline: i64,
        conference_sid: &str,
    ) -> Result<(), CallError> {
        let base = &self.config.public_base_url;
        let url = format!(
            "{base}/twilio/voice/extension/hold?session={session_sid}&told=time-left&deadline={deadline}"
        );
        Ok(self
            .twilio
            .announce_to_conference(&self.secrets, conference_sid, &url)
            .await?)
    }

    async fn set_time_limit(&self, call_sid: &str, seconds: u64) -> Result<(), CallError> {
        Ok(self
            .twilio
            .set_time_limit(&self.secrets, call_sid, seconds)
            .await?)
    }

    async fn prompt_extension(
        &self,
        session_sid: &str,
        deadline: i64,
        call_sid: &str,
    ) -> Result<(), CallError> {
        let base = &self.config.public_base_url;
        let prompt = format!(
            "{base}/twilio/voice/extension/prompt?session={session_sid}&deadline={deadline}"
        );
        Ok(self
            .twilio
            .redirect(&self.secrets, call_sid, &prompt)
            .await?)
    }
}

/// Asks the platform's intercept URL, as Twilio Proxy does: HTTP 403 blocks the call. The
/// wait is cut to the request's budget.
#[async_trait]
impl Intercept for App {
    async fn allows(&self, route: &Route, call_sid: &str) -> bool {
        let Some(url) = &self.config.intercept_callback_url else {
            return true;
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
        match callback::post_form(self, url, &form, self.budget().cap(CALLBACK_TIMEOUT)).await {
            Ok(r) => r.status != http::StatusCode::FORBIDDEN,
            Err(e) => {
                tracing::warn!(error = %e, "intercept callback failed; letting the call through");
                true
            }
        }
    }
}

#[async_trait]
impl SessionStore for Store {
    async fn get_session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        Store::get_session(self, sid).await
    }
    async fn get_sessions(
        &self,
        sids: &[String],
    ) -> Result<std::collections::HashMap<String, Session>, StoreError> {
        Store::get_sessions(self, sids).await
    }
    async fn session_sid_by_unique_name(&self, name: &str) -> Result<Option<String>, StoreError> {
        Store::session_sid_by_unique_name(self, name).await
    }
    async fn create_session(&self, session: &Session, now: i64) -> Result<(), CreateError> {
        Store::create_session(self, session, now).await
    }
    async fn close_session(
        &self,
        session: &Session,
        reason: &str,
        now: i64,
        expire_at: i64,
    ) -> Result<(), StoreError> {
        Store::close_session(self, session, reason, now, expire_at).await
    }
    async fn extend_session(
        &self,
        session: &Session,
        seconds: i64,
        due: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        Store::extend_session(self, session, seconds, due, now).await
    }
    async fn admit_route(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        call_sid: &str,
        now: i64,
    ) -> Result<RouteCheck, StoreError> {
        Store::admit_route(self, proxy, caller, call_sid, now).await
    }
    async fn forget_call(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        call_sid: &str,
        prior: &CallNote,
    ) -> Result<bool, StoreError> {
        Store::forget_call(self, proxy, caller, call_sid, prior).await
    }
    async fn reopen_session(
        &self,
        before: &Session,
        after: &Session,
        now: i64,
    ) -> Result<(), CreateError> {
        Store::reopen_session(self, before, after, now).await
    }
    async fn update_session_times(
        &self,
        before: &Session,
        after: &Session,
        due: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        Store::update_session_times(self, before, after, due, now).await
    }
    async fn add_participant(
        &self,
        session: &Session,
        participant: &Participant,
        now: i64,
    ) -> Result<(), CreateError> {
        Store::add_participant(self, session, participant, now).await
    }
    async fn remove_participant(
        &self,
        session: &Session,
        index: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        Store::remove_participant(self, session, index, now).await
    }
    async fn start_inbound_leg(
        &self,
        leg: &Interaction,
        route: (&PhoneNumber, &PhoneNumber),
        live: Option<&LiveCall>,
        now: i64,
        retention: i64,
    ) -> Result<bool, StoreError> {
        Store::start_inbound_leg(self, leg, route, live, now, retention).await
    }
    async fn list_interactions(&self, session_sid: &str) -> Result<Vec<Interaction>, StoreError> {
        Store::list_interactions(self, session_sid).await
    }
    async fn list_numbers(&self) -> Result<Vec<ProxyNumber>, StoreError> {
        Store::list_numbers(self).await
    }
    async fn proxies_of(&self, participant: &PhoneNumber) -> Result<Vec<PhoneNumber>, StoreError> {
        Store::proxies_of(self, participant).await
    }
    async fn lock_calls(&self, sid: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        Store::lock_calls(self, sid, now, until).await
    }
    async fn unlock_calls(&self, sid: &str) -> Result<(), StoreError> {
        Store::unlock_calls(self, sid).await
    }
    async fn begin_live_call(
        &self,
        sid: &str,
        mode: Mode,
        limit: u64,
        replace: bool,
    ) -> Result<(), StoreError> {
        Store::begin_live_call(self, sid, mode, limit, replace).await
    }
    async fn abandon_live_call(
        &self,
        sid: &str,
        mode: Mode,
        limit: u64,
    ) -> Result<bool, StoreError> {
        Store::abandon_live_call(self, sid, mode, limit).await
    }
    async fn connect_live_call(
        &self,
        sid: &str,
        deadline: i64,
        due: i64,
    ) -> Result<bool, StoreError> {
        Store::connect_live_call(self, sid, deadline, due).await
    }
    async fn record_leg(
        &self,
        leg: &Interaction,
        now: i64,
        retention: i64,
    ) -> Result<Recorded, StoreError> {
        Store::record_leg(self, leg, now, retention).await
    }
    async fn clear_live_call(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError> {
        Store::clear_live_call(self, sid, due).await
    }
    async fn claim_notice(&self, sid: &str, deadline: i64) -> Result<bool, StoreError> {
        Store::claim_notice(self, sid, deadline).await
    }
    async fn claim_warning(
        &self,
        sid: &str,
        deadline: i64,
        outcome: WarningOutcome,
    ) -> Result<bool, StoreError> {
        Store::claim_warning(self, sid, deadline, outcome.as_str()).await
    }
    async fn extend_live_call(
        &self,
        session: &Session,
        from: i64,
        to: i64,
        due: i64,
        max_count: u32,
        now: i64,
    ) -> Result<(), StoreError> {
        Store::extend_live_call(self, session, from, to, due, max_count, now).await
    }
    async fn set_due(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError> {
        Store::set_due(self, sid, due).await
    }
    async fn get_conference(
        &self,
        session_sid: &str,
        conference_sid: &str,
    ) -> Result<Option<ConferenceRecord>, StoreError> {
        Store::get_conference(self, session_sid, conference_sid).await
    }
    async fn conference_ended(
        &self,
        session_sid: &str,
        conference_sid: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        Store::end_conference(self, session_sid, conference_sid, reason, now).await
    }
    async fn due_page(
        &self,
        shard: u32,
        now: i64,
        start: Option<DueCursor>,
    ) -> Result<(Vec<DueSession>, Option<DueCursor>), StoreError> {
        Store::due_page(self, shard, now, start).await
    }
}
