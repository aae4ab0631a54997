//! The call state machine. Everything here is synchronous and runs under the
//! simulator's state lock; anything that needs HTTP comes back as a [`Fetch`] or a
//! queued [`Callback`] for the driver to perform after the lock is released.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use time::OffsetDateTime;

use super::clock::later;
use super::transcript::{Entry, Event};
use super::twiml::{self, Dial, DialTarget, Gather, HttpMethod, ProgressEvent, Verb};
use super::{CallerScript, PhoneScript, rfc2822};

mod conference;

pub use conference::{
    Conference, ConferenceCallbackConfig, ConferenceStatus, DEFAULT_WAIT_MUSIC, NewParticipant,
    Participant, ParticipantUpdate, Purpose,
};
use conference::{Leave, SideProgram};

/// Twilio's default and maximum call length (4 hours).
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(14_400);
/// How long `<Play>` is taken to last: the simulator never downloads the audio.
const PLAY_LENGTH: Duration = Duration::from_secs(5);
/// Stands in for "forever" (`loop="0"`): the leg stays busy until something interrupts it.
const FOREVER: Duration = Duration::from_secs(86_400);
const APPLICATION_ERROR_MESSAGE: &str = "We are sorry, an application error has occurred. Goodbye.";

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

/// A Twilio number of the account and its voice configuration.
#[derive(Clone, Debug)]
pub struct NumberConfig {
    pub voice_url: String,
    pub status_callback: Option<String>,
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
}

/// The answer to a [`Fetch`]: HTTP status and body, or why there was none.
pub type FetchResult = Result<(u16, String), String>;

#[derive(Clone, Debug)]
pub enum Job {
    /// An outbound leg leaves the queue and rings its phone.
    Dispatch(String),
    Answer(String),
    RingTimeout(String),
    PhoneHangUp(String),
    TimeLimit(String, OffsetDateTime),
    /// Run the leg's next verb (or next `<Gather>` prompt verb).
    Step(String, u64),
    GatherDone {
        call: String,
        generation: u64,
        digits: String,
    },
    DialEnded {
        parent: String,
        generation: u64,
        dial: Box<Dial>,
        params: Vec<(String, String)>,
    },
    Fetch(Box<Fetch>),
    /// A conference leg's `<Dial timeLimit>` is up.
    DialTimeLimit {
        call: String,
        join: u64,
    },
    /// The next verb of hold music or of an announcement.
    SideStep(u64),
    /// A periodic hook registered with `Simulator::every`.
    Timer(usize),
}

#[derive(Debug)]
pub struct Scheduled {
    pub at: OffsetDateTime,
    seq: u64,
    pub job: Job,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Time order; jobs due at the same instant run in the order they were queued.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

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
            sides: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
        }
    }

    // ----- bookkeeping -------------------------------------------------------------

    pub fn schedule(&mut self, at: OffsetDateTime, job: Job) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            job,
        }));
    }

    /// The earliest job due at or before `until`.
    pub fn pop_due(&mut self, until: OffsetDateTime) -> Option<Scheduled> {
        if self.queue.peek()?.0.at > until {
            return None;
        }
        self.queue.pop().map(|Reverse(s)| s)
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

    /// No call is live and nothing more is due at `now` (e.g. the action request a
    /// Dial still makes after the caller hung up).
    pub fn idle(&self, now: OffsetDateTime) -> bool {
        !self.calls.iter().any(|c| c.status.is_live())
            && self.queue.peek().is_none_or(|Reverse(next)| next.at > now)
    }

    fn new_call(
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

    fn fetch(
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
        };
        self.outbox.push_back(callback);
        if let Some(call) = self.call_mut(sid) {
            call.callback_sequence += 1;
        }
    }

    // ----- creating calls ----------------------------------------------------------

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

    // ----- jobs --------------------------------------------------------------------

    /// Runs one job; a returned [`Fetch`] must be performed and fed to [`Self::fetched`].
    pub fn run(&mut self, job: Job, now: OffsetDateTime) -> Option<Fetch> {
        match job {
            Job::Dispatch(sid) => self.dispatch(&sid, now),
            Job::Answer(sid) => return self.answer(&sid, now),
            Job::RingTimeout(sid) => self.ring_timeout(&sid, now),
            Job::PhoneHangUp(sid) => self.phone_hang_up(&sid, now),
            Job::TimeLimit(sid, deadline) => self.time_limit(&sid, deadline, now),
            Job::Step(sid, generation) => return self.step(&sid, generation, now),
            Job::GatherDone {
                call,
                generation,
                digits,
            } => return self.gather_done(&call, generation, digits, now),
            Job::DialEnded {
                parent,
                generation,
                dial,
                params,
            } => return self.dial_ended(&parent, generation, &dial, params, now),
            Job::Fetch(fetch) => {
                let live = match &fetch.purpose {
                    Purpose::Twiml => self.current(&fetch.call, fetch.generation).is_some(),
                    purpose => self.side_live(purpose),
                };
                return (live || !fetch.execute).then_some(*fetch);
            }
            Job::DialTimeLimit { call, join } => self.dial_time_limit(&call, join, now),
            Job::SideStep(id) => return self.side_step(id, now),
            // Timers are run by the driver, which owns the hooks.
            Job::Timer(_) => {}
        }
        None
    }

    /// An outbound leg starts ringing its phone, which then behaves per its script.
    fn dispatch(&mut self, sid: &str, now: OffsetDateTime) {
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
    fn answer(&mut self, sid: &str, now: OffsetDateTime) -> Option<Fetch> {
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
        if call.direction == Direction::OutboundDial {
            self.bridge(sid, now);
            return None;
        }
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
    fn start_timers(&mut self, sid: &str, now: OffsetDateTime) {
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

    /// A dialled leg was answered: the two phones now talk.
    fn bridge(&mut self, child_sid: &str, now: OffsetDateTime) {
        let Some(child) = self.call(child_sid) else {
            return;
        };
        let (b, caller_id) = (child.to.clone(), child.from.clone());
        let Some(parent_sid) = child.parent_sid.clone() else {
            return;
        };
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

    fn ring_timeout(&mut self, sid: &str, now: OffsetDateTime) {
        let Some(call) = self.call(sid).filter(|c| c.status == CallStatus::Ringing) else {
            return;
        };
        let to = call.to.clone();
        self.record(now, Some(sid), Event::NoAnswer { to });
        self.end_call(sid, CallStatus::NoAnswer, now);
    }

    fn phone_hang_up(&mut self, sid: &str, now: OffsetDateTime) {
        let Some(call) = self.call(sid).filter(|c| c.status.is_live()) else {
            return;
        };
        let by = call.phone().to_owned();
        self.record(now, Some(sid), Event::HungUp { by });
        self.hang_up(sid, now);
    }

    fn time_limit(&mut self, sid: &str, deadline: OffsetDateTime, now: OffsetDateTime) {
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

    /// If `child_sid` is the leg its parent's `<Dial>` is waiting on, the Dial is over.
    /// Twilio's action parameters (TwiML Voice: `<Dial>`, "action"): `DialCallStatus`
    /// (`completed` once answered, else the leg's own busy / no-answer / failed /
    /// canceled), `DialCallSid`, `DialBridged` and `DialCallDuration` (0 if never
    /// answered; not sent when the child was redirected to new TwiML).
    fn release_parent(&mut self, child_sid: &str, now: OffsetDateTime, redirected: bool) {
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
        let bridged = child.answered_at.is_some();
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
    fn dial_ended(
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

    /// Twilio answers an inbound call when it starts executing its TwiML.
    fn ensure_answered(&mut self, sid: &str, now: OffsetDateTime) {
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

    // ----- TwiML execution ---------------------------------------------------------

    /// Executes verbs until one takes time, needs a request, or ends the call.
    fn step(&mut self, sid: &str, generation: u64, now: OffsetDateTime) -> Option<Fetch> {
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
                // Falling off the end of the document hangs up.
                self.end_call(sid, CallStatus::Completed, now);
                return None;
            };
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
    fn perform_to(
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

    fn gather_done(
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

    fn start_dial(&mut self, parent_sid: &str, dial: Dial, now: OffsetDateTime) {
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
        let child = self.new_call(now, Direction::OutboundDial, &caller_id, &number.number);
        child.parent_sid = Some(parent_sid.to_owned());
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

    // ----- REST updates ------------------------------------------------------------

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
