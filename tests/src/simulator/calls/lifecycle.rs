//! A call's life: creating it, ringing, answering, its time limit and its phone's hang-up,
//! ending it, and the requests Twilio makes about it (its parameters, status callbacks).

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    Activity, Call, CallStatus, Callback, DEFAULT_TIME_LIMIT, Device, Direction, Fetch, Job, Leave,
    OutboundCall, Program, Purpose, State, StatusCallbackConfig, TwimlSource, Whisper,
};
use crate::simulator::clock::later;
use crate::simulator::transcript::Event;
use crate::simulator::twiml::{HttpMethod, ProgressEvent};
use crate::simulator::{CallerScript, PhoneScript, rfc2822};

impl State {
    pub(super) fn new_call(
        &mut self,
        now: OffsetDateTime,
        direction: Direction,
        from: &str,
        to: &str,
    ) -> &mut Call {
        let sid = format!("CA{}", uuid::Uuid::new_v4().simple());
        self.calls.push(Call {
            sid,
            parent_sid: None,
            direction,
            from: from.to_owned(),
            to: to.to_owned(),
            status: CallStatus::Queued,
            created_at: now,
            answered_at: None,
            ended_at: None,
            device: Device::default(),
            twiml: None,
            ring_timeout: Duration::from_secs(60),
            time_limit: DEFAULT_TIME_LIMIT,
            deadline: None,
            status_callback: None,
            callback_sequence: 0,
            generation: 0,
            program: Program::default(),
            activity: Activity::Idle,
            hang_up_scheduled: false,
            ended_via_api: false,
            whisper: Whisper::None,
            bridged_at: None,
        });
        let last = self.calls.len() - 1;
        &mut self.calls[last]
    }

    /// The parameters Twilio sends with every request about a call.
    pub fn call_params(&self, call: &Call) -> Vec<(String, String)> {
        let mut params = vec![
            ("AccountSid".to_owned(), self.account_sid.clone()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
            ("CallSid".to_owned(), call.sid.clone()),
            ("CallStatus".to_owned(), call.status.as_str().to_owned()),
            ("Direction".to_owned(), call.direction.as_str().to_owned()),
            ("From".to_owned(), call.from.clone()),
            ("To".to_owned(), call.to.clone()),
            ("Caller".to_owned(), call.from.clone()),
            ("Called".to_owned(), call.to.clone()),
        ];
        if let Some(country) = country_of(&call.from) {
            params.push(("FromCountry".to_owned(), country.to_owned()));
            params.push(("CallerCountry".to_owned(), country.to_owned()));
        }
        if let Some(country) = country_of(&call.to) {
            params.push(("ToCountry".to_owned(), country.to_owned()));
            params.push(("CalledCountry".to_owned(), country.to_owned()));
        }
        if let Some(parent) = &call.parent_sid {
            params.push(("ParentCallSid".to_owned(), parent.clone()));
        }
        params
    }

    pub(super) fn fetch(
        &self,
        call: &Call,
        url: String,
        method: HttpMethod,
        extra: Vec<(String, String)>,
    ) -> Fetch {
        let mut params = self.call_params(call);
        params.extend(extra);
        Fetch {
            call: call.sid.clone(),
            generation: call.generation,
            url,
            method,
            params,
            inline: None,
            execute: true,
            purpose: Purpose::Twiml,
        }
    }

    /// Queues the status callback for `event` if the leg asked for it (`completed`
    /// always is, when there is a callback URL at all).
    fn status_callback(&mut self, sid: &str, event: ProgressEvent, now: OffsetDateTime) {
        let Some(call) = self.call(sid) else { return };
        let Some(config) = call.status_callback.clone() else {
            return;
        };
        if event != ProgressEvent::Completed && !config.events.contains(&event) {
            return;
        }
        let mut params = self.call_params(call);
        // `initiated` exists only in callbacks; the resource still says `queued`.
        let call_status = match event {
            ProgressEvent::Initiated => "initiated",
            _ => call.status.as_str(),
        };
        if let Some((_, value)) = params.iter_mut().find(|(name, _)| name == "CallStatus") {
            *value = call_status.to_owned();
        }
        let sequence = call.callback_sequence;
        params.push((
            "CallbackSource".to_owned(),
            "call-progress-events".to_owned(),
        ));
        params.push(("Timestamp".to_owned(), rfc2822(now)));
        params.push(("SequenceNumber".to_owned(), sequence.to_string()));
        if event == ProgressEvent::Completed {
            let secs = call.duration_secs(now);
            params.push(("CallDuration".to_owned(), secs.to_string()));
            // Twilio bills (and reports `Duration`) in started minutes.
            params.push(("Duration".to_owned(), secs.div_ceil(60).to_string()));
        }
        let callback = Callback {
            call: sid.to_owned(),
            url: config.url,
            method: config.method,
            params,
            call_status: call_status.to_owned(),
            conference_event: None,
            recording: None,
        };
        self.outbox.push_back(callback);
        if let Some(call) = self.call_mut(sid) {
            call.callback_sequence += 1;
        }
    }

    /// A phone calls a Twilio number. Returns the new CallSid; the first TwiML request
    /// is queued.
    pub fn dial_in(
        &mut self,
        now: OffsetDateTime,
        from: &str,
        to: &str,
        caller: CallerScript,
    ) -> String {
        let number = self.numbers.get(to).cloned();
        let call = self.new_call(now, Direction::Inbound, from, to);
        call.status = CallStatus::Ringing;
        call.device = Device {
            hang_up_after: caller.hang_up_after,
            digits: caller.digits,
        };
        let sid = call.sid.clone();
        let Some(number) = number else {
            let detail = format!("{to} is not a number of this account");
            self.record(now, Some(&sid), Event::Warning { detail });
            self.end_call(&sid, CallStatus::Failed, now);
            return sid;
        };
        self.record(now, Some(&sid), Event::Ringing { to: to.to_owned() });
        if let Some(call) = self.call_mut(&sid) {
            call.status_callback = number.status_callback.map(|url| StatusCallbackConfig {
                url,
                method: HttpMethod::Post,
                events: Vec::new(),
            });
        }
        if let Some(call) = self.call(&sid) {
            let fetch = self.fetch(call, number.voice_url, HttpMethod::Post, Vec::new());
            self.schedule(now, Job::Fetch(Box::new(fetch)));
        }
        sid
    }

    /// An outbound-api call created through the REST API.
    pub fn create_outbound(&mut self, now: OffsetDateTime, request: OutboundCall) -> String {
        let call = self.new_call(now, Direction::OutboundApi, &request.from, &request.to);
        call.twiml = Some(request.twiml);
        call.status_callback = request.status_callback;
        call.ring_timeout = request.ring_timeout;
        call.time_limit = request.time_limit;
        let sid = call.sid.clone();
        self.schedule(now, Job::Dispatch(sid.clone()));
        sid
    }

    /// An outbound leg starts ringing its phone, which then behaves per its script.
    pub(super) fn dispatch(&mut self, sid: &str, now: OffsetDateTime) {
        let Some(call) = self
            .call_mut(sid)
            .filter(|c| c.status == CallStatus::Queued)
        else {
            return;
        };
        let to = call.to.clone();
        let ring_timeout = call.ring_timeout;
        self.status_callback(sid, ProgressEvent::Initiated, now);
        let script = if is_e164(&to) {
            self.phones.get(&to).cloned().unwrap_or_default()
        } else {
            PhoneScript::Fail
        };
        match script {
            PhoneScript::Busy => {
                self.record(now, Some(sid), Event::Busy { to });
                self.end_call(sid, CallStatus::Busy, now);
            }
            PhoneScript::Fail => self.end_call(sid, CallStatus::Failed, now),
            PhoneScript::NoAnswer => {
                self.ring(sid, &to, now);
                self.schedule(later(now, ring_timeout), Job::RingTimeout(sid.to_owned()));
            }
            PhoneScript::Answer {
                after,
                hang_up_after,
                digits,
            } => {
                self.ring(sid, &to, now);
                if let Some(call) = self.call_mut(sid) {
                    call.device = Device {
                        hang_up_after,
                        digits,
                    };
                }
                if after < ring_timeout {
                    self.schedule(later(now, after), Job::Answer(sid.to_owned()));
                } else {
                    self.schedule(later(now, ring_timeout), Job::RingTimeout(sid.to_owned()));
                }
            }
        }
    }

    fn ring(&mut self, sid: &str, to: &str, now: OffsetDateTime) {
        if let Some(call) = self.call_mut(sid) {
            call.status = CallStatus::Ringing;
        }
        self.record(now, Some(sid), Event::Ringing { to: to.to_owned() });
        self.status_callback(sid, ProgressEvent::Ringing, now);
    }

    /// The phone on an outbound leg picks up: a dialled leg is bridged to its parent,
    /// an outbound-api leg fetches its TwiML.
    pub(super) fn answer(&mut self, sid: &str, now: OffsetDateTime) -> Option<Fetch> {
        let call = self
            .call_mut(sid)
            .filter(|c| c.status == CallStatus::Ringing)?;
        call.status = CallStatus::InProgress;
        call.answered_at = Some(now);
        let by = call.to.clone();
        self.record(now, Some(sid), Event::Answered { by });
        self.status_callback(sid, ProgressEvent::Answered, now);
        self.start_timers(sid, now);

        let call = self.call(sid)?;
        if call.direction == Direction::OutboundDial && call.whisper != Whisper::Running {
            self.bridge(sid, now);
            return None;
        }
        // An outbound-api leg's TwiML, or a dialled leg's `<Number url>` document.
        match call.twiml.clone()? {
            TwimlSource::Url(url, method) => Some(self.fetch(call, url, method, Vec::new())),
            TwimlSource::Inline(twiml) => {
                let mut fetch = self.fetch(call, String::new(), HttpMethod::Post, Vec::new());
                fetch.inline = Some(twiml);
                Some(fetch)
            }
        }
    }

    /// From answer on, a leg is limited in time and its phone may hang up.
    pub(super) fn start_timers(&mut self, sid: &str, now: OffsetDateTime) {
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        let deadline = later(now, call.time_limit);
        call.deadline = Some(deadline);
        // An inbound caller's own hang-up counts from bridging (see `bridge`).
        let hang_up = match call.direction {
            Direction::Inbound => None,
            _ => call.device.hang_up_after,
        };
        if hang_up.is_some() {
            call.hang_up_scheduled = true;
        }
        self.schedule(deadline, Job::TimeLimit(sid.to_owned(), deadline));
        if let Some(after) = hang_up {
            self.schedule(later(now, after), Job::PhoneHangUp(sid.to_owned()));
        }
    }

    pub(super) fn ring_timeout(&mut self, sid: &str, now: OffsetDateTime) {
        let Some(call) = self.call(sid).filter(|c| c.status == CallStatus::Ringing) else {
            return;
        };
        let to = call.to.clone();
        self.record(now, Some(sid), Event::NoAnswer { to });
        self.end_call(sid, CallStatus::NoAnswer, now);
    }

    pub(super) fn phone_hang_up(&mut self, sid: &str, now: OffsetDateTime) {
        let Some(call) = self.call(sid).filter(|c| c.status.is_live()) else {
            return;
        };
        let by = call.phone().to_owned();
        self.record(now, Some(sid), Event::HungUp { by });
        self.hang_up(sid, now);
    }

    pub(super) fn time_limit(&mut self, sid: &str, deadline: OffsetDateTime, now: OffsetDateTime) {
        let Some(call) = self.call(sid) else { return };
        // A REST `TimeLimit` update replaces the deadline; the old job is then stale.
        if !call.status.is_live() || call.deadline != Some(deadline) {
            return;
        }
        let by = "timeLimit".to_owned();
        self.record(now, Some(sid), Event::HungUp { by });
        self.hang_up(sid, now);
    }

    /// Ends a call the way a hang-up does: an unanswered call is canceled.
    pub fn hang_up(&mut self, sid: &str, now: OffsetDateTime) {
        let Some(call) = self.call(sid) else { return };
        let status = match call.status {
            CallStatus::InProgress => CallStatus::Completed,
            _ => CallStatus::Canceled,
        };
        self.end_call(sid, status, now);
    }

    /// REST `Status=completed`: the call ends as a hang-up does.
    pub fn end_via_api(&mut self, sid: &str, now: OffsetDateTime) {
        if let Some(call) = self.call_mut(sid).filter(|c| c.status.is_live()) {
            call.ended_via_api = true;
        }
        self.hang_up(sid, now);
    }

    /// Ends a live call with its final status: a parent takes its dialled leg down
    /// with it, a dialled leg hands control back to its parent's `<Dial>`.
    pub fn end_call(&mut self, sid: &str, status: CallStatus, now: OffsetDateTime) {
        let Some(call) = self.call(sid).filter(|c| c.status.is_live()) else {
            return;
        };
        match &call.activity {
            Activity::Dialing { child, .. } => {
                let child = child.clone();
                self.hang_up(&child, now);
            }
            Activity::Conferencing { .. } => {
                let via_api = call.ended_via_api;
                self.leave_conference(sid, Leave::CallEnded { status, via_api }, now);
            }
            _ => {}
        }
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        call.status = status;
        call.ended_at = Some(now);
        call.generation += 1;
        call.activity = Activity::Idle;
        call.deadline = None;
        let duration_secs = call.duration_secs(now);
        self.record(
            now,
            Some(sid),
            Event::Completed {
                call_sid: sid.to_owned(),
                status: status.as_str().to_owned(),
                duration_secs,
            },
        );
        self.status_callback(sid, ProgressEvent::Completed, now);
        self.invitation_ended(sid, status, now);
        self.release_parent(sid, now, false);
    }

    /// Twilio answers an inbound call when it starts executing its TwiML.
    pub(super) fn ensure_answered(&mut self, sid: &str, now: OffsetDateTime) {
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        if call.answered_at.is_some() || call.status != CallStatus::Ringing {
            return;
        }
        call.status = CallStatus::InProgress;
        call.answered_at = Some(now);
        let by = call.to.clone();
        self.record(now, Some(sid), Event::Answered { by });
        self.start_timers(sid, now);
    }

    /// A new time limit counted from now (or from the answer, if not answered yet).
    pub fn set_time_limit(&mut self, sid: &str, limit: Duration, now: OffsetDateTime) {
        let Some(call) = self.call_mut(sid).filter(|c| c.status.is_live()) else {
            return;
        };
        call.time_limit = limit;
        if call.status == CallStatus::InProgress {
            let deadline = later(now, limit);
            call.deadline = Some(deadline);
            self.schedule(deadline, Job::TimeLimit(sid.to_owned(), deadline));
        }
    }
}

/// `+` and 8 to 15 digits.
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The ISO country of a few calling codes, as in Twilio's `FromCountry`/`ToCountry`.
fn country_of(number: &str) -> Option<&'static str> {
    const CODES: [(&str, &str); 6] = [
        ("+81", "JP"),
        ("+1", "US"),
        ("+44", "GB"),
        ("+82", "KR"),
        ("+86", "CN"),
        ("+61", "AU"),
    ];
    CODES
        .iter()
        .find(|(prefix, _)| number.starts_with(prefix))
        .map(|(_, country)| *country)
}
