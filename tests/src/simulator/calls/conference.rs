//! Conference rooms: `<Dial><Conference>`, participants added through REST, the
//! participants in them, wait and hold music, announcements and the conference status
//! callbacks, as Twilio behaves.
//!
//! A conference (SID `CF…`) is created when the first leg joins a room that has no
//! live conference (or when a participant is added to it through REST); the first
//! participant's `statusCallback*` settings (and `maxParticipants`) are the
//! conference's. It is `init` until it starts and `completed` once it ended. Rules, from
//! Twilio's docs:
//! - Start: "Conferences will not start until at least two participants join", and
//!   one of them has `startConferenceOnEnter` (TwiML Voice: `<Conference>`, "Customizable
//!   Features" and `startConferenceOnEnter`; the Conference Events announcement: "the
//!   conference starts whenever the second participant joins"). Until then every
//!   participant hears the `waitUrl`: its TwiML (Say, Play, Pause, Redirect only; "once
//!   the TwiML document located at the waitUrl runs out of verbs to execute, silence
//!   will be played"), Twilio's default classical playlist without a `waitUrl` (recorded,
//!   never fetched), nothing with `waitUrl=""`.
//! - A leg leaves when its call ends, when it is given new TwiML, when its `<Dial
//!   timeLimit>` is up, when it is removed through REST, or when the conference ends; a
//!   leg that leaves while its call goes on continues after its `<Dial>`: its action,
//!   with `DialCallStatus=answered` ("when calling a conference", TwiML Voice: `<Dial>`,
//!   DialCallStatus; no DialCallSid nor DialCallDuration), or the next verb.
//! - `participant-leave` carries `ParticipantCallStatus` and `ReasonParticipantLeft`
//!   (Twilio changelog, 2023-10-25: "ParticipantCallStatus and ReasonParticipantLeft
//!   attributes added to participant-leave Conference event"; values as listed in TwiML
//!   Voice: `<Conference>`, statusCallback parameters), unless the simulator is told to
//!   play an older API ([`State::participant_leave_details`]). `ParticipantLabel` comes
//!   with every participant event when the participant has a label.
//! - A participant added through REST (`POST …/Participants.json`, the conference named
//!   by SID or friendly name) is called like any outbound call and joins once answered;
//!   if it is busy, not answered, fails or is canceled it never joins, and the
//!   conference's callback gets a `participant-leave` with that status (the changelog's
//!   own example: "a participant was added using the /Participants API but failed to
//!   answer").
//! - The room ends (`conference-end`) when a participant with `endConferenceOnExit`
//!   leaves or the last one does (`…-kicked` instead of `…-left` when removed through
//!   REST), or through REST (`conference-ended-via-api`).
//!
//! Choices where Twilio leaves room for doubt:
//! - Callbacks are posted only for the events the first participant's
//!   `statusCallbackEvent` names (none without it); `SequenceNumber` counts from 1 per
//!   conference. On a starting join, `participant-join` comes before
//!   `conference-start`; when a room ends, the remaining legs' `participant-leave`
//!   come before `conference-end`.
//! - `ReasonParticipantLeft`: a call that ends is `participant_hung_up`, or
//!   `participant_updated_via_api` when ended through REST; new TwiML and a REST removal
//!   are `participant_updated_via_api` (the call goes on: `in-progress`); the Dial's
//!   `timeLimit` is `participant_hung_up` with the call `in-progress`; the room ending
//!   is `conference_ended_via_api` or, after an `endConferenceOnExit` participant left,
//!   `moderator_ended_conference`; a REST participant that never joined is
//!   `participant_add_failed`. A conference whose only REST participant never joined
//!   ends as `last-participant-left`.
//! - Wait and hold music play once (real hold music loops); without `HoldUrl` nothing
//!   is recorded. Announcements are heard by everyone not on hold, and post
//!   `announcement-end` (or `announcement-failed`, e.g. for a `<Gather>`). `beep` is
//!   parsed and kept, never played.

use time::OffsetDateTime;

use super::{
    Activity, CallStatus, Callback, Fetch, FetchResult, Job, OutboundCall, State, TwimlSource,
};
use crate::simulator::clock::later;
use crate::simulator::rfc2822;
use crate::simulator::transcript::Event;
use crate::simulator::twiml::{
    self, ConferenceEvent, ConferenceNoun, Dial, HttpMethod, Verb, WaitAudio,
};

/// What Twilio plays without a `waitUrl`: its "default classical playlist".
pub const DEFAULT_WAIT_MUSIC: &str = "https://s3.amazonaws.com/com.twilio.sounds.music/index.xml";

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
    /// Participants added through REST whose call has not joined yet.
    pub invited: Vec<Participant>,
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
    /// The `waitUrl` for participant `call` while the conference has not started.
    Wait { conference: String, call: String },
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

/// A validated REST `POST Conferences/{ConferenceSid or FriendlyName}/Participants.json`.
#[derive(Clone, Debug)]
pub struct NewParticipant {
    /// The path's conference: a ConferenceSid or a room name.
    pub conference: String,
    /// The call to place; its TwiML is the conference, filled in by [`State::add_participant`].
    pub call: OutboundCall,
    pub label: Option<String>,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    pub muted: bool,
    pub beep: String,
    pub wait: WaitAudio,
    pub wait_method: HttpMethod,
    /// `ConferenceStatusCallback*`: the conference's, if this request creates it.
    pub conference_callback: Option<ConferenceCallbackConfig>,
    pub max_participants: u32,
}

/// Why a leg leaves its conference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Leave {
    /// The call ended with `status` (its phone hung up, its time limit, an error), or
    /// was ended through REST (`via_api`).
    CallEnded {
        status: CallStatus,
        via_api: bool,
    },
    Redirected,
    TimeLimit,
    Removed,
    /// The room ended: through REST (`via_api`) or after an `endConferenceOnExit`
    /// participant left.
    ConferenceEnded {
        via_api: bool,
    },
}

impl Leave {
    fn as_str(self) -> &'static str {
        match self {
            Self::CallEnded { via_api: false, .. } => "hung up",
            Self::CallEnded { via_api: true, .. } => "ended through REST",
            Self::Redirected => "redirected",
            Self::TimeLimit => "timeLimit",
            Self::Removed => "removed",
            Self::ConferenceEnded { .. } => "conference ended",
        }
    }

    /// `ReasonParticipantLeft` and `ParticipantCallStatus` (see the module's notes).
    fn reason_and_status(self) -> (&'static str, &'static str) {
        match self {
            Self::CallEnded { status, via_api } => {
                let reason = if via_api {
                    "participant_updated_via_api"
                } else {
                    "participant_hung_up"
                };
                (reason, status.as_str())
            }
            Self::Redirected | Self::Removed => ("participant_updated_via_api", "in-progress"),
            Self::TimeLimit => ("participant_hung_up", "in-progress"),
            Self::ConferenceEnded { via_api: true } => ("conference_ended_via_api", "in-progress"),
            Self::ConferenceEnded { via_api: false } => {
                ("moderator_ended_conference", "in-progress")
            }
        }
    }
}

/// Wait music, hold music or an announcement being played: a little TwiML program of
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

/// `<Response><Dial><Conference …>room</Conference></Dial></Response>` for a participant
/// added through REST: what its call runs once answered.
fn participant_twiml(room: &str, request: &NewParticipant) -> String {
    use quick_xml::escape::escape;
    let mut attributes = format!(
        r#"startConferenceOnEnter="{}" endConferenceOnExit="{}" muted="{}" beep="{}""#,
        request.start_conference_on_enter,
        request.end_conference_on_exit,
        request.muted,
        escape(request.beep.as_str())
    );
    if let Some(label) = &request.label {
        attributes += &format!(r#" participantLabel="{}""#, escape(label.as_str()));
    }
    match &request.wait {
        WaitAudio::Default => {}
        WaitAudio::Silence => attributes += r#" waitUrl="""#,
        WaitAudio::Url(url) => {
            let method = match request.wait_method {
                HttpMethod::Get => "GET",
                HttpMethod::Post => "POST",
            };
            attributes += &format!(
                r#" waitUrl="{}" waitMethod="{method}""#,
                escape(url.as_str())
            );
        }
    }
    format!(
        "<Response><Dial><Conference {attributes}>{}</Conference></Dial></Response>",
        escape(room)
    )
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

    /// The room's live conference, created (with these settings) if it has none.
    fn live_conference(
        &mut self,
        room: &str,
        callback: Option<ConferenceCallbackConfig>,
        max_participants: u32,
        now: OffsetDateTime,
    ) -> String {
        let existing = self
            .conferences
            .iter()
            .find(|c| c.room == room && c.status != ConferenceStatus::Completed);
        if let Some(conference) = existing {
            return conference.sid.clone();
        }
        let sid = format!("CF{}", uuid::Uuid::new_v4().simple());
        self.conferences.push(Conference {
            sid: sid.clone(),
            room: room.to_owned(),
            status: ConferenceStatus::Init,
            created_at: now,
            updated_at: now,
            callback,
            max_participants,
            participants: Vec::new(),
            invited: Vec::new(),
            ended_reason: None,
            call_sid_ending: None,
            sequence: 1,
        });
        sid
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
        let document = call.program.url.clone();
        let callback = noun
            .status_callback
            .clone()
            .map(|url| ConferenceCallbackConfig {
                url,
                method: noun.status_callback_method,
                events: noun.status_callback_events.clone(),
            });
        let conference_sid = self.live_conference(&noun.room, callback, noun.max_participants, now);
        // A participant added through REST is no longer pending once its call joins.
        for conference in &mut self.conferences {
            conference.invited.retain(|p| p.call_sid != sid);
        }
        let Some(conference) = self.conference_mut(&conference_sid) else {
            return;
        };
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
        // Twilio: "Conferences will not start until at least two participants join", and
        // it starts when a participant with startConferenceOnEnter is among them.
        let starts = conference.status == ConferenceStatus::Init
            && conference.participants.len() >= 2
            && conference
                .participants
                .iter()
                .any(|p| p.start_conference_on_enter);
        let waits = conference.status == ConferenceStatus::Init && !starts;
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
        } else if waits {
            self.start_wait_audio(&conference_sid, sid, &noun, &document, now);
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

    /// What a participant hears until the conference starts (`waitUrl`, resolved
    /// against the TwiML document that dialled the room).
    fn start_wait_audio(
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

    /// REST: adds a participant by calling it; once answered its call joins the room.
    /// Returns the new CallSid and the ConferenceSid, or why the conference is unknown.
    pub fn add_participant(
        &mut self,
        mut request: NewParticipant,
        now: OffsetDateTime,
    ) -> Result<(String, String), ()> {
        let by_sid = self
            .conference(&request.conference)
            .map(|c| (c.sid.clone(), c.room.clone(), c.status));
        let (conference_sid, room) = match by_sid {
            Some((_, _, ConferenceStatus::Completed)) => return Err(()),
            Some((sid, room, _)) => (sid, room),
            // Not a conference SID: the room's friendly name (its conference is created
            // if it has none live).
            None if request.conference.starts_with("CF") => return Err(()),
            None => {
                let room = request.conference.clone();
                let callback = request.conference_callback.clone();
                let sid = self.live_conference(&room, callback, request.max_participants, now);
                (sid, room)
            }
        };
        request.call.twiml = TwimlSource::Inline(participant_twiml(&room, &request));
        let phone = request.call.to.clone();
        let call_sid = self.create_outbound(now, request.call.clone());
        let invited = Participant {
            call_sid: call_sid.clone(),
            phone,
            label: request.label,
            hold: false,
            muted: request.muted,
            end_conference_on_exit: request.end_conference_on_exit,
            start_conference_on_enter: request.start_conference_on_enter,
            joined_at: now,
            updated_at: now,
            hold_generation: 0,
        };
        if let Some(conference) = self.conference_mut(&conference_sid) {
            conference.invited.push(invited);
            conference.updated_at = now;
        }
        Ok((call_sid, conference_sid))
    }

    /// A call ended: if it was a participant added through REST that never joined, the
    /// conference hears about it (`participant-leave`, `participant_add_failed`).
    pub(super) fn invitation_ended(&mut self, sid: &str, status: CallStatus, now: OffsetDateTime) {
        let Some(conference) = self
            .conferences
            .iter_mut()
            .find(|c| c.invited.iter().any(|p| p.call_sid == sid))
        else {
            return;
        };
        let Some(index) = conference.invited.iter().position(|p| p.call_sid == sid) else {
            return;
        };
        let participant = conference.invited.remove(index);
        conference.updated_at = now;
        let conference_sid = conference.sid.clone();
        let abandoned = conference.status == ConferenceStatus::Init
            && conference.participants.is_empty()
            && conference.invited.is_empty();
        let extra = self.leave_details("participant_add_failed", status.as_str());
        self.conference_callback(
            &conference_sid,
            "participant-leave",
            Some(&participant),
            extra,
            now,
        );
        if abandoned {
            self.end_conference(&conference_sid, "last-participant-left", None, now);
        }
    }

    /// `ReasonParticipantLeft` and `ParticipantCallStatus`, unless the simulator plays an
    /// API older than 2023-10-25.
    fn leave_details(&self, reason: &str, call_status: &str) -> Vec<(String, String)> {
        if !self.participant_leave_details {
            return Vec::new();
        }
        vec![
            ("ParticipantCallStatus".to_owned(), call_status.to_owned()),
            ("ReasonParticipantLeft".to_owned(), reason.to_owned()),
        ]
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
        let (reason, call_status) = why.reason_and_status();
        let extra = self.leave_details(reason, call_status);
        self.conference_callback(
            &conference_sid,
            "participant-leave",
            Some(&participant),
            extra,
            now,
        );
        // Twilio requests the Dial action even for a call that hung up (ignoring its
        // TwiML); a redirected call has moved on and requests nothing.
        let params = vec![("DialCallStatus".to_owned(), "answered".to_owned())];
        let job = Job::DialEnded {
            parent: sid.to_owned(),
            generation,
            dial: Box::new(dial),
            params,
        };
        self.schedule(now, job);
        if matches!(why, Leave::ConferenceEnded { .. }) {
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
        self.end_conference(&conference_sid, reason, Some(&participant), now);
    }

    /// Ends a conference: every leg still in it leaves and continues after its Dial.
    pub fn end_conference(
        &mut self,
        conference_sid: &str,
        reason: &str,
        ending: Option<&Participant>,
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
        conference.call_sid_ending = ending.map(|p| p.call_sid.clone());
        let room = conference.room.clone();
        let remaining: Vec<String> = conference
            .participants
            .iter()
            .map(|p| p.call_sid.clone())
            .collect();
        let via_api = reason == "conference-ended-via-api";
        for sid in remaining {
            self.leave_conference(&sid, Leave::ConferenceEnded { via_api }, now);
        }
        let ended = Event::ConferenceEnded {
            room,
            reason: reason.to_owned(),
        };
        self.record(now, Some(conference_sid), ended);
        let mut extra = vec![("ReasonConferenceEnded".to_owned(), reason.to_owned())];
        if let Some(participant) = ending {
            extra.push((
                "CallSidEndingConference".to_owned(),
                participant.call_sid.clone(),
            ));
            if let Some(label) = &participant.label {
                extra.push(("ParticipantLabelEndingConference".to_owned(), label.clone()));
            }
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

    /// DELETE a participant: its call leaves the room and continues after its Dial; a
    /// participant added through REST that has not joined yet is no longer called.
    pub fn remove_participant(&mut self, sid: &str, now: OffsetDateTime) {
        let invited = self
            .conferences
            .iter()
            .any(|c| c.invited.iter().any(|p| p.call_sid == sid));
        if invited {
            self.hang_up(sid, now);
        } else {
            self.leave_conference(sid, Leave::Removed, now);
        }
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
