//! What participants hear besides each other: wait music until the conference starts, hold
//! music, announcements; each a little TwiML program of Say / Play / Pause / Redirect.

use time::OffsetDateTime;

use super::{ConferenceStatus, DEFAULT_WAIT_MUSIC, Purpose, SideProgram};
use crate::simulator::calls::{Fetch, FetchResult, Job, State};
use crate::simulator::clock::later;
use crate::simulator::transcript::Event;
use crate::simulator::twiml::{self, ConferenceNoun, HttpMethod, Verb, WaitAudio};

impl State {
    /// What a participant hears until the conference starts (`waitUrl`, resolved
    /// against the TwiML document that dialled the room).
    pub(super) fn start_wait_audio(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        noun: &ConferenceNoun,
        document: &str,
        now: OffsetDateTime,
    ) {
        let Some(call) = self.call(call_sid) else {
            return;
        };
        match &noun.wait {
            WaitAudio::Silence => {}
            WaitAudio::Default => {
                let played = Event::Played {
                    to: call.phone().to_owned(),
                    url: DEFAULT_WAIT_MUSIC.to_owned(),
                };
                self.record(now, Some(call_sid), played);
            }
            WaitAudio::Url(url) => {
                let url = twiml::resolve_url(document, url);
                let mut fetch = self.fetch(call, url, noun.wait_method, Vec::new());
                fetch.purpose = Purpose::Wait {
                    conference: conference_sid.to_owned(),
                    call: call_sid.to_owned(),
                };
                self.schedule(now, Job::Fetch(Box::new(fetch)));
            }
        }
    }

    /// Queues the request for an announcement (`AnnounceUrl`) to one participant or
    /// to everyone in the room.
    pub fn announce(
        &mut self,
        conference_sid: &str,
        call_sid: Option<&str>,
        url: String,
        method: HttpMethod,
        now: OffsetDateTime,
    ) {
        let Some(conference) = self.conference(conference_sid) else {
            return;
        };
        let mut params = vec![
            ("AccountSid".to_owned(), self.account_sid.clone()),
            ("ConferenceSid".to_owned(), conference.sid.clone()),
            ("FriendlyName".to_owned(), conference.room.clone()),
        ];
        if let Some(call) = call_sid {
            params.push(("CallSid".to_owned(), call.to_owned()));
        }
        let fetch = Fetch {
            call: call_sid.unwrap_or(conference_sid).to_owned(),
            generation: 0,
            url,
            method,
            params,
            inline: None,
            execute: true,
            purpose: Purpose::Announce {
                conference: conference_sid.to_owned(),
                call: call_sid.map(str::to_owned),
            },
        };
        self.schedule(now, Job::Fetch(Box::new(fetch)));
    }

    pub(super) fn start_hold_music(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        url: String,
        method: HttpMethod,
        now: OffsetDateTime,
    ) {
        let Some(generation) = self.conference(conference_sid).and_then(|c| {
            c.participants
                .iter()
                .find(|p| p.call_sid == call_sid)
                .map(|p| p.hold_generation)
        }) else {
            return;
        };
        let Some(call) = self.call(call_sid) else {
            return;
        };
        let mut fetch = self.fetch(call, url, method, Vec::new());
        fetch
            .params
            .push(("ConferenceSid".to_owned(), conference_sid.to_owned()));
        fetch.purpose = Purpose::Hold {
            conference: conference_sid.to_owned(),
            call: call_sid.to_owned(),
            generation,
        };
        self.schedule(now, Job::Fetch(Box::new(fetch)));
    }

    /// Whether hold music or an announcement is still wanted.
    pub(in crate::simulator::calls) fn side_live(&self, purpose: &Purpose) -> bool {
        match purpose {
            Purpose::Twiml => false,
            Purpose::Hold {
                conference,
                call,
                generation,
            } => self.conference(conference).is_some_and(|c| {
                c.participants
                    .iter()
                    .any(|p| p.call_sid == *call && p.hold && p.hold_generation == *generation)
            }),
            Purpose::Announce { conference, call } => {
                self.conference(conference).is_some_and(|c| {
                    c.status != ConferenceStatus::Completed
                        && call
                            .as_ref()
                            .is_none_or(|call| c.participants.iter().any(|p| p.call_sid == *call))
                })
            }
            // Wait music stops when the conference starts (or the participant leaves or is
            // put on hold, which has its own music).
            Purpose::Wait { conference, call } => self.conference(conference).is_some_and(|c| {
                c.status == ConferenceStatus::Init
                    && c.participants
                        .iter()
                        .any(|p| p.call_sid == *call && !p.hold)
            }),
        }
    }

    /// Who hears hold music or an announcement now: `(CallSid, phone)`.
    fn side_listeners(&self, purpose: &Purpose) -> Vec<(String, String)> {
        let (conference, only) = match purpose {
            Purpose::Twiml => return Vec::new(),
            Purpose::Hold {
                conference, call, ..
            }
            | Purpose::Wait { conference, call } => (conference, Some(call)),
            Purpose::Announce { conference, call } => (conference, call.as_ref()),
        };
        let hold_music = matches!(purpose, Purpose::Hold { .. });
        self.conference(conference)
            .map(|c| {
                c.participants
                    .iter()
                    // An announcement is not heard by a participant on hold.
                    .filter(|p| hold_music || !p.hold)
                    .filter(|p| only.is_none_or(|call| p.call_sid == *call))
                    .map(|p| (p.call_sid.clone(), p.phone.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The answer to a wait-music, hold-music or announcement request. Only Say, Play,
    /// Pause and Redirect are allowed (no `<Gather>`: Twilio error 13238): anything else
    /// is a warning, and an announcement fails.
    pub(in crate::simulator::calls) fn side_fetched(
        &mut self,
        fetch: Fetch,
        result: FetchResult,
        now: OffsetDateTime,
    ) -> Option<Fetch> {
        let entry_sid = fetch.call.clone();
        let parsed = match result {
            Ok((status, body)) => {
                let url = fetch.url.clone();
                self.record(now, Some(&entry_sid), Event::Webhook { url, status });
                if (200..300).contains(&status) {
                    twiml::parse(&body).map_err(|detail| format!("invalid TwiML: {detail}"))
                } else {
                    Err(format!("HTTP {status}"))
                }
            }
            Err(detail) => Err(detail),
        };
        if !self.side_live(&fetch.purpose) {
            return None;
        }
        let what = match fetch.purpose {
            Purpose::Hold { .. } => "hold music",
            Purpose::Wait { .. } => "wait music",
            _ => "announcement",
        };
        let verbs = parsed.and_then(|verbs| {
            match verbs.iter().find(|v| {
                !matches!(
                    v,
                    Verb::Say { .. }
                        | Verb::Play { .. }
                        | Verb::Pause { .. }
                        | Verb::Redirect { .. }
                )
            }) {
                Some(other) => Err(format!(
                    "{what} TwiML may only Say, Play, Pause or Redirect, not {}",
                    verb_name(other)
                )),
                None => Ok(verbs),
            }
        });
        let verbs = match verbs {
            Ok(verbs) => verbs,
            Err(detail) => {
                let detail = format!("{what} {}: {detail}", fetch.url);
                self.record(now, Some(&entry_sid), Event::Warning { detail });
                self.announcement_callback(&fetch.purpose, "announcement-failed", now);
                return None;
            }
        };
        let id = self.next_id();
        let program = SideProgram {
            purpose: fetch.purpose,
            url: fetch.url,
            verbs,
            pc: 0,
        };
        self.sides.insert(id, program);
        self.side_step(id, now)
    }

    /// Plays the next verb of wait music, hold music or an announcement. Wait music plays
    /// once and then silence, as Twilio's does unless it Redirects; hold music also plays
    /// once, then the participant just stays on hold (real Twilio loops it; the
    /// transcript stays bounded this way).
    pub(in crate::simulator::calls) fn side_step(
        &mut self,
        id: u64,
        now: OffsetDateTime,
    ) -> Option<Fetch> {
        let program = self.sides.get(&id)?;
        if !self.side_live(&program.purpose) {
            self.sides.remove(&id);
            return None;
        }
        let Some(verb) = program.verbs.get(program.pc).cloned() else {
            let program = self.sides.remove(&id)?;
            self.announcement_callback(&program.purpose, "announcement-end", now);
            return None;
        };
        let listeners = self.side_listeners(&program.purpose);
        if let Some(program) = self.sides.get_mut(&id) {
            program.pc += 1;
        }
        match verb {
            Verb::Redirect { url, method } => {
                let program = self.sides.remove(&id)?;
                let url = twiml::resolve_url(&program.url, &url);
                let mut params = vec![("AccountSid".to_owned(), self.account_sid.clone())];
                let call = match &program.purpose {
                    Purpose::Hold { call, .. } | Purpose::Wait { call, .. } => Some(call.clone()),
                    Purpose::Announce { call, .. } => call.clone(),
                    Purpose::Twiml => None,
                };
                let conference = match &program.purpose {
                    Purpose::Hold { conference, .. }
                    | Purpose::Announce { conference, .. }
                    | Purpose::Wait { conference, .. } => conference.clone(),
                    Purpose::Twiml => String::new(),
                };
                params.push(("ConferenceSid".to_owned(), conference.clone()));
                if let Some(call) = &call {
                    params.push(("CallSid".to_owned(), call.clone()));
                }
                Some(Fetch {
                    call: call.unwrap_or(conference),
                    generation: 0,
                    url,
                    method,
                    params,
                    inline: None,
                    execute: true,
                    purpose: program.purpose,
                })
            }
            verb => {
                let took = self.perform_to(&listeners, &verb, now);
                self.schedule(later(now, took), Job::SideStep(id));
                None
            }
        }
    }

    fn announcement_callback(&mut self, purpose: &Purpose, event: &str, now: OffsetDateTime) {
        let Purpose::Announce { conference, call } = purpose else {
            return;
        };
        let participant = call.as_ref().and_then(|call| {
            self.conference(conference)?
                .participants
                .iter()
                .find(|p| p.call_sid == *call)
                .cloned()
        });
        let conference = conference.clone();
        self.conference_callback(&conference, event, participant.as_ref(), Vec::new(), now);
    }
}

fn verb_name(verb: &Verb) -> &'static str {
    match verb {
        Verb::Say { .. } => "<Say>",
        Verb::Play { .. } => "<Play>",
        Verb::Pause { .. } => "<Pause>",
        Verb::Hangup => "<Hangup>",
        Verb::Reject { .. } => "<Reject>",
        Verb::Redirect { .. } => "<Redirect>",
        Verb::Gather(_) => "<Gather>",
        Verb::Dial(_) => "<Dial>",
    }
}
