//! The session store, in memory: it keeps the conditions the rules rely on (a close only of
//! an open session, a warning claimed once, a lease held by one) and lets a test script
//! failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::ports::{
    CallNote, ConferenceRecord, CreateConflict, CreateError, DueCursor, DueSession, Recorded,
    Route, RouteCheck, SessionStore, StoreError,
};
use crate::model::{
    CallMode, Interaction, LiveCall, Participant, ProxyNumber, Session, SessionStatus,
    WarningOutcome,
};
use crate::phone::PhoneNumber;

#[derive(Default)]
struct Tables {
    sessions: HashMap<String, Session>,
    unique_names: HashMap<String, String>,
    /// (proxy, caller) → route, kept while the session is open, as the store keeps them.
    routes: HashMap<(String, String), Route>,
    numbers: Vec<ProxyNumber>,
    legs: Vec<Interaction>,
    conferences: HashMap<(String, String), ConferenceRecord>,
    due: BTreeMap<String, i64>,
    locks: HashSet<String>,
    claimed: HashMap<String, (i64, WarningOutcome)>,
    /// Failures to give, by operation name, in order (one per call).
    failures: HashMap<&'static str, Vec<StoreError>>,
    create_conflicts: Vec<CreateConflict>,
}

impl Tables {
    /// The next conflict a test scripted for a write that adds routes, if any.
    fn scripted_conflict(&mut self) -> Result<(), CreateError> {
        if self.create_conflicts.is_empty() {
            Ok(())
        } else {
            Err(CreateError::Conflict(self.create_conflicts.remove(0)))
        }
    }

    /// I1: the first of `participants` whose (proxy, number) an open session already routes.
    fn route_taken(&self, participants: &[Participant]) -> Option<CreateConflict> {
        participants.iter().find_map(|p| {
            let taken = self.sessions.values().any(|s| {
                s.status.is_open()
                    && s.participants.iter().any(|q| {
                        q.identifier == p.identifier && q.proxy_identifier == p.proxy_identifier
                    })
            });
            taken.then(|| CreateConflict::Route {
                proxy: p.proxy_identifier.clone(),
                participant: p.identifier.clone(),
            })
        })
    }

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
        if let ([a, b], true) = (&session.participants[..], session.status.is_open()) {
            for (caller, other) in [(a, b), (b, a)] {
                let key = (
                    caller.proxy_identifier.to_string(),
                    caller.identifier.to_string(),
                );
                t.routes.insert(key, Route::of(&session, caller, other));
            }
        }
        t.sessions.insert(session.sid.clone(), session);
    }

    /// Closes the session but leaves its routes, as a close that lands between a timed
    /// call's admission on its route and its leg being written.
    pub fn close_after_routing(&self, sid: &str) {
        if let Some(s) = self.tables().sessions.get_mut(sid) {
            s.status = SessionStatus::Closed;
        }
    }

    /// The route `caller` uses on `proxy`, as stored (numbers as text or parsed).
    pub fn route(
        &self,
        proxy: impl std::fmt::Display,
        caller: impl std::fmt::Display,
    ) -> Option<Route> {
        let key = (proxy.to_string(), caller.to_string());
        self.tables().routes.get(&key).cloned()
    }

    /// Activity that moves only the session item, as `call-status`'s callbacks do.
    pub fn touch_session_only(&self, sid: &str, at: i64) {
        if let Some(s) = self.tables().sessions.get_mut(sid) {
            s.date_last_interaction = Some(at);
        }
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

    /// A number used only when a participant's `proxy_identifier` names it.
    pub fn add_reserved_number(&self, number: &str) {
        self.tables().numbers.push(ProxyNumber {
            phone_number: PhoneNumber::parse(number).unwrap(),
            is_reserved: true,
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

    /// The session's room `conference_sid`, open, holding `legs` (label, CallSid).
    pub fn put_room(&self, session_sid: &str, conference_sid: &str, legs: &[(&str, &str)]) {
        let legs = legs
            .iter()
            .map(|(label, call)| (label.to_string(), call.to_string()))
            .collect();
        self.put_conference(
            session_sid,
            ConferenceRecord {
                conference_sid: conference_sid.to_owned(),
                room: "tsunagu-room".into(),
                ended_at: None,
                ended_reason: None,
                legs,
            },
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

    pub fn claimed(&self, sid: &str) -> Option<(i64, WarningOutcome)> {
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

    async fn get_sessions(
        &self,
        sids: &[String],
    ) -> Result<std::collections::HashMap<String, Session>, StoreError> {
        self.failure("get_sessions")?;
        Ok(sids
            .iter()
            .filter_map(|sid| self.session(sid).map(|s| (sid.clone(), s)))
            .collect())
    }

    async fn session_sid_by_unique_name(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.tables().unique_names.get(name).cloned())
    }

    async fn create_session(&self, session: &Session, _now: i64) -> Result<(), CreateError> {
        self.failure("create_session")?;
        let mut t = self.tables();
        t.scripted_conflict()?;
        // A name is free again once its session has closed (as the store releases it).
        if let Some(name) = &session.unique_name
            && t.unique_names
                .get(name)
                .is_some_and(|sid| t.sessions.get(sid).is_none_or(|s| s.status.is_open()))
        {
            return Err(CreateError::Conflict(CreateConflict::UniqueName));
        }
        if let Some(conflict) = t.route_taken(&session.participants) {
            return Err(CreateError::Conflict(conflict));
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
        t.routes.retain(|_, r| r.session_sid != session.sid);
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
        let expiry = stored.date_expiry;
        for r in t
            .routes
            .values_mut()
            .filter(|r| r.session_sid == session.sid)
        {
            r.date_expiry = expiry;
        }
        t.file_due(&session.sid, due);
        Ok(())
    }

    async fn reopen_session(
        &self,
        before: &Session,
        after: &Session,
        _now: i64,
    ) -> Result<(), CreateError> {
        self.failure("reopen_session")?;
        let mut t = self.tables();
        t.scripted_conflict()?;
        if t.sessions.get(&before.sid) != Some(before) {
            return Err(CreateError::Conflict(CreateConflict::Contention));
        }
        if let Some(name) = &after.unique_name
            && t.unique_names.get(name).is_some_and(|sid| {
                sid != &after.sid && t.sessions.get(sid).is_none_or(|s| s.status.is_open())
            })
        {
            return Err(CreateError::Conflict(CreateConflict::UniqueName));
        }
        if let Some(conflict) = t.route_taken(&after.participants) {
            return Err(CreateError::Conflict(conflict));
        }
        drop(t);
        self.put_session(after.clone());
        self.tables().file_due(&after.sid, after.deadline());
        Ok(())
    }

    async fn update_session_times(
        &self,
        before: &Session,
        after: &Session,
        due: Option<i64>,
        _now: i64,
    ) -> Result<(), StoreError> {
        self.failure("update_session_times")?;
        let mut t = self.tables();
        let stored = t
            .sessions
            .get_mut(&before.sid)
            .filter(|s| {
                s.status.is_open() && s.ttl == before.ttl && s.date_expiry == before.date_expiry
            })
            .ok_or(StoreError::ConditionFailed)?;
        stored.ttl = after.ttl;
        stored.date_expiry = after.date_expiry;
        stored.date_updated = after.date_updated;
        for r in t
            .routes
            .values_mut()
            .filter(|r| r.session_sid == before.sid)
        {
            r.date_expiry = after.date_expiry;
        }
        t.file_due(&before.sid, due);
        Ok(())
    }

    async fn add_participant(
        &self,
        session: &Session,
        participant: &Participant,
        now: i64,
    ) -> Result<(), CreateError> {
        self.failure("add_participant")?;
        let mut t = self.tables();
        t.scripted_conflict()?;
        let unchanged = t
            .sessions
            .get(&session.sid)
            .is_some_and(|s| s.status.is_open() && s.participants == session.participants);
        if !unchanged {
            return Err(CreateError::Conflict(CreateConflict::Contention));
        }
        let taken = t.sessions.values().any(|s| {
            s.status.is_open()
                && s.participants.iter().any(|q| {
                    q.identifier == participant.identifier
                        && q.proxy_identifier == participant.proxy_identifier
                })
        });
        if taken {
            return Err(CreateError::Conflict(CreateConflict::Route {
                proxy: participant.proxy_identifier.clone(),
                participant: participant.identifier.clone(),
            }));
        }
        let mut stored = t.sessions[&session.sid].clone();
        stored.participants.push(participant.clone());
        stored.date_updated = now;
        drop(t);
        self.put_session(stored);
        Ok(())
    }

    async fn remove_participant(
        &self,
        session: &Session,
        index: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        self.failure("remove_participant")?;
        let mut t = self.tables();
        let stored = t
            .sessions
            .get_mut(&session.sid)
            .filter(|s| s.status == session.status && s.participants == session.participants)
            .ok_or(StoreError::ConditionFailed)?;
        let gone = stored.participants.remove(index);
        if stored.decider.as_deref() == Some(gone.sid.as_str()) {
            stored.decider = None;
        }
        stored.date_updated = now;
        t.routes.retain(|_, r| r.session_sid != session.sid);
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

    async fn admit_route(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        call_sid: &str,
        now: i64,
    ) -> Result<RouteCheck, StoreError> {
        self.failure("admit_route")?;
        let key = (proxy.to_string(), caller.to_string());
        let mut t = self.tables();
        let Some(route) = t.routes.get_mut(&key) else {
            return Ok(RouteCheck::Missing);
        };
        if route.date_expiry.is_some_and(|e| e <= now) {
            return Ok(RouteCheck::Ended(route.clone()));
        }
        if route.ttl > 0 && route.inactive_after.is_some_and(|i| i <= now) {
            return Ok(RouteCheck::Idle(route.clone()));
        }
        let prior = CallNote {
            last_call_sid: route.last_call_sid.clone(),
            last_call_at: route.last_call_at,
            inactive_after: route.inactive_after,
        };
        route.last_call_sid = Some(call_sid.to_owned());
        route.last_call_at = Some(now);
        route.inactive_after = Some(now + route.ttl as i64);
        Ok(RouteCheck::Open(route.clone(), prior))
    }

    async fn forget_call(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        call_sid: &str,
        prior: &CallNote,
    ) -> Result<bool, StoreError> {
        self.failure("forget_call")?;
        let key = (proxy.to_string(), caller.to_string());
        let mut t = self.tables();
        let Some(route) = t
            .routes
            .get_mut(&key)
            .filter(|r| r.last_call_sid.as_deref() == Some(call_sid))
        else {
            return Ok(false);
        };
        route.last_call_sid = prior.last_call_sid.clone();
        route.last_call_at = prior.last_call_at;
        route.inactive_after = prior.inactive_after;
        Ok(true)
    }

    async fn start_inbound_leg(
        &self,
        leg: &Interaction,
        (proxy, caller): (&PhoneNumber, &PhoneNumber),
        live: Option<&LiveCall>,
        now: i64,
        _retention: i64,
    ) -> Result<bool, StoreError> {
        self.failure("start_inbound_leg")?;
        let mut guard = self.tables();
        let t = &mut *guard;
        // The session's condition is checked first, as in the store's transaction.
        let Some(session) = t.sessions.get_mut(&leg.session_sid).filter(|s| {
            s.status.is_open()
                && s.date_expiry.is_none_or(|e| e > now)
                && (s.ttl == 0
                    || s.date_last_interaction
                        .is_none_or(|l| l + s.ttl as i64 > now))
        }) else {
            return Ok(false);
        };
        // The same CallSid again (Twilio retried): already logged, and nothing is written.
        let retried = t.legs.iter().any(|l| l.call_sid == leg.call_sid);
        if retried {
            return Ok(true);
        }
        session.status = SessionStatus::InProgress;
        session.date_last_interaction = Some(now);
        session.date_updated = now;
        if session.live_call.is_none() {
            session.live_call = live.cloned();
        }
        t.legs.push(leg.clone());
        let key = (proxy.to_string(), caller.to_string());
        if let Some(route) = t.routes.get_mut(&key) {
            route.last_call_sid = Some(leg.call_sid.clone());
            route.last_call_at = Some(now);
            route.inactive_after = Some(now + route.ttl as i64);
        }
        Ok(true)
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
        replace: bool,
    ) -> Result<(), StoreError> {
        self.failure("begin_live_call")?;
        let mut t = self.tables();
        let stored = t
            .sessions
            .get_mut(sid)
            .filter(|s| s.status.is_open())
            .ok_or(StoreError::ConditionFailed)?;
        if !replace && stored.live_call.is_some() {
            return Ok(());
        }
        stored.live_call = Some(LiveCall {
            mode,
            limit,
            deadline: None,
            warned_for: None,
            warning: None,
            noticed_for: None,
        });
        Ok(())
    }

    async fn abandon_live_call(
        &self,
        sid: &str,
        mode: CallMode,
        limit: u64,
    ) -> Result<bool, StoreError> {
        self.failure("abandon_live_call")?;
        let mut t = self.tables();
        let Some(session) = t.sessions.get_mut(sid).filter(|s| {
            s.live_call
                .as_ref()
                .is_some_and(|l| l.deadline.is_none() && l.mode == mode && l.limit == limit)
        }) else {
            return Ok(false);
        };
        session.live_call = None;
        Ok(true)
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
        self.failure("clear_live_call")?;
        let mut t = self.tables();
        if let Some(s) = t.sessions.get_mut(sid) {
            s.live_call = None;
            s.current_conference = None;
        }
        t.file_due(sid, due);
        Ok(())
    }

    async fn claim_notice(&self, sid: &str, deadline: i64) -> Result<bool, StoreError> {
        self.failure("claim_notice")?;
        let mut t = self.tables();
        let Some(live) = t
            .sessions
            .get_mut(sid)
            .filter(|s| s.status.is_open())
            .and_then(|s| s.live_call.as_mut())
            .filter(|l| l.deadline == Some(deadline) && l.noticed_for != Some(deadline))
        else {
            return Ok(false);
        };
        live.noticed_for = Some(deadline);
        Ok(true)
    }

    async fn claim_warning(
        &self,
        sid: &str,
        deadline: i64,
        outcome: WarningOutcome,
    ) -> Result<bool, StoreError> {
        let mut t = self.tables();
        if t.claimed.get(sid).is_some_and(|(d, _)| *d == deadline) {
            return Ok(false);
        }
        t.claimed.insert(sid.to_owned(), (deadline, outcome));
        if let Some(live) = t.sessions.get_mut(sid).and_then(|s| s.live_call.as_mut()) {
            live.warned_for = Some(deadline);
            live.warning = Some(outcome);
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

    async fn conference_ended(
        &self,
        session_sid: &str,
        conference_sid: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.failure("conference_ended")?;
        let mut t = self.tables();
        let key = (session_sid.to_owned(), conference_sid.to_owned());
        let record = t
            .conferences
            .entry(key)
            .or_insert_with(|| ConferenceRecord {
                conference_sid: conference_sid.to_owned(),
                room: String::new(),
                ended_at: None,
                ended_reason: None,
                legs: BTreeMap::new(),
            });
        if record.ended_at.is_none() {
            record.ended_at = Some(now);
            record.ended_reason = Some(reason.to_owned());
        }
        if let Some(s) = t
            .sessions
            .get_mut(session_sid)
            .filter(|s| s.current_conference.as_deref() == Some(conference_sid))
        {
            s.current_conference = None;
        }
        Ok(())
    }

    /// One page holding every session due in shard 0 (the fake has no shards).
    async fn due_page(
        &self,
        shard: u32,
        now: i64,
        _start: Option<DueCursor>,
    ) -> Result<(Vec<DueSession>, Option<DueCursor>), StoreError> {
        if shard != 0 {
            return Ok((Vec::new(), None));
        }
        let sids = self
            .tables()
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(sid, at)| DueSession {
                sid: sid.clone(),
                due_at: *at,
            })
            .collect();
        Ok((sids, None))
    }
}
