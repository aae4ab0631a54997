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
//! - Announcements, from Twilio's REST docs: a Participant update's `AnnounceUrl` is
//!   "an announcement to the participant" — that participant alone — and a Conference
//!   update's `AnnounceUrl` is "to announce something into the conference" — everyone in
//!   it (<https://www.twilio.com/docs/voice/api/conference-participant-resource>,
//!   <https://www.twilio.com/docs/voice/api/conference-resource>); `AnnounceMethod`
//!   defaults to POST, `HoldMethod` to GET. Their TwiML, like `waitUrl`'s and `holdUrl`'s,
//!   "can only contain Say, Play, Pause, and Redirect verbs" (error 13238,
//!   <https://www.twilio.com/docs/api/errors/13238>). A participant update is applied in
//!   the order Hold, then the announcement, so `Hold=false` with an `AnnounceUrl` plays it
//!   to the participant coming back.
//! - Wait and hold music play once (real hold music loops); without `HoldUrl` nothing
//!   is recorded. Announcements are heard by everyone not on hold, and post
//!   `announcement-end` (or `announcement-failed`, e.g. for a `<Gather>`). `beep` is
//!   parsed and kept, never played.
//!
//! The conference, its participants and its callbacks are here; the parts: `room` (joining,
//! leaving, ending), `participants` (through REST) and `audio` (wait and hold music,
//! announcements).

use time::OffsetDateTime;

use super::{CallStatus, Callback, OutboundCall, State};
use crate::simulator::rfc2822;
use crate::simulator::twiml::{ConferenceEvent, HttpMethod, Verb, WaitAudio};

mod audio;
mod participants;
mod room;

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
    /// The first `record`ing participant's settings: the room is recorded from its start.
    pub recording: Option<crate::simulator::twiml::RecordingConfig>,
    pub started_at: Option<OffsetDateTime>,
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
            recording: None,
        };
        self.outbox.push_back(callback);
        if let Some(conference) = self.conference_mut(conference_sid) {
            conference.sequence += 1;
        }
    }
}
