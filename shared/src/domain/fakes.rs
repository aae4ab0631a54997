//! In-memory fakes of the domain's ports, for fast unit tests of its rules. They keep the
//! conditions the rules rely on (a close only of an open session, a warning claimed once, a
//! lease held by one) and let a test script failures; the DynamoDB and Twilio adapters are
//! tested against the emulator and the simulator instead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::domain::ports::{
    CallControl, CallError, ConferenceRecord, CreateConflict, CreateError, Ctx, DueCursor,
    Recorded, Ring, SessionStore, Settings, StoreError,
};
use crate::model::{
    CallMode, Interaction, LiveCall, ProxyNumber, Session, SessionStatus, TwilioDirection,
};
use crate::phone::PhoneNumber;

#[derive(Default)]
struct Tables {
    sessions: HashMap<String, Session>,
    unique_names: HashMap<String, String>,
    numbers: Vec<ProxyNumber>,
    legs: Vec<Interaction>,
    conferences: HashMap<(String, String), ConferenceRecord>,
    due: BTreeMap<String, i64>,
    locks: HashSet<String>,
    claimed: HashMap<String, (i64, String)>,
    /// Failures to give, by operation name, in order (one per call).
    failures: HashMap<&'static str, Vec<StoreError>>,
    create_conflicts: Vec<CreateConflict>,
}

impl Tables {
    /// Files the session in the due index for `due`, or takes it out with `None`.
    fn file_due(&mut self, sid: &str, due: Option<i64>) {
        match due {
            Some(at) => self.due.insert(sid.to_owned(), at),
            None => self.due.remove(sid),
        };
    }
}

/// The session store, in memory.
#[derive(Default)]
pub struct MemoryStore(Mutex<Tables>);

impl MemoryStore {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn put_session(&self, session: Session) {
        let mut t = self.tables();
        if let Some(name) = &session.unique_name {
            t.unique_names.insert(name.clone(), session.sid.clone());
        }
        t.sessions.insert(session.sid.clone(), session);
    }

    pub fn session(&self, sid: &str) -> Option<Session> {
        self.tables().sessions.get(sid).cloned()
    }

    pub fn add_number(&self, number: &str) {
        self.tables().numbers.push(ProxyNumber {
            phone_number: PhoneNumber::parse(number).unwrap(),
            is_reserved: false,
            in_use: 0,
            date_created: 0,
            date_updated: 0,
        });
    }

    pub fn add_leg(&self, leg: Interaction) {
        self.tables().legs.push(leg);
    }

    pub fn legs(&self) -> Vec<Interaction> {
        self.tables().legs.clone()
    }

    pub fn put_conference(&self, session_sid: &str, record: ConferenceRecord) {
        self.tables().conferences.insert(
            (session_sid.to_owned(), record.conference_sid.clone()),
            record,
        );
    }

    pub fn file_due(&self, sid: &str, at: i64) {
        self.tables().due.insert(sid.to_owned(), at);
    }

    pub fn due(&self, sid: &str) -> Option<i64> {
        self.tables().due.get(sid).copied()
    }

    pub fn hold_lock(&self, sid: &str) {
        self.tables().locks.insert(sid.to_owned());
    }

    pub fn is_locked(&self, sid: &str) -> bool {
        self.tables().locks.contains(sid)
    }

    pub fn claimed(&self, sid: &str) -> Option<(i64, String)> {
        self.tables().claimed.get(sid).cloned()
    }

    /// The next call of `operation` fails with `error` (before changing anything).
    pub fn fail_next(&self, operation: &'static str, error: StoreError) {
        self.tables()
            .failures
            .entry(operation)
            .or_default()
            .push(error);
    }

    /// The next create meets `conflict`, as if a concurrent create won.
    pub fn conflict_next_create(&self, conflict: CreateConflict) {
        self.tables().create_conflicts.push(conflict);
    }

    fn failure(&self, operation: &'static str) -> Result<(), StoreError> {
        match self.tables().failures.get_mut(operation) {
            Some(queue) if !queue.is_empty() => Err(queue.remove(0)),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn get_session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        self.failure("get_session")?;
        Ok(self.session(sid))
    }

    async fn session_sid_by_unique_name(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.tables().unique_names.get(name).cloned())
    }

    async fn create_session(&self, session: &Session, _now: i64) -> Result<(), CreateError> {
        self.failure("create_session")?;
        let mut t = self.tables();
        if !t.create_conflicts.is_empty() {
            return Err(CreateError::Conflict(t.create_conflicts.remove(0)));
        }
        // A name is free again once its session has closed (as the store releases it).
        if let Some(name) = &session.unique_name
            && t.unique_names
                .get(name)
                .is_some_and(|sid| t.sessions.get(sid).is_none_or(|s| s.status.is_open()))
        {
            return Err(CreateError::Conflict(CreateConflict::UniqueName));
        }
        for p in &session.participants {
            let taken = t.sessions.values().any(|s| {
                s.status.is_open()
                    && s.participants.iter().any(|q| {
                        q.identifier == p.identifier && q.proxy_identifier == p.proxy_identifier
                    })
            });
            if taken {
                return Err(CreateError::Conflict(CreateConflict::Route {
                    proxy: p.proxy_identifier.clone(),
                    participant: p.identifier.clone(),
                }));
            }
        }
        drop(t);
        self.put_session(session.clone());
        Ok(())
    }

    async fn close_session(
        &self,
        session: &Session,
        reason: &str,
        now: i64,
        _expire_at: i64,
    ) -> Result<(), StoreError> {
        self.failure("close_session")?;
        let mut t = self.tables();
        let stored = t
            .sessions
            .get_mut(&session.sid)
            .filter(|s| s.status.is_open())
            .ok_or(StoreError::ConditionFailed)?;
        stored.status = SessionStatus::Closed;
        stored.closed_reason = Some(reason.to_owned());
        stored.date_updated = now;
        stored.live_call = None;
        t.due.remove(&session.sid);
        Ok(())
    }

    async fn extend_session(
        &self,
        session: &Session,
        seconds: i64,
        due: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.failure("extend_session")?;
        let mut t = self.tables();
        let stored = t
            .sessions
            .get_mut(&session.sid)
            .filter(|s| {
                s.status.is_open()
                    && s.date_expiry == session.date_expiry
                    && s.live_call.as_ref().and_then(|l| l.deadline)
                        == session.live_call.as_ref().and_then(|l| l.deadline)
            })
            .ok_or(StoreError::ConditionFailed)?;
        *stored = Session {
            date_updated: now,
            ..stored.extended_by(seconds)
        };
        t.file_due(&session.sid, due);
        Ok(())
    }

    async fn list_interactions(&self, session_sid: &str) -> Result<Vec<Interaction>, StoreError> {
        self.failure("list_interactions")?;
        Ok(self
            .tables()
            .legs
            .iter()
            .filter(|l| l.session_sid == session_sid)
            .cloned()
            .collect())
    }

    async fn list_numbers(&self) -> Result<Vec<ProxyNumber>, StoreError> {
        Ok(self.tables().numbers.clone())
    }

    async fn proxies_of(&self, participant: &PhoneNumber) -> Result<Vec<PhoneNumber>, StoreError> {
        Ok(self
            .tables()
            .sessions
            .values()
            .filter(|s| s.status.is_open())
            .flat_map(|s| &s.participants)
            .filter(|p| &p.identifier == participant)
            .map(|p| p.proxy_identifier.clone())
            .collect())
    }

    async fn lock_calls(&self, sid: &str, _now: i64, _until: i64) -> Result<bool, StoreError> {
        Ok(self.tables().locks.insert(sid.to_owned()))
    }

    async fn unlock_calls(&self, sid: &str) -> Result<(), StoreError> {
        self.tables().locks.remove(sid);
        Ok(())
    }

    async fn begin_live_call(
        &self,
        sid: &str,
        mode: CallMode,
        limit: u64,
        _replace: bool,
    ) -> Result<(), StoreError> {
        self.failure("begin_live_call")?;
        let mut t = self.tables();
        let stored = t
            .sessions
            .get_mut(sid)
            .filter(|s| s.status.is_open())
            .ok_or(StoreError::ConditionFailed)?;
        stored.live_call = Some(LiveCall {
            mode,
            limit,
            deadline: None,
            warned_for: None,
            warning: None,
        });
        Ok(())
    }

    async fn connect_live_call(
        &self,
        sid: &str,
        deadline: i64,
        due: i64,
    ) -> Result<bool, StoreError> {
        let mut t = self.tables();
        let Some(live) = t
            .sessions
            .get_mut(sid)
            .filter(|s| s.status.is_open())
            .and_then(|s| s.live_call.as_mut())
            .filter(|l| l.deadline.is_none())
        else {
            return Ok(false);
        };
        live.deadline = Some(deadline);
        t.due.insert(sid.to_owned(), due);
        Ok(true)
    }

    async fn record_leg(
        &self,
        leg: &Interaction,
        _now: i64,
        _retention: i64,
    ) -> Result<Recorded, StoreError> {
        let mut t = self.tables();
        if t.legs.iter().any(|l| l.call_sid == leg.call_sid) {
            return Ok(Recorded::Stale);
        }
        t.legs.push(leg.clone());
        Ok(Recorded::Updated)
    }

    async fn clear_live_call(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError> {
        let mut t = self.tables();
        if let Some(s) = t.sessions.get_mut(sid) {
            s.live_call = None;
            s.current_conference = None;
        }
        t.file_due(sid, due);
        Ok(())
    }

    async fn claim_warning(
        &self,
        sid: &str,
        deadline: i64,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let mut t = self.tables();
        if t.claimed.get(sid).is_some_and(|(d, _)| *d == deadline) {
            return Ok(false);
        }
        t.claimed
            .insert(sid.to_owned(), (deadline, outcome.to_owned()));
        if let Some(live) = t.sessions.get_mut(sid).and_then(|s| s.live_call.as_mut()) {
            live.warned_for = Some(deadline);
            live.warning = Some(outcome.to_owned());
        }
        Ok(true)
    }

    async fn extend_live_call(
        &self,
        session: &Session,
        from: i64,
        to: i64,
        due: i64,
        max_count: u32,
        now: i64,
    ) -> Result<(), StoreError> {
        self.failure("extend_live_call")?;
        let mut t = self.tables();
        let stored = t
            .sessions
            .get_mut(&session.sid)
            .filter(|s| {
                s.status.is_open()
                    && s.extension_count < max_count
                    && s.live_call.as_ref().and_then(|l| l.deadline) == Some(from)
            })
            .ok_or(StoreError::ConditionFailed)?;
        stored.extension_count += 1;
        stored.date_updated = now;
        if let Some(live) = stored.live_call.as_mut() {
            live.deadline = Some(to);
        }
        t.due.insert(session.sid.clone(), due);
        Ok(())
    }

    async fn set_due(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError> {
        let mut t = self.tables();
        t.file_due(sid, due);
        Ok(())
    }

    async fn get_conference(
        &self,
        session_sid: &str,
        conference_sid: &str,
    ) -> Result<Option<ConferenceRecord>, StoreError> {
        Ok(self
            .tables()
            .conferences
            .get(&(session_sid.to_owned(), conference_sid.to_owned()))
            .cloned())
    }

    /// One page holding every session due in shard 0 (the fake has no shards).
    async fn due_page(
        &self,
        shard: u32,
        now: i64,
        _start: Option<DueCursor>,
    ) -> Result<(Vec<String>, Option<DueCursor>), StoreError> {
        if shard != 0 {
            return Ok((Vec::new(), None));
        }
        let sids = self
            .tables()
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(sid, _)| sid.clone())
            .collect();
        Ok((sids, None))
    }
}

/// What the domain asked of Twilio, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallRequest {
    Ring {
        to: String,
        mode: &'static str,
        limit: u64,
        leg_limit: u64,
    },
    HangUp(String),
    EndCall(String),
    EndConference(String),
    Hold(String),
    Unhold(String),
    SetTimeLimit {
        call_sid: String,
        seconds: u64,
    },
    Prompt {
        call_sid: String,
        deadline: i64,
    },
}

/// Call control that records every request and answers from a script.
#[derive(Default)]
pub struct FakeCalls {
    requests: Mutex<Vec<CallRequest>>,
    /// Results for the next rings, in order; a ring past the script succeeds.
    ring_results: Mutex<Vec<Result<(), CallError>>>,
}

impl FakeCalls {
    pub fn requests(&self) -> Vec<CallRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The next rings answer with `results`, in order.
    pub fn script_rings(&self, results: Vec<Result<(), CallError>>) {
        *self.ring_results.lock().unwrap() = results;
    }

    fn push(&self, request: CallRequest) {
        self.requests.lock().unwrap().push(request);
    }
}

#[async_trait]
impl CallControl for FakeCalls {
    async fn ring(&self, leg: &Ring<'_>) -> Result<String, CallError> {
        let n = self.requests().len();
        self.push(CallRequest::Ring {
            to: leg.callee.identifier.to_string(),
            mode: leg.mode.as_str(),
            limit: leg.limit,
            leg_limit: leg.leg_limit,
        });
        let mut script = self.ring_results.lock().unwrap();
        if !script.is_empty() {
            script.remove(0)?;
        }
        Ok(format!("CA{n:032}"))
    }

    async fn hang_up(&self, call_sid: &str) -> Result<(), CallError> {
        self.push(CallRequest::HangUp(call_sid.to_owned()));
        Ok(())
    }

    async fn end_call(&self, call_sid: &str) -> Result<(), CallError> {
        self.push(CallRequest::EndCall(call_sid.to_owned()));
        Ok(())
    }

    async fn end_conference(&self, conference_sid: &str) -> Result<(), CallError> {
        self.push(CallRequest::EndConference(conference_sid.to_owned()));
        Ok(())
    }

    async fn hold_for_warning(
        &self,
        _session_sid: &str,
        _conference_sid: &str,
        call_sid: &str,
    ) -> Result<(), CallError> {
        self.push(CallRequest::Hold(call_sid.to_owned()));
        Ok(())
    }

    async fn unhold(&self, _conference_sid: &str, call_sid: &str) -> Result<(), CallError> {
        self.push(CallRequest::Unhold(call_sid.to_owned()));
        Ok(())
    }

    async fn set_time_limit(&self, call_sid: &str, seconds: u64) -> Result<(), CallError> {
        self.push(CallRequest::SetTimeLimit {
            call_sid: call_sid.to_owned(),
            seconds,
        });
        Ok(())
    }

    async fn prompt_extension(
        &self,
        _session_sid: &str,
        deadline: i64,
        call_sid: &str,
    ) -> Result<(), CallError> {
        self.push(CallRequest::Prompt {
            call_sid: call_sid.to_owned(),
            deadline,
        });
        Ok(())
    }
}

/// A clock stopped at one instant.
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(self.0).unwrap()
    }
}

pub const SETTINGS: Settings = Settings {
    retention_seconds: 90 * 86_400,
    dial_timeout_seconds: 30,
};

/// A world of fakes for one test.
pub struct World {
    pub store: MemoryStore,
    pub calls: FakeCalls,
    pub clock: FixedClock,
}

impl World {
    pub fn at(now: i64) -> Self {
        Self {
            store: MemoryStore::default(),
            calls: FakeCalls::default(),
            clock: FixedClock(now),
        }
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: &self.store,
            calls: &self.calls,
            clock: &self.clock,
            settings: SETTINGS,
        }
    }
}

/// A leg of `session_sid` in `status`, Twilio direction `twilio_direction`.
pub fn leg(
    session_sid: &str,
    call_sid: &str,
    parent: Option<&str>,
    status: crate::model::CallStatus,
    updated: i64,
) -> Interaction {
    Interaction {
        sid: format!("KI{call_sid}"),
        session_sid: session_sid.to_owned(),
        call_sid: call_sid.to_owned(),
        parent_call_sid: parent.map(str::to_owned),
        direction: crate::pricing::Direction::Outbound,
        twilio_direction: if parent.is_some() {
            TwilioDirection::OutboundDial
        } else {
            TwilioDirection::Inbound
        },
        from_masked: "+8190****5678".into(),
        to_masked: "+8180****5432".into(),
        from_participant_sid: None,
        to_participant_sid: None,
        callee_class: crate::phone::NumberClass::Mobile,
        status,
        duration: 0,
        billed_minutes: 0,
        cost_milli_yen: 0,
        date_created: updated,
        date_updated: updated,
        date_ended: None,
    }
}
