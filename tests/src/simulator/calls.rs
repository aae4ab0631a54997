//! The call state machine. Everything here is synchronous and runs under the
//! simulator's state lock; anything that needs HTTP comes back as a [`Fetch`] or a
//! queued [`Callback`] for the driver to perform after the lock is released.
//!
//! The calls and the state are here; what happens to them is in the parts: `queue` (jobs in
//! virtual time), `lifecycle` (a call from creation to its end, and its status callbacks),
//! `verbs` (running TwiML), `dial` (`<Dial><Number>`) and `conference` (rooms).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use time::OffsetDateTime;

use super::PhoneScript;
use super::transcript::{Entry, Event};
use super::twiml::{Dial, Gather, HttpMethod, ProgressEvent, Verb};

mod conference;
mod dial;
mod lifecycle;
mod queue;
mod recording;
mod verbs;

pub use conference::{
    Conference, ConferenceCallbackConfig, ConferenceStatus, DEFAULT_WAIT_MUSIC, NewParticipant,
    Participant, ParticipantUpdate, Purpose,
};
use conference::{Leave, SideProgram};
pub use lifecycle::is_e164;
pub use queue::{Job, Scheduled};

/// Twilio's default and maximum call length (4 hours).
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(14_400);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    OutboundApi,
    OutboundDial,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::OutboundApi => "outbound-api",
            Self::OutboundDial => "outbound-dial",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn is_live(self) -> bool {
        matches!(self, Self::Queued | Self::Ringing | Self::InProgress)
    }
}

/// A Twilio number of the account (an IncomingPhoneNumber) and its voice configuration.
#[derive(Clone, Debug)]
pub struct NumberConfig {
    /// `PN…`, as the IncomingPhoneNumbers resource names it.
    pub sid: String,
    pub voice_url: String,
    pub status_callback: Option<String>,
}

/// A new IncomingPhoneNumber SID.
pub fn number_sid() -> String {
    format!("PN{}", uuid::Uuid::new_v4().simple())
}

#[derive(Clone, Debug)]
pub struct StatusCallbackConfig {
    pub url: String,
    pub method: HttpMethod,
    pub events: Vec<ProgressEvent>,
}

/// Where an outbound-api leg gets its TwiML once answered.
#[derive(Clone, Debug)]
pub enum TwimlSource {
    Url(String, HttpMethod),
    Inline(String),
}

/// A validated `POST Calls.json`.
#[derive(Clone, Debug)]
pub struct OutboundCall {
    pub from: String,
    pub to: String,
    pub twiml: TwimlSource,
    pub status_callback: Option<StatusCallbackConfig>,
    pub ring_timeout: Duration,
    pub time_limit: Duration,
}

/// What the real phone on a leg does once connected.
#[derive(Clone, Debug, Default)]
pub struct Device {
    pub hang_up_after: Option<Duration>,
    /// Offsets relative to the start of each `<Gather>`.
    pub digits: Vec<(Duration, char)>,
}

#[derive(Clone, Debug, Default)]
struct Program {
    url: String,
    verbs: Vec<Verb>,
    pc: usize,
}

#[derive(Clone, Debug, Default)]
enum Activity {
    #[default]
    Idle,
    Gathering {
        gather: Gather,
        prompt_pc: usize,
    },
    Dialing {
        child: String,
        dial: Dial,
    },
    /// In a conference room until the leg leaves it (`join` tells one stay from the
    /// next, for the Dial's timeLimit).
    Conferencing {
        conference: String,
        dial: Dial,
        join: u64,
    },
}

#[derive(Clone, Debug)]
pub struct Call {
    pub sid: String,
    pub parent_sid: Option<String>,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    pub created_at: OffsetDateTime,
    pub answered_at: Option<OffsetDateTime>,
    pub ended_at: Option<OffsetDateTime>,
    device: Device,
    twiml: Option<TwimlSource>,
    ring_timeout: Duration,
    time_limit: Duration,
    deadline: Option<OffsetDateTime>,
    status_callback: Option<StatusCallbackConfig>,
    callback_sequence: u32,
    /// Bumped whenever the leg stops what it was doing, so that queued jobs for the
    /// old activity are recognised as stale.
    generation: u64,
    program: Program,
    activity: Activity,
    hang_up_scheduled: bool,
    /// Set when the call is ended through REST (`Status=completed`), for the conference's
    /// `ReasonParticipantLeft`.
    ended_via_api: bool,
    /// A dialled leg whose `<Number url>` TwiML runs on its end before the bridge.
    whisper: Whisper,
    /// When a dialled leg was bridged to its parent (what a Dial's recording counts from).
    bridged_at: Option<OffsetDateTime>,
}

/// Where a dialled leg is with its `<Number url>` TwiML.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Whisper {
    #[default]
    None,
    /// Fetched on answer and running; its end bridges the leg.
    Running,
    /// Ran to its end; the leg is bridged.
    Done,
}

impl Call {
    /// The real phone on this leg: the caller of an inbound call, the callee otherwise.
    pub fn phone(&self) -> &str {
        match self.direction {
            Direction::Inbound => &self.from,
            Direction::OutboundApi | Direction::OutboundDial => &self.to,
        }
    }

    /// Whole seconds from answer to end (or to `now` while live); 0 if never answered.
    pub fn duration_secs(&self, now: OffsetDateTime) -> u64 {
        let Some(answered) = self.answered_at else {
            return 0;
        };
        let end = self.ended_at.unwrap_or(now);
        u64::try_from((end - answered).whole_seconds()).unwrap_or(0)
    }
}

/// A request for TwiML (or an action whose answer may be ignored).
#[derive(Clone, Debug)]
pub struct Fetch {
    pub call: String,
    pub generation: u64,
    pub url: String,
    pub method: HttpMethod,
    pub params: Vec<(String, String)>,
    /// TwiML given inline (REST `Twiml`): no request is made.
    pub inline: Option<String>,
    /// False when the call is already over and only the request itself matters.
    pub execute: bool,
    /// What the answer is for: the call's own TwiML, hold music, an announcement.
    pub purpose: Purpose,
}

/// A status callback waiting to be posted.
#[derive(Clone, Debug)]
pub struct Callback {
    pub call: String,
    pub url: String,
    pub method: HttpMethod,
    pub params: Vec<(String, String)>,
    pub call_status: String,
    /// Set for a conference status callback: the event's long name.
    pub conference_event: Option<String>,
    /// Set for a recording status callback: the RecordingSid.
    pub recording: Option<String>,
}

/// A finished recording (the simulator keeps no audio, only what Twilio reports).
#[derive(Clone, Debug)]
pub struct Recording {
    pub sid: String,
    /// The call that ran the recorded `<Dial>`, or `None` for a conference's.
    pub call_sid: Option<String>,
    pub conference_sid: Option<String>,
    pub duration_secs: u64,
    pub channels: u32,
    pub url: String,
}

/// The answer to a [`Fetch`]: HTTP status and body, or why there was none.
pub type FetchResult = Result<(u16, String), String>;

pub struct State {
    pub account_sid: String,
    pub numbers: HashMap<String, NumberConfig>,
    pub phones: HashMap<String, PhoneScript>,
    pub calls: Vec<Call>,
    pub transcript: Vec<Entry>,
    pub outbox: VecDeque<Callback>,
    pub conferences: Vec<Conference>,
    /// Whether `participant-leave` carries `ParticipantCallStatus` and
    /// `ReasonParticipantLeft`, as Twilio's API has since 2023-10-25 (false plays an
    /// older API, for code that must cope without them).
    pub participant_leave_details: bool,
    /// Every recording made, in order.
    pub recordings: Vec<Recording>,
    /// The REST API's base, under which recordings' media URLs are given.
    pub api_base: String,
    sides: HashMap<u64, SideProgram>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
}

impl State {
    pub fn new(account_sid: String) -> Self {
        Self {
            account_sid,
            numbers: HashMap::new(),
            phones: HashMap::new(),
            calls: Vec::new(),
            transcript: Vec::new(),
            outbox: VecDeque::new(),
            conferences: Vec::new(),
            participant_leave_details: true,
            recordings: Vec::new(),
            api_base: "https://api.twilio.com".to_owned(),
            sides: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub fn record(&mut self, at: OffsetDateTime, call: Option<&str>, event: Event) {
        self.transcript.push(Entry {
            at,
            call_sid: call.map(str::to_owned),
            event,
        });
    }

    pub fn call(&self, sid: &str) -> Option<&Call> {
        self.calls.iter().find(|c| c.sid == sid)
    }

    fn call_mut(&mut self, sid: &str) -> Option<&mut Call> {
        self.calls.iter_mut().find(|c| c.sid == sid)
    }

    /// The call, if it is still live and `generation` is its current one.
    fn current(&mut self, sid: &str, generation: u64) -> Option<&mut Call> {
        self.call_mut(sid)
            .filter(|c| c.status.is_live() && c.generation == generation)
    }
}
