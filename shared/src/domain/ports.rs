//! What the domain needs from the outside, as traits: the session store, Twilio's call
//! control, the live call's exact timers and the platform's intercept callback. `adapters`
//! implements them with DynamoDB, Twilio's REST API, EventBridge Scheduler and a signed HTTP
//! request; the domain's unit tests with the in-memory fakes in `domain::fakes`.

use async_trait::async_trait;

use crate::clock::Clock;
use crate::model::{
    CallStatus, Interaction, LiveCall, Participant, ProxyNumber, Session, WarningOutcome,
};
use crate::phone::PhoneNumber;

// The store's plain value types (no SDK types inside but the due cursor's private key).
pub use crate::store::{
    CallNote, ConferenceRecord, CreateConflict, CreateError, DueCursor, DueSession, Recorded,
    Route, RouteCheck, StoreError,
};

/// The sessions, their call legs and the due index, as the domain reads and changes them.
/// Every change is conditional: `StoreError::ConditionFailed` means someone else won.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn get_session(&self, sid: &str) -> Result<Option<Session>, StoreError>;
    async fn session_sid_by_unique_name(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// The sessions of `sids` that exist, in few requests (the sweep's page at once). A
    /// session left out may exist still: read it with `get_session`.
    async fn get_sessions(
        &self,
        sids: &[String],
    ) -> Result<std::collections::HashMap<String, Session>, StoreError>;
    /// Writes the session, its participants' routes and the pool counts at once (I1).
    async fn create_session(&self, session: &Session, now: i64) -> Result<(), CreateError>;
    /// Closes an open session and releases its routes at once (I3).
    async fn close_session(
        &self,
        session: &Session,
        reason: &str,
        now: i64,
        expire_at: i64,
    ) -> Result<(), StoreError>;
    /// Moves `date_expiry` and the live call's deadline by `seconds`, if unchanged since read.
    async fn extend_session(
        &self,
        session: &Session,
        seconds: i64,
        due: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Reopens the closed session `before` as `after`, claiming its routes again (I1) and
    /// its unique name if still free.
    async fn reopen_session(
        &self,
        before: &Session,
        after: &Session,
        now: i64,
    ) -> Result<(), CreateError>;
    /// Sets an open session's `date_expiry` and `ttl` to `after`'s while unchanged since
    /// read, filing it in the due index for `due`.
    async fn update_session_times(
        &self,
        before: &Session,
        after: &Session,
        due: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Adds a participant to the session as read, claiming its (proxy, number) slot (I1)
    /// and, with the second one, writing both routes.
    async fn add_participant(
        &self,
        session: &Session,
        participant: &Participant,
        now: i64,
    ) -> Result<(), CreateError>;
    /// Removes the participant at `index` of the session as read, with its slot and the
    /// session's routes; `ConditionFailed` when the session changed meanwhile.
    async fn remove_participant(
        &self,
        session: &Session,
        index: usize,
        now: i64,
    ) -> Result<(), StoreError>;
    async fn list_interactions(&self, session_sid: &str) -> Result<Vec<Interaction>, StoreError>;
    /// Admits call `call_sid` on the route `caller` uses on `proxy`, in one request: the
    /// route as noted when it is live (its session open, before `date_expiry`, not idle by
    /// the route's copy of the ttl), else why not.
    async fn admit_route(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        call_sid: &str,
        now: i64,
    ) -> Result<RouteCheck, StoreError>;
    /// Puts back the note `call_sid` replaced on its route (a call not let through after
    /// all); false when the route no longer holds that call's note.
    async fn forget_call(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        call_sid: &str,
        prior: &CallNote,
    ) -> Result<bool, StoreError>;
    /// Logs a masked call's inbound leg, marks its session in progress, notes the call on
    /// its route (`(proxy, caller)`) and, with `live`, notes the live call unless one is
    /// noted, only while the session is open, before its `date_expiry` and not idle past its
    /// ttl. False when it is not; true, writing nothing, when the CallSid was already logged
    /// (Twilio retried).
    async fn start_inbound_leg(
        &self,
        leg: &Interaction,
        route: (&PhoneNumber, &PhoneNumber),
        live: Option<&LiveCall>,
        now: i64,
        retention: i64,
    ) -> Result<bool, StoreError>;
    async fn list_numbers(&self) -> Result<Vec<ProxyNumber>, StoreError>;
    /// The proxy numbers on which `participant` has an open session.
    async fn proxies_of(&self, participant: &PhoneNumber) -> Result<Vec<PhoneNumber>, StoreError>;
    /// A short lease on placing calls for the session; false when another holds it.
    async fn lock_calls(&self, sid: &str, now: i64, until: i64) -> Result<bool, StoreError>;
    async fn unlock_calls(&self, sid: &str) -> Result<(), StoreError>;
    /// Notes the live call (while the session is open).
    async fn begin_live_call(
        &self,
        sid: &str,
        mode: Mode,
        limit: u64,
        replace: bool,
    ) -> Result<(), StoreError>;
    /// Forgets the live call noted with `mode` and `limit` while it is not connected (its
    /// calls could not be placed); false when it was not there to forget.
    async fn abandon_live_call(
        &self,
        sid: &str,
        mode: Mode,
        limit: u64,
    ) -> Result<bool, StoreError>;
    /// Starts the live call's clock: its deadline and the sweep's next instant, once (false
    /// when it was already running or the session closed).
    async fn connect_live_call(
        &self,
        sid: &str,
        deadline: i64,
        due: i64,
    ) -> Result<bool, StoreError>;
    async fn record_leg(
        &self,
        leg: &Interaction,
        now: i64,
        retention: i64,
    ) -> Result<Recorded, StoreError>;
    async fn clear_live_call(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError>;
    /// Moves the live call's deadline `from` → `to` and counts the extension, while the
    /// session is open, the deadline is still `from` and fewer than `max_count` were used.
    #[allow(clippy::too_many_arguments)]
    async fn extend_live_call(
        &self,
        session: &Session,
        from: i64,
        to: i64,
        due: i64,
        max_count: u32,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Claims the 20-s notice for `deadline` once: false when already claimed or when
    /// `deadline` is no longer the live call's.
    async fn claim_notice(&self, sid: &str, deadline: i64) -> Result<bool, StoreError>;
    /// Claims the warning for `deadline` once (I4): false when already claimed.
    async fn claim_warning(
        &self,
        sid: &str,
        deadline: i64,
        outcome: WarningOutcome,
    ) -> Result<bool, StoreError>;
    async fn set_due(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError>;
    async fn get_conference(
        &self,
        session_sid: &str,
        conference_sid: &str,
    ) -> Result<Option<ConferenceRecord>, StoreError>;
    /// Marks the room ended (once) and takes it off the session if it is the current one.
    async fn conference_ended(
        &self,
        session_sid: &str,
        conference_sid: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// One page of the sessions due by `now` in one shard of the due index, each with the
    /// instant it was filed for.
    async fn due_page(
        &self,
        shard: u32,
        now: i64,
        start: Option<DueCursor>,
    ) -> Result<(Vec<DueSession>, Option<DueCursor>), StoreError>;
}

/// How a V-call leg is connected once answered (the live call's own mode).
pub use crate::model::CallMode as Mode;

/// One outbound leg to place.
#[derive(Debug, Clone)]
pub struct Ring<'a> {
    pub session_sid: &'a str,
    pub callee: &'a Participant,
    pub mode: Mode,
    /// The call's limit, passed on to the TwiML of the answered leg.
    pub limit: u64,
    /// Twilio's hard limit on this leg's length.
    pub leg_limit: u64,
}

/// What a party left waiting hears before their call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goodbye {
    /// A V字発信 party: the other could not be reached.
    OtherUnreachable,
    /// A masked call's caller: the other party was busy.
    OtherBusy,
    /// … did not answer.
    OtherNoAnswer,
    /// … could not be called.
    OtherFailed,
}

/// The outcome of the warning, as the party who did not answer it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// The call was extended by `minutes`; it now ends at `deadline`.
    Extended { minutes: u64, deadline: i64 },
    /// The call ends at its deadline.
    Ending,
}

/// Why Twilio did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Twilio answered with an error: its HTTP status, code and message.
    #[error("Twilio answered {status} (code {code}): {message}")]
    Refused {
        status: u16,
        code: u32,
        message: String,
    },
    #[error("Twilio could not be reached: {0}")]
    Unreachable(String),
    /// The request's time budget ran out before Twilio answered (or before asking).
    #[error("Twilio did not answer in time")]
    OutOfTime,
    #[error("Twilio credentials unavailable: {0}")]
    Credentials(String),
}

/// Call control: what the domain asks Twilio to do with calls and rooms.
#[async_trait]
pub trait CallControl: Send + Sync {
    /// Places an outbound leg; returns its CallSid.
    async fn ring(&self, leg: &Ring<'_>) -> Result<String, CallError>;
    /// Ends a call in any state (cancels it while ringing).
    async fn hang_up(&self, call_sid: &str) -> Result<(), CallError>;
    /// Stops a call still queued or ringing; one answered meanwhile goes on.
    async fn cancel(&self, call_sid: &str) -> Result<(), CallError>;
    /// Ends a call that was answered; one already over is not an error.
    async fn end_call(&self, call_sid: &str) -> Result<(), CallError>;
    async fn end_conference(&self, conference_sid: &str) -> Result<(), CallError>;
    /// The call's status as Twilio knows it now (`None`: one this code does not know).
    async fn call_status(&self, call_sid: &str) -> Result<Option<CallStatus>, CallError>;
    /// Tells a party why the call is over, then ends their call.
    async fn say_goodbye(&self, call_sid: &str, why: Goodbye) -> Result<(), CallError>;
    /// Puts the other party on hold during the warning for `deadline`: they hear the time
    /// left and, when `asking`, that the deciding party is being asked, then "please wait".
    async fn hold_for_warning(
        &self,
        session_sid: &str,
        deadline: i64,
        asking: bool,
        conference_sid: &str,
        call_sid: &str,
    ) -> Result<(), CallError>;
    /// Takes a conference participant off hold and, with `told`, tells them the outcome.
    async fn unhold(
        &self,
        session_sid: &str,
        conference_sid: &str,
        call_sid: &str,
        told: Option<Told>,
    ) -> Result<(), CallError>;
    /// Tells everyone in the room the time left before `deadline` (no one can extend it).
    async fn announce_time_left(
        &self,
        session_sid: &str,
        deadline: i64,
        conference_sid: &str,
    ) -> Result<(), CallError>;
    /// Tells everyone in the room, just before `deadline`, that the call is about to be cut.
    async fn announce_notice(
        &self,
        session_sid: &str,
        deadline: i64,
        conference_sid: &str,
    ) -> Result<(), CallError>;
    /// Sets a live call's Twilio `TimeLimit`, counted from the call's creation.
    async fn set_time_limit(&self, call_sid: &str, seconds: u64) -> Result<(), CallError>;
    /// Gives the deciding party's call the warning and the press-1 prompt for `deadline`.
    async fn prompt_extension(
        &self,
        session_sid: &str,
        deadline: i64,
        call_sid: &str,
    ) -> Result<(), CallError>;
}

/// The platform's say on a masked call about to be connected: its intercept URL.
#[async_trait]
pub trait Intercept: Send + Sync {
    /// False when the platform refuses the call. Whatever else happens (no URL, no answer,
    /// another answer) lets the call through: a slow platform must not silence its users.
    async fn allows(&self, route: &Route, call_sid: &str) -> bool;
}

/// The settings the domain's rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long closed sessions and their legs are kept.
    pub retention_seconds: i64,
    /// How long a callee's phone rings.
    pub dial_timeout_seconds: u32,
    /// What each minute costs, for a live call's cost cap (`max_cost`).
    pub rates: crate::pricing::Rates,
}

/// Everything a domain operation works with.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub store: &'a dyn SessionStore,
    pub calls: &'a dyn CallControl,
    pub timers: &'a dyn Timers,
    pub clock: &'a dyn Clock,
    pub settings: Settings,
}

impl Ctx<'_> {
    /// Now, in seconds since the epoch.
    pub fn now(&self) -> i64 {
        crate::clock::epoch(self.clock.now())
    }
}

/// One of a live call's three timed steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimerKind {
    /// The end-of-call warning, `warning_lead` seconds before the deadline.
    Warning,
    /// The short notice both parties hear `NOTICE_LEAD_SECONDS` before the deadline.
    Notice,
    /// The deadline itself: the call ends.
    End,
}

impl TimerKind {
    pub const ALL: [TimerKind; 3] = [TimerKind::Warning, TimerKind::Notice, TimerKind::End];

    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Warning => "warning",
            TimerKind::Notice => "notice",
            TimerKind::End => "end",
        }
    }
}

/// Why a timer could not be set or cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timer: {0}")]
pub struct TimerError(pub String);

/// Exact timers for a live call's steps (EventBridge Scheduler on AWS). Each fires once, at
/// `at`, carrying the session, its kind and the `deadline` it was set for, and is then gone;
/// setting one again moves it. The minute sweep stays as the safety net, so a timer that
/// cannot be set only makes its step up to a minute late.
#[async_trait]
pub trait Timers: Send + Sync {
    /// Creates the session's timer of `kind`, or moves it, to fire at `at`.
    async fn set(
        &self,
        session_sid: &str,
        kind: TimerKind,
        at: i64,
        deadline: i64,
    ) -> Result<(), TimerError>;
    /// Removes the session's timer of `kind`; one already gone is not an error.
    async fn cancel(&self, session_sid: &str, kind: TimerKind) -> Result<(), TimerError>;
}
