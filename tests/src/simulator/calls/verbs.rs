//! Running TwiML: the answer to a request becomes the leg's program, whose verbs (Say,
//! Play, Pause, Gather, Redirect, Hangup, Reject) run in virtual time; `<Dial>` is
//! handed to `dial`, `<Dial><Conference>` to `conference`.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    Activity, CallStatus, Fetch, FetchResult, Job, Leave, Program, Purpose, State, TwimlSource,
    Whisper,
};
use crate::simulator::clock::later;
use crate::simulator::transcript::Event;
use crate::simulator::twiml::{self, Gather, HttpMethod, Verb};

/// How long `<Play>` is taken to last: the simulator never downloads the audio.
const PLAY_LENGTH: Duration = Duration::from_secs(5);
/// Stands in for "forever" (`loop="0"`): the leg stays busy until something interrupts it.
const FOREVER: Duration = Duration::from_secs(86_400);
const APPLICATION_ERROR_MESSAGE: &str = "We are sorry, an application error has occurred. Goodbye.";

impl State {
    /// Applies the answer to a [`Fetch`]; may return the next one (e.g. `<Redirect>`).
    pub fn fetched(
        &mut self,
        fetch: Fetch,
        result: FetchResult,
        now: OffsetDateTime,
    ) -> Option<Fetch> {
        if fetch.purpose != Purpose::Twiml {
            return self.side_fetched(fetch, result, now);
        }
        let sid = fetch.call.as_str();
        let parsed = match result {
            Ok((status, body)) => {
                if fetch.inline.is_none() {
                    let url = fetch.url.clone();
                    self.record(now, Some(sid), Event::Webhook { url, status });
                }
                if (200..300).contains(&status) {
                    twiml::parse(&body)
                        .map_err(|detail| (status, format!("invalid TwiML: {detail}")))
                } else {
                    Err((status, format!("HTTP {status}")))
                }
            }
            Err(detail) => Err((0, detail)),
        };
        if !fetch.execute || self.current(sid, fetch.generation).is_none() {
            return None;
        }
        match parsed {
            Ok(verbs) => {
                let call = self.call_mut(sid)?;
                call.program = Program {
                    url: fetch.url,
                    verbs,
                    pc: 0,
                };
                self.step(sid, fetch.generation, now)
            }
            Err((status, detail)) => {
                let url = fetch
                    .inline
                    .map_or(fetch.url, |_| "(inline TwiML)".to_owned());
                self.application_error(sid, url, status, detail, now);
                None
            }
        }
    }

    /// A chain of requests that never lets time pass: for a call's own TwiML an
    /// application error, for hold music or an announcement a warning.
    pub fn request_loop(&mut self, fetch: &Fetch, detail: &str, now: OffsetDateTime) {
        if fetch.purpose == Purpose::Twiml {
            let url = fetch.url.clone();
            self.application_error(&fetch.call, url, 0, detail.to_owned(), now);
        } else {
            let detail = format!("{}: {detail}", fetch.url);
            self.record(now, Some(&fetch.call), Event::Warning { detail });
        }
    }

    /// Twilio apologises to the caller and hangs up.
    pub fn application_error(
        &mut self,
        sid: &str,
        url: String,
        status: u16,
        detail: String,
        now: OffsetDateTime,
    ) {
        self.record(
            now,
            Some(sid),
            Event::ApplicationError {
                url,
                status,
                detail,
            },
        );
        self.ensure_answered(sid, now);
        if let Some(call) = self.call(sid) {
            let to = call.phone().to_owned();
            let text = APPLICATION_ERROR_MESSAGE.to_owned();
            let language = Some("en-US".to_owned());
            self.record(
                now,
                Some(sid),
                Event::Said {
                    to,
                    text,
                    language,
                    voice: None,
                },
            );
        }
        self.end_call(sid, CallStatus::Completed, now);
    }

    /// Executes verbs until one takes time, needs a request, or ends the call.
    pub(super) fn step(
        &mut self,
        sid: &str,
        generation: u64,
        now: OffsetDateTime,
    ) -> Option<Fetch> {
        loop {
            let call = self.current(sid, generation)?;
            if let Activity::Gathering { gather, prompt_pc } = &mut call.activity {
                // Play the Gather's prompt; the GatherDone job ends the Gather.
                let verb = gather.prompt.get(*prompt_pc).cloned()?;
                *prompt_pc += 1;
                let took = self.perform_timed(sid, &verb, now);
                self.schedule(later(now, took), Job::Step(sid.to_owned(), generation));
                return None;
            }
            if matches!(
                call.activity,
                Activity::Dialing { .. } | Activity::Conferencing { .. }
            ) {
                return None;
            }
            let Some(verb) = call.program.verbs.get(call.program.pc).cloned() else {
                match call.whisper {
                    // A `<Number url>` document that ends connects the called party to the
                    // caller (TwiML `<Number>`, "url").
                    Whisper::Running => {
                        call.whisper = Whisper::Done;
                        self.bridge(sid, now);
                    }
                    Whisper::Done => {}
                    // Falling off the end of the document hangs up.
                    Whisper::None => self.end_call(sid, CallStatus::Completed, now),
                }
                return None;
            };
            if call.whisper == Whisper::Running && matches!(verb, Verb::Dial(_)) {
                // "TwiML documents executed in this manner are not allowed to contain the
                // <Dial> verb" (TwiML `<Number>`, "url").
                let url = call.program.url.clone();
                let detail = "<Dial> in a <Number url> document".to_owned();
                self.application_error(sid, url, 200, detail, now);
                return None;
            }
            call.program.pc += 1;
            let unanswered = call.answered_at.is_none();
            match &verb {
                Verb::Reject { .. } => {}
                Verb::Dial(dial) if dial.answer_on_bridge => {}
                _ => self.ensure_answered(sid, now),
            }
            match verb {
                Verb::Say { .. } | Verb::Play { .. } | Verb::Pause { .. } => {
                    let took = self.perform_timed(sid, &verb, now);
                    if !took.is_zero() {
                        self.schedule(later(now, took), Job::Step(sid.to_owned(), generation));
                        return None;
                    }
                }
                Verb::Hangup => {
                    self.end_call(sid, CallStatus::Completed, now);
                    return None;
                }
                Verb::Reject { busy } => {
                    // Only an unanswered call can be refused; later it just hangs up.
                    let status = match (unanswered, busy) {
                        (true, true) => CallStatus::Busy,
                        (true, false) => CallStatus::NoAnswer,
                        (false, _) => CallStatus::Completed,
                    };
                    self.end_call(sid, status, now);
                    return None;
                }
                Verb::Redirect { url, method } => {
                    let call = self.call(sid)?;
                    let url = twiml::resolve_url(&call.program.url, &url);
                    return Some(self.fetch(call, url, method, Vec::new()));
                }
                Verb::Gather(gather) => self.start_gather(sid, gather, now),
                Verb::Dial(dial) => {
                    self.start_dial(sid, dial, now);
                    return None;
                }
            }
        }
    }

    /// Say / Play / Pause: records what the phone hears and returns how long it takes.
    fn perform_timed(&mut self, sid: &str, verb: &Verb, now: OffsetDateTime) -> Duration {
        let Some(call) = self.call(sid) else {
            return Duration::ZERO;
        };
        let to = call.phone().to_owned();
        self.perform_to(&[(sid.to_owned(), to)], verb, now)
    }

    /// Say / Play / Pause heard by each `(CallSid, phone)` at once (one recorded entry
    /// per phone); returns how long it takes.
    pub(super) fn perform_to(
        &mut self,
        listeners: &[(String, String)],
        verb: &Verb,
        now: OffsetDateTime,
    ) -> Duration {
        for (sid, to) in listeners {
            let event = match verb {
                Verb::Say {
                    text,
                    language,
                    voice,
                    ..
                } => Event::Said {
                    to: to.clone(),
                    text: text.clone(),
                    language: language.clone(),
                    voice: voice.clone(),
                },
                Verb::Play { url, .. } => Event::Played {
                    to: to.clone(),
                    url: url.clone(),
                },
                _ => continue,
            };
            self.record(now, Some(sid), event);
        }
        nominal_length(verb)
    }

    /// Works out now, from the phone's script, which digits the Gather will get and
    /// when it ends; the prompt plays until then.
    fn start_gather(&mut self, sid: &str, gather: Gather, now: OffsetDateTime) {
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        let prompt_length = gather
            .prompt
            .iter()
            .map(nominal_length)
            .fold(Duration::ZERO, Duration::saturating_add);
        let (ends_after, digits) = gather_outcome(&gather, prompt_length, &call.device.digits);
        let generation = call.generation;
        call.activity = Activity::Gathering {
            gather,
            prompt_pc: 0,
        };
        let job = Job::GatherDone {
            call: sid.to_owned(),
            generation,
            digits,
        };
        self.schedule(later(now, ends_after), job);
    }

    pub(super) fn gather_done(
        &mut self,
        sid: &str,
        generation: u64,
        digits: String,
        now: OffsetDateTime,
    ) -> Option<Fetch> {
        let call = self.current(sid, generation)?;
        let Activity::Gathering { gather, .. } = std::mem::take(&mut call.activity) else {
            return None;
        };
        // Cancels the rest of the prompt.
        call.generation += 1;
        let generation = call.generation;
        let by = call.phone().to_owned();
        if digits.is_empty() && !gather.action_on_empty_result {
            return self.step(sid, generation, now);
        }
        if !digits.is_empty() {
            let pressed = Event::Pressed {
                by,
                digits: digits.clone(),
            };
            self.record(now, Some(sid), pressed);
        }
        let call = self.call(sid)?;
        // Without an action Twilio posts back to the current document.
        let action = gather.action.as_deref().unwrap_or(&call.program.url);
        let url = twiml::resolve_url(&call.program.url, action);
        let params = vec![("Digits".to_owned(), digits)];
        Some(self.fetch(call, url, gather.method, params))
    }

    /// The leg drops what it is doing (a bridge included) and runs new TwiML.
    pub fn redirect(&mut self, sid: &str, source: TwimlSource, now: OffsetDateTime) {
        let Some(call) = self.call_mut(sid).filter(|c| c.status.is_live()) else {
            return;
        };
        if call.status != CallStatus::InProgress {
            // Not answered yet: the new TwiML is what runs on answer.
            call.twiml = Some(source);
            return;
        }
        match &call.activity {
            Activity::Dialing { child, .. } => {
                let child = child.clone();
                self.hang_up(&child, now);
            }
            // New TwiML takes the leg out of its conference.
            Activity::Conferencing { .. } => self.leave_conference(sid, Leave::Redirected, now),
            _ => {}
        }
        // A bridged child leaving the bridge ends its parent's Dial.
        self.release_parent(sid, now, true);
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        call.generation += 1;
        call.activity = Activity::Idle;
        let Some(call) = self.call(sid) else { return };
        let fetch = match source {
            TwimlSource::Url(url, method) => self.fetch(call, url, method, Vec::new()),
            TwimlSource::Inline(twiml) => {
                let mut fetch = self.fetch(call, String::new(), HttpMethod::Post, Vec::new());
                fetch.inline = Some(twiml);
                fetch
            }
        };
        self.schedule(now, Job::Fetch(Box::new(fetch)));
    }
}

/// About a second per 8 characters of speech, at least a second.
fn speech_length(text: &str) -> Duration {
    let chars = u64::try_from(text.chars().count()).unwrap_or(u64::MAX);
    Duration::from_secs(chars.div_ceil(8).max(1))
}

fn repeated(once: Duration, loops: u32) -> Duration {
    if loops == 0 {
        FOREVER
    } else {
        once.saturating_mul(loops).min(FOREVER)
    }
}

fn nominal_length(verb: &Verb) -> Duration {
    match verb {
        Verb::Say { text, loops, .. } => repeated(speech_length(text), *loops),
        Verb::Play { loops, .. } => repeated(PLAY_LENGTH, *loops),
        Verb::Pause { length } => *length,
        _ => Duration::ZERO,
    }
}

/// When a Gather ends (relative to its start) and with which digits, given the
/// phone's key presses relative to the Gather's start. Pressing a key interrupts the
/// prompt; `timeout` counts from the end of the prompt, then from each key press.
fn gather_outcome(
    gather: &Gather,
    prompt_length: Duration,
    presses: &[(Duration, char)],
) -> (Duration, String) {
    let mut presses = presses.to_vec();
    presses.sort_by_key(|(at, _)| *at);
    let mut digits = String::new();
    let mut deadline = prompt_length.saturating_add(gather.timeout);
    for (at, key) in presses {
        if at > deadline {
            break;
        }
        if Some(key) == gather.finish_on_key {
            return (at, digits);
        }
        digits.push(key);
        if Some(digits.chars().count()) == gather.num_digits {
            return (at, digits);
        }
        deadline = at.max(prompt_length).saturating_add(gather.timeout);
    }
    (deadline, digits)
}
