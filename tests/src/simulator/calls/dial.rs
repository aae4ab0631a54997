//! `<Dial><Number>`: the dialled leg, the bridge once it answers, and the parent's
//! `<Dial>` ending (its action or the next verb).

use time::OffsetDateTime;

use super::{
    Activity, CallStatus, Direction, Fetch, Job, State, StatusCallbackConfig, TwimlSource, Whisper,
};
use crate::simulator::clock::later;
use crate::simulator::transcript::Event;
use crate::simulator::twiml::{self, Dial, DialTarget};

impl State {
    pub(super) fn start_dial(&mut self, parent_sid: &str, dial: Dial, now: OffsetDateTime) {
        let Some(parent) = self.call(parent_sid) else {
            return;
        };
        let (parent_from, generation) = (parent.from.clone(), parent.generation);
        // The parser never yields an empty Dial, nor a Conference beside anything else.
        let number = match dial.targets.first() {
            Some(DialTarget::Number(number)) => number,
            Some(DialTarget::Conference(noun)) => {
                let noun = noun.clone();
                self.join_conference(parent_sid, dial, noun, now);
                return;
            }
            None => return,
        };
        if dial.targets.len() > 1 {
            let detail = "<Dial> with several nouns: the simulator rings only the first".to_owned();
            self.record(now, Some(parent_sid), Event::Warning { detail });
        }
        let number = number.clone();
        let caller_id = match &dial.caller_id {
            Some(id) if !self.numbers.contains_key(id) && *id != parent_from => {
                // Twilio refuses a caller ID the account doesn't own (13214) and the
                // Dial fails.
                let detail = format!("13214 Dial: invalid callerId {id}");
                self.record(now, Some(parent_sid), Event::Warning { detail });
                let params = vec![("DialCallStatus".to_owned(), "failed".to_owned())];
                let job = Job::DialEnded {
                    parent: parent_sid.to_owned(),
                    generation,
                    dial: Box::new(dial),
                    params,
                };
                self.schedule(now, job);
                return;
            }
            Some(id) => id.clone(),
            // Twilio passes the caller's own number through by default.
            None => parent_from,
        };
        let whisper = number.url.as_ref().map(|url| {
            let document = self.call(parent_sid).map(|p| p.program.url.clone());
            let url = twiml::resolve_url(&document.unwrap_or_default(), url);
            TwimlSource::Url(url, number.url_method)
        });
        let child = self.new_call(now, Direction::OutboundDial, &caller_id, &number.number);
        child.parent_sid = Some(parent_sid.to_owned());
        // TwiML `<Number>`, "url" (https://www.twilio.com/docs/voice/twiml/number#url): a
        // document run on the called party's end once they answer, before the two are
        // connected, while the caller still hears ringing.
        if let Some(source) = whisper {
            child.twiml = Some(source);
            child.whisper = Whisper::Running;
        }
        child.ring_timeout = dial.timeout;
        child.time_limit = dial.time_limit;
        child.status_callback = number.status_callback.map(|url| StatusCallbackConfig {
            url,
            method: number.status_callback_method,
            events: number.status_callback_events,
        });
        let child_sid = child.sid.clone();
        if let Some(parent) = self.call_mut(parent_sid) {
            parent.activity = Activity::Dialing {
                child: child_sid.clone(),
                dial,
            };
        }
        self.schedule(now, Job::Dispatch(child_sid));
    }

    /// A dialled leg was answered: the two phones now talk.
    pub(super) fn bridge(&mut self, child_sid: &str, now: OffsetDateTime) {
        let Some(child) = self.call(child_sid) else {
            return;
        };
        let (b, caller_id) = (child.to.clone(), child.from.clone());
        let Some(parent_sid) = child.parent_sid.clone() else {
            return;
        };
        if let Some(child) = self.call_mut(child_sid) {
            child.bridged_at = Some(now);
        }
        let Some(parent) = self.call_mut(&parent_sid) else {
            return;
        };
        let a = parent.phone().to_owned();
        // With answerOnBridge the caller heard ringing until now.
        let answered_now = parent.answered_at.is_none();
        if answered_now {
            parent.answered_at = Some(now);
            parent.status = CallStatus::InProgress;
        }
        let hang_up = match (parent.hang_up_scheduled, parent.device.hang_up_after) {
            (false, Some(after)) => Some(after),
            _ => None,
        };
        parent.hang_up_scheduled = true;
        if answered_now {
            let by = parent.to.clone();
            self.record(now, Some(&parent_sid), Event::Answered { by });
            self.start_timers(&parent_sid, now);
        }
        self.record(now, Some(child_sid), Event::Bridged { a, b, caller_id });
        if let Some(after) = hang_up {
            self.schedule(later(now, after), Job::PhoneHangUp(parent_sid));
        }
    }

    /// If `child_sid` is the leg its parent's `<Dial>` is waiting on, the Dial is over.
    /// Twilio's action parameters (TwiML Voice: `<Dial>`, "action"): `DialCallStatus`
    /// (`completed` once answered, else the leg's own busy / no-answer / failed /
    /// canceled), `DialCallSid`, `DialBridged` and `DialCallDuration` (0 if never
    /// answered; not sent when the child was redirected to new TwiML).
    pub(super) fn release_parent(
        &mut self,
        child_sid: &str,
        now: OffsetDateTime,
        redirected: bool,
    ) {
        let Some(child) = self.call(child_sid) else {
            return;
        };
        let Some(parent_sid) = child.parent_sid.clone() else {
            return;
        };
        let dial_status = match child.status {
            CallStatus::InProgress | CallStatus::Completed => "completed",
            other => other.as_str(),
        };
        let bridged = child.bridged_at.is_some();
        let recorded = child
            .bridged_at
            .map(|at| (at, child.ended_at.unwrap_or(now)));
        let mut params = vec![
            ("DialCallStatus".to_owned(), dial_status.to_owned()),
            ("DialCallSid".to_owned(), child_sid.to_owned()),
            ("DialBridged".to_owned(), bridged.to_string()),
        ];
        if !redirected {
            let secs = child.duration_secs(now);
            params.push(("DialCallDuration".to_owned(), secs.to_string()));
        }
        let Some(parent) = self.call_mut(&parent_sid) else {
            return;
        };
        let dial = match std::mem::take(&mut parent.activity) {
            Activity::Dialing { child, dial } if child == child_sid => dial,
            other => {
                parent.activity = other;
                return;
            }
        };
        let generation = parent.generation;
        // A recorded Dial's recording covers the bridge and ends with it; its callback
        // names the call that dialled (`CallSid`).
        if let (Some(config), Some((from, to))) = (dial.record.clone(), recorded) {
            self.finish_recording(Some(&parent_sid), None, &config, from, to, now);
        }
        self.schedule(
            now,
            Job::DialEnded {
                parent: parent_sid,
                generation,
                dial: Box::new(dial),
                params,
            },
        );
    }

    /// The parent continues after its `<Dial>`: the action URL decides, or the next verb.
    pub(super) fn dial_ended(
        &mut self,
        sid: &str,
        generation: u64,
        dial: &Dial,
        params: Vec<(String, String)>,
        now: OffsetDateTime,
    ) -> Option<Fetch> {
        let call = self.call(sid)?;
        if call.generation != generation || !call.status.is_live() {
            // The caller hung up: Twilio still requests the action URL but ignores
            // its TwiML. (A redirected parent has moved on and requests nothing.)
            let action = dial.action.as_ref().filter(|_| !call.status.is_live())?;
            let url = twiml::resolve_url(&call.program.url, action);
            let mut fetch = self.fetch(call, url, dial.method, params);
            fetch.execute = false;
            return Some(fetch);
        }
        match &dial.action {
            Some(action) => {
                let url = twiml::resolve_url(&call.program.url, action);
                Some(self.fetch(call, url, dial.method, params))
            }
            None => self.step(sid, generation, now),
        }
    }
}
