//! Conference rooms: `<Dial><Conference>`, the participants in them, hold music,
//! announcements and the conference status callbacks, as Twilio behaves.
//!
//! A conference (SID `CF…`) is created when the first leg joins a room that has no
//! live conference; the first participant's `statusCallback*` settings (and
//! `maxParticipants`) are the conference's. It is `init` until a participant with
//! `startConferenceOnEnter` joins (then `in-progress`, `conference-start`) and
//! `completed` once it ended. A leg leaves when its call ends, when it is given new
//! TwiML, when its `<Dial timeLimit>` is up, when it is removed through REST, or when
//! the conference ends; a leg that leaves while its call goes on continues after its
//! `<Dial>` (its action, with `DialCallStatus=completed`, or the next verb). The room
//! ends (`conference-end`) when a participant with `endConferenceOnExit` leaves or the
//! last one does (`…-kicked` instead of `…-left` when removed through REST), or
//! through REST (`conference-ended-via-api`).
//!
//! Choices where Twilio leaves room for doubt:
//! - Callbacks are posted only for the events the first participant's
//!   `statusCallbackEvent` names (none without it); `SequenceNumber` counts from 1 per
//!   conference. On a starting join, `participant-join` comes before
//!   `conference-start`; when a room ends, the remaining legs' `participant-leave`
//!   come before `conference-end`.
//! - Hold music (`HoldUrl`, requested with GET unless `HoldMethod` says otherwise)
//!   plays once; the participant then stays on hold in silence. Without `HoldUrl`
//!   nothing is recorded. Announcements are heard by everyone not on hold, and post
//!   `announcement-end` (or `announcement-failed`, e.g. for a `<Gather>`).
//! - `waitUrl` and `beep` are parsed and kept, never fetched or played.

use super::*;
use crate::simulator::twiml::{ConferenceEvent, ConferenceNoun};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConferenceStatus {
    Init,
    InProgress,
    Completed,
}

impl ConferenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConferenceCallbackConfig {
    pub url: String,
    pub method: HttpMethod,
    pub events: Vec<ConferenceEvent>,
}

#[derive(Clone, Debug)]
pub struct Conference {
    pub sid: String,
    pub room: String,
    pub status: ConferenceStatus,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The first participant's callback settings.
    pub callback: Option<ConferenceCallbackConfig>,
    pub max_participants: u32,
    /// Who is in the room now, in the order they joined.
    pub participants: Vec<Participant>,
    /// Twilio's `ReasonConferenceEnded`.
    pub ended_reason: Option<String>,
    pub call_sid_ending: Option<String>,
    sequence: u32,
}

#[derive(Clone, Debug)]
pub struct Participant {
    pub call_sid: String,
    pub phone: String,
    pub label: Option<String>,
    pub hold: bool,
    pub muted: bool,
    pub end_conference_on_exit: bool,
    pub start_conference_on_enter: bool,
    pub joined_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Bumped on every hold change, so stale hold music stops.
    hold_generation: u64,
}

/// What a [`Fetch`] is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The call's own TwiML (or a Dial/Gather action).
    Twiml,
    /// Hold music for participant `call` while its hold lasts.
    Hold {
        conference: String,
        call: String,
        generation: u64,
    },
    /// An announcement to one participant or (`call: None`) to the whole room.
    Announce {
        conference: String,
        call: Option<String>,
    },
}

/// A validated participant update (REST `POST …/Participants/{id}.json`).
#[derive(Clone, Debug, Default)]
pub struct ParticipantUpdate {
    pub hold: Option<bool>,
    pub hold_url: Option<(String, HttpMethod)>,
    pub muted: Option<bool>,
    pub announce: Option<(String, HttpMethod)>,
    pub end_conference_on_exit: Option<bool>,
}

/// Why a leg leaves its conference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Leave {
    HungUp,
    Redirected,
    TimeLimit,
    Removed,
    ConferenceEnded,
}

impl Leave {
    fn as_str(self) -> &'static str {
        match self {
            Self::HungUp => "hung up",
            Self::Redirected => "redirected",
            Self::TimeLimit => "timeLimit",
            Self::Removed => "removed",
            Self::ConferenceEnded => "conference ended",
        }
    }
}

/// Hold music or an announcement being played: a little TwiML program of
/// Say / Play / Pause (a Redirect fetches the next document).
#[derive(Clone, Debug)]
pub(super) struct SideProgram {
    purpose: Purpose,
    url: String,
    verbs: Vec<Verb>,
    pc: usize,
}

fn bool_str(value: bool) -> String {
    value.to_string()
}

impl State {
    pub fn conference(&self, sid: &str) -> Option<&Conference> {
        self.conferences.iter().find(|c| c.sid == sid)
    }

    fn conference_mut(&mut self, sid: &str) -> Option<&mut Conference> {
        self.conferences.iter_mut().find(|c| c.sid == sid)
    }

    /// The phones that can talk in the room: present and not on hold.
    fn in_room(&self, conference: &str) -> Vec<String> {
        self.conference(conference)
            .map(|c| {
                c.participants
                    .iter()
                    .filter(|p| !p.hold)
                    .map(|p| p.phone.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn next_id(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // ----- joining and leaving -----------------------------------------------------

    /// `<Dial><Conference>`: the leg enters the room (creating its conference).
    pub(super) fn join_conference(
        &mut self,
        sid: &str,
        dial: Dial,
        noun: ConferenceNoun,
        now: OffsetDateTime,
    ) {
        // Joining a room answers a call still ringing (`answerOnBridge`).
        self.ensure_answered(sid, now);
        let Some(call) = self.call(sid) else { return };
        let (phone, generation) = (call.phone().to_owned(), call.generation);
        if let Some(url) = &noun.wait_url {
            tracing::debug!(%url, "waitUrl recorded, not fetched");
        }
        let existing = self
            .conferences
            .iter()
            .position(|c| c.room == noun.room && c.status != ConferenceStatus::Completed);
        let index = match existing {
            Some(index) => index,
            None => {
                let callback = noun
                    .status_callback
                    .clone()
                    .map(|url| ConferenceCallbackConfig {
                        url,
                        method: noun.status_callback_method,
                        events: noun.status_callback_events.clone(),
                    });
                self.conferences.push(Conference {
                    sid: format!("CF{}", uuid::Uuid::new_v4().simple()),
                    room: noun.room.clone(),
                    status: ConferenceStatus::Init,
                    created_at: now,
                    updated_at: now,
                    callback,
                    max_participants: noun.max_participants,
                    participants: Vec::new(),
                    ended_reason: None,
                    call_sid_ending: None,
                    sequence: 1,
                });
                self.conferences.len() - 1
            }
        };
        let conference = &mut self.conferences[index];
        let conference_sid = conference.sid.clone();
        if conference.participants.len() >= conference.max_participants as usize {
            let detail = format!(
                "conference {:?} is full ({} participants): the Dial ends",
                noun.room, conference.max_participants
            );
            self.record(now, Some(sid), Event::Warning { detail });
            let params = vec![("DialCallStatus".to_owned(), "failed".to_owned())];
            let job = Job::DialEnded {
                parent: sid.to_owned(),
                generation,
                dial: Box::new(dial),
                params,
            };
            self.schedule(now, job);
            return;
        }
        let participant = Participant {
            call_sid: sid.to_owned(),
            phone: phone.clone(),
            label: noun.participant_label.clone(),
            hold: false,
            muted: noun.muted,
            end_conference_on_exit: noun.end_conference_on_exit,
            start_conference_on_enter: noun.start_conference_on_enter,
            joined_at: now,
            updated_at: now,
            hold_generation: 0,
        };
        conference.participants.push(participant.clone());
        conference.updated_at = now;
        let starts = conference.status == ConferenceStatus::Init && noun.start_conference_on_enter;
        let join = self.next_id();
        let time_limit = dial.time_limit;
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        call.activity = Activity::Conferencing {
            conference: conference_sid.clone(),
            dial,
            join,
        };
        // The phone's own hang-up counts from the answer (an outbound leg has it
        // scheduled already; an inbound caller's waits for a bridge or a room).
        let hang_up = match (call.hang_up_scheduled, call.device.hang_up_after) {
            (false, Some(after)) => Some(later(call.answered_at.unwrap_or(now), after).max(now)),
            _ => None,
        };
        if hang_up.is_some() {
            call.hang_up_scheduled = true;
        }
        let in_room = self.in_room(&conference_sid);
        let room = noun.room.clone();
        let joined = Event::ConferenceJoined {
            room: room.clone(),
            who: phone,
            in_room,
        };
        self.record(now, Some(sid), joined);
        self.conference_callback(
            &conference_sid,
            "participant-join",
            Some(&participant),
            Vec::new(),
            now,
        );
        if starts {
            if let Some(conference) = self.conference_mut(&conference_sid) {
                conference.status = ConferenceStatus::InProgress;
            }
            self.record(
                now,
                Some(&conference_sid),
                Event::ConferenceStarted { room },
            );
            self.conference_callback(&conference_sid, "conference-start", None, Vec::new(), now);
        }
        self.schedule(
            later(now, time_limit),
            Job::DialTimeLimit {
                call: sid.to_owned(),
                join,
            },
        );
        if let Some(at) = hang_up {
            self.schedule(at, Job::PhoneHangUp(sid.to_owned()));
        }
    }

    /// The leg leaves its conference; the call then continues after its `<Dial>`
    /// (unless it is ending or being redirected, which the caller takes care of).
    /// The room ends when an `endConferenceOnExit` participant or the last one leaves.
    pub(super) fn leave_conference(&mut self, sid: &str, why: Leave, now: OffsetDateTime) {
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        let (conference_sid, dial) = match std::mem::take(&mut call.activity) {
            Activity::Conferencing {
                conference, dial, ..
            } => (conference, dial),
            other => {
                call.activity = other;
                return;
            }
        };
        let generation = call.generation;
        let Some(conference) = self.conference_mut(&conference_sid) else {
            return;
        };
        let Some(index) = conference
            .participants
            .iter()
            .position(|p| p.call_sid == sid)
        else {
            return;
        };
        let participant = conference.participants.remove(index);
        conference.updated_at = now;
        let (room, nobody_left) = (conference.room.clone(), conference.participants.is_empty());
        let in_room = self.in_room(&conference_sid);
        let left = Event::ConferenceLeft {
            room,
            who: participant.phone.clone(),
            why: why.as_str().to_owned(),
            in_room,
        };
        self.record(now, Some(sid), left);
        self.conference_callback(
            &conference_sid,
            "participant-leave",
            Some(&participant),
            Vec::new(),
            now,
        );
        // Twilio requests the Dial action even for a call that hung up (ignoring its
        // TwiML); a redirected call has moved on and requests nothing.
        let params = vec![("DialCallStatus".to_owned(), "completed".to_owned())];
        let job = Job::DialEnded {
            parent: sid.to_owned(),
            generation,
            dial: Box::new(dial),
            params,
        };
        self.schedule(now, job);
        if why == Leave::ConferenceEnded {
            return;
        }
        let kicked = why == Leave::Removed;
        let reason = if participant.end_conference_on_exit {
            if kicked {
                "participant-with-end-conference-on-exit-kicked"
            } else {
                "participant-with-end-conference-on-exit-left"
            }
        } else if nobody_left {
            if kicked {
                "last-participant-kicked"
            } else {
                "last-participant-left"
            }
        } else {
            return;
        };
        self.end_conference(&conference_sid, reason, Some(sid), now);
    }

    /// Ends a conference: every leg still in it leaves and continues after its Dial.
    pub fn end_conference(
        &mut self,
        conference_sid: &str,
        reason: &str,
        ending_call: Option<&str>,
        now: OffsetDateTime,
    ) {
        let Some(conference) = self
            .conference_mut(conference_sid)
            .filter(|c| c.status != ConferenceStatus::Completed)
        else {
            return;
        };
        conference.status = ConferenceStatus::Completed;
        conference.updated_at = now;
        conference.ended_reason = Some(reason.to_owned());
        conference.call_sid_ending = ending_call.map(str::to_owned);
        let room = conference.room.clone();
        let remaining: Vec<String> = conference
            .participants
            .iter()
            .map(|p| p.call_sid.clone())
            .collect();
        for sid in remaining {
            self.leave_conference(&sid, Leave::ConferenceEnded, now);
        }
        let ended = Event::ConferenceEnded {
            room,
            reason: reason.to_owned(),
        };
        self.record(now, Some(conference_sid), ended);
        let mut extra = vec![("ReasonConferenceEnded".to_owned(), reason.to_owned())];
        if let Some(call) = ending_call {
            extra.push(("CallSidEndingConference".to_owned(), call.to_owned()));
        }
        self.conference_callback(conference_sid, "conference-end", None, extra, now);
    }

    /// A conference leg's `<Dial timeLimit>` elapsed: it leaves the room.
    pub(super) fn dial_time_limit(&mut self, sid: &str, join: u64, now: OffsetDateTime) {
        let current = self.call(sid).is_some_and(|c| {
            c.status.is_live()
                && matches!(c.activity, Activity::Conferencing { join: j, .. } if j == join)
        });
        if current {
            self.leave_conference(sid, Leave::TimeLimit, now);
        }
    }

    // ----- REST --------------------------------------------------------------------

    /// DELETE a participant: its call leaves the room and continues after its Dial.
    pub fn remove_participant(&mut self, sid: &str, now: OffsetDateTime) {
        self.leave_conference(sid, Leave::Removed, now);
    }

    /// Applies a validated participant update.
    pub fn update_participant(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        update: ParticipantUpdate,
        now: OffsetDateTime,
    ) {
        if let Some(muted) = update.muted {
            let changed = self.with_participant(conference_sid, call_sid, now, |p| {
                std::mem::replace(&mut p.muted, muted) != muted
            });
            if changed == Some(true) {
                self.participant_changed(conference_sid, call_sid, now, |who| Event::Muted {
                    who,
                    on: muted,
                });
                let event = if muted {
                    "participant-mute"
                } else {
                    "participant-unmute"
                };
                self.participant_callback(conference_sid, call_sid, event, now);
            }
        }
        if let Some(end) = update.end_conference_on_exit {
            self.with_participant(conference_sid, call_sid, now, |p| {
                p.end_conference_on_exit = end;
            });
        }
        match update.hold {
            Some(true) => {
                let changed = self.with_participant(conference_sid, call_sid, now, |p| {
                    p.hold_generation += 1;
                    !std::mem::replace(&mut p.hold, true)
                });
                if changed == Some(true) {
                    self.participant_changed(conference_sid, call_sid, now, |who| Event::Held {
                        who,
                        on: true,
                    });
                    self.participant_callback(conference_sid, call_sid, "participant-hold", now);
                }
                if let Some((url, method)) = update.hold_url {
                    self.start_hold_music(conference_sid, call_sid, url, method, now);
                }
            }
            Some(false) => {
                let changed = self.with_participant(conference_sid, call_sid, now, |p| {
                    p.hold_generation += 1;
                    std::mem::replace(&mut p.hold, false)
                });
                if changed == Some(true) {
                    self.participant_changed(conference_sid, call_sid, now, |who| Event::Held {
                        who,
                        on: false,
                    });
                    self.participant_callback(conference_sid, call_sid, "participant-unhold", now);
                }
            }
            None => {}
        }
        if let Some((url, method)) = update.announce {
            self.announce(conference_sid, Some(call_sid), url, method, now);
        }
    }

    fn with_participant<T>(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        now: OffsetDateTime,
        change: impl FnOnce(&mut Participant) -> T,
    ) -> Option<T> {
        let conference = self.conference_mut(conference_sid)?;
        let participant = conference
            .participants
            .iter_mut()
            .find(|p| p.call_sid == call_sid)?;
        participant.updated_at = now;
        Some(change(participant))
    }

    fn participant_changed(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        now: OffsetDateTime,
        event: impl FnOnce(String) -> Event,
    ) {
        let Some(phone) = self.conference(conference_sid).and_then(|c| {
            c.participants
                .iter()
                .find(|p| p.call_sid == call_sid)
                .map(|p| p.phone.clone())
        }) else {
            return;
        };
        self.record(now, Some(call_sid), event(phone));
    }

    fn participant_callback(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        event: &str,
        now: OffsetDateTime,
    ) {
        let participant = self.conference(conference_sid).and_then(|c| {
            c.participants
                .iter()
                .find(|p| p.call_sid == call_sid)
                .cloned()
        });
        if let Some(participant) = participant {
            self.conference_callback(conference_sid, event, Some(&participant), Vec::new(), now);
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

    fn start_hold_music(
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

    // ----- hold music and announcements ---------------------------------------------

    /// Whether hold music or an announcement is still wanted.
    pub(super) fn side_live(&self, purpose: &Purpose) -> bool {
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
        }
    }

    /// Who hears hold music or an announcement now: `(CallSid, phone)`.
    fn side_listeners(&self, purpose: &Purpose) -> Vec<(String, String)> {
        let (conference, only) = match purpose {
            Purpose::Twiml => return Vec::new(),
            Purpose::Hold {
                conference, call, ..
            } => (conference, Some(call)),
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

    /// The answer to a hold-music or announcement request. Only Say, Play, Pause and
    /// Redirect are allowed (no `<Gather>`, as in Twilio): anything else is a
    /// warning, and the announcement fails.
    pub(super) fn side_fetched(
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

    /// Plays the next verb of hold music or an announcement. Hold music plays once,
    /// then the participant just stays on hold (real Twilio loops it; the transcript
    /// stays bounded this way).
    pub(super) fn side_step(&mut self, id: u64, now: OffsetDateTime) -> Option<Fetch> {
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
                    Purpose::Hold { call, .. } => Some(call.clone()),
                    Purpose::Announce { call, .. } => call.clone(),
                    Purpose::Twiml => None,
                };
                let conference = match &program.purpose {
                    Purpose::Hold { conference, .. } | Purpose::Announce { conference, .. } => {
                        conference.clone()
                    }
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

    // ----- callbacks ---------------------------------------------------------------

    /// Queues conference callback `event` (a long name) if the conference's
    /// statusCallback subscribed to it.
    fn conference_callback(
        &mut self,
        conference_sid: &str,
        event: &str,
        participant: Option<&Participant>,
        extra: Vec<(String, String)>,
        now: OffsetDateTime,
    ) {
        let Some(conference) = self.conference(conference_sid) else {
            return;
        };
        let Some(config) = conference.callback.clone() else {
            return;
        };
        let subscribed =
            ConferenceEvent::of_callback(event).is_some_and(|e| config.events.contains(&e));
        if !subscribed {
            return;
        }
        let mut params = vec![
            ("AccountSid".to_owned(), self.account_sid.clone()),
            ("ConferenceSid".to_owned(), conference.sid.clone()),
            ("FriendlyName".to_owned(), conference.room.clone()),
            ("StatusCallbackEvent".to_owned(), event.to_owned()),
            ("Timestamp".to_owned(), rfc2822(now)),
            ("SequenceNumber".to_owned(), conference.sequence.to_string()),
        ];
        if let Some(p) = participant {
            params.push(("CallSid".to_owned(), p.call_sid.clone()));
            if let Some(label) = &p.label {
                params.push(("ParticipantLabel".to_owned(), label.clone()));
            }
            params.push(("Hold".to_owned(), bool_str(p.hold)));
            params.push(("Muted".to_owned(), bool_str(p.muted)));
            params.push((
                "EndConferenceOnExit".to_owned(),
                bool_str(p.end_conference_on_exit),
            ));
            params.push((
                "StartConferenceOnEnter".to_owned(),
                bool_str(p.start_conference_on_enter),
            ));
            params.push(("Coaching".to_owned(), "false".to_owned()));
        }
        params.extend(extra);
        let callback = Callback {
            call: participant.map_or_else(|| conference_sid.to_owned(), |p| p.call_sid.clone()),
            url: config.url,
            method: config.method,
            params,
            call_status: String::new(),
            conference_event: Some(event.to_owned()),
        };
        self.outbox.push_back(callback);
        if let Some(conference) = self.conference_mut(conference_sid) {
            conference.sequence += 1;
        }
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
