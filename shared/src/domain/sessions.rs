//! Sessions: allocating proxy numbers, reading, closing and extending. Rules over the
//! store and call-control ports; no HTTP, Lambda or SDK types.

use std::collections::HashSet;
use std::time::Duration;

use crate::domain::error::DomainError;
use crate::domain::ports::{CreateConflict, CreateError, Ctx, StoreError};
use crate::ids;
use crate::model::{Extension, Interaction, Participant, Session, SessionStatus};
use crate::phone::PhoneNumber;
use crate::pool::{self, Need, Shortage};

pub const MODE_VOICE_ONLY: &str = "voice-only";
/// Twilio's `<Dial timeLimit>` and Call `TimeLimit` top out at four hours.
pub const MAX_CALL_SECONDS: u64 = 14_400;
/// Unique names longer than this are never stored, so a lookup by one is skipped.
pub const MAX_UNIQUE_NAME: usize = 191;
/// Races over the same proxy slot are retried; each retry sees the winner's routes.
pub(super) const MAX_CREATE_ATTEMPTS: usize = 25;
/// How far `POST …/extend` may move a session's end at once.
pub const MAX_EXTEND_SECONDS: u64 = 30 * 86_400;
/// A session's end (`date_expiry`, a live call's deadline) is at most this far from now,
/// when it is set and whenever it is extended.
pub const MAX_END_AHEAD_SECONDS: i64 = 365 * 86_400;

/// A create request that passed validation: everything but the proxy numbers is decided.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub unique_name: Option<String>,
    pub ttl: u64,
    pub date_expiry: Option<i64>,
    pub call_time_limit: Option<u64>,
    pub warning_lead: u64,
    pub extension: Extension,
    /// The most a live call may cost; the call ends before its cost would pass it.
    pub max_cost: Option<crate::pricing::Yen>,
    /// Index into `participants` of the deciding participant.
    pub decider: usize,
    pub participants: Vec<NewParticipant>,
    /// Record every call; `recording_announcement` is the notice both parties hear.
    pub record: bool,
    pub recording_announcement: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewParticipant {
    pub identifier: PhoneNumber,
    pub friendly_name: Option<String>,
    pub proxy_identifier: Option<PhoneNumber>,
    pub announcement: Option<String>,
    pub announcement_url: Option<String>,
}

/// What the pool looked like when no number could be chosen, for the right refusal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PoolState {
    Empty,
    OnlyReserved,
    Unreserved,
}

impl PoolState {
    pub(super) fn of(pool: &[crate::model::ProxyNumber]) -> PoolState {
        if pool.is_empty() {
            PoolState::Empty
        } else if pool.iter().all(|n| n.is_reserved) {
            PoolState::OnlyReserved
        } else {
            PoolState::Unreserved
        }
    }
}

pub(super) fn shortage_error(s: Shortage, pool: PoolState) -> DomainError {
    match s {
        Shortage::NoneFree { participant } => match pool {
            PoolState::Empty => DomainError::NoNumbersInPool(
                "the number pool is empty; add numbers with POST /v1/numbers".to_owned(),
            ),
            PoolState::OnlyReserved => DomainError::OnlyReservedNumbers(format!(
                "every number in the pool is reserved, and reserved numbers are used only when a participant's proxy_identifier names them; name one for {}, or add an unreserved number with POST /v1/numbers",
                participant.masked()
            )),
            PoolState::Unreserved => DomainError::NoProxyNumber(format!(
                "{} already has an open session on every unreserved proxy number; close one of their sessions or add numbers with POST /v1/numbers",
                participant.masked()
            )),
        },
        Shortage::NotInPool { number } => DomainError::NumberNotInPool(format!(
            "proxy_identifier {number} is not in the number pool; add it with POST /v1/numbers"
        )),
        Shortage::Taken {
            number,
            participant,
        } => DomainError::IdentifierConflict(format!(
            "{} already has an open session on proxy number {number}; choose another proxy_identifier",
            participant.masked()
        )),
    }
}

/// Creates the session: picks proxy numbers and writes everything in one transaction,
/// retrying when a concurrent create took the same slot first.
pub async fn create(ctx: Ctx<'_>, new: NewSession) -> Result<Session, DomainError> {
    for attempt in 0..MAX_CREATE_ATTEMPTS {
        let (numbers, taken) = futures::try_join!(
            ctx.store.list_numbers(),
            futures::future::try_join_all(
                new.participants
                    .iter()
                    .map(|p| ctx.store.proxies_of(&p.identifier))
            ),
        )?;
        if let Some(p) = new
            .participants
            .iter()
            .find(|p| numbers.iter().any(|n| n.phone_number == p.identifier))
        {
            // A proxy number as a participant would route calls back into the pool.
            return Err(DomainError::ParticipantIsProxyNumber(format!(
                "{} is one of the pool's proxy numbers; a participant must be a person's own number",
                p.identifier.masked()
            )));
        }
        let taken: Vec<HashSet<PhoneNumber>> =
            taken.into_iter().map(|t| t.into_iter().collect()).collect();
        let needs: Vec<Need<'_>> = new
            .participants
            .iter()
            .zip(&taken)
            .map(|(p, taken)| Need {
                identifier: &p.identifier,
                requested: p.proxy_identifier.as_ref(),
                taken,
            })
            .collect();
        let chosen = pool::choose(&numbers, &needs, random_index())
            .map_err(|s| shortage_error(s, PoolState::of(&numbers)))?;

        let now = ctx.now();
        let session = Session {
            sid: ids::new_sid(ids::SESSION),
            unique_name: new.unique_name.clone(),
            status: SessionStatus::Open,
            closed_reason: None,
            mode: MODE_VOICE_ONLY.into(),
            ttl: new.ttl,
            date_expiry: new.date_expiry,
            date_created: now,
            date_updated: now,
            date_last_interaction: None,
            call_time_limit: new.call_time_limit,
            warning_lead: new.warning_lead,
            extension: new.extension,
            extension_count: 0,
            total_cost_milli_yen: 0,
            max_cost_milli_yen: new.max_cost.map(|c| c.milli()),
            current_conference: None,
            decider: None,
            live_call: None,
            record: new.record,
            recording_announcement: new.recording_announcement.clone(),
            date_reopened: None,
            participants: new
                .participants
                .iter()
                .zip(chosen)
                .map(|(p, proxy)| Participant {
                    sid: ids::new_sid(ids::PARTICIPANT),
                    identifier: p.identifier.clone(),
                    proxy_identifier: proxy,
                    friendly_name: p.friendly_name.clone(),
                    announcement: p.announcement.clone(),
                    announcement_url: p.announcement_url.clone(),
                })
                .collect(),
        };
        let mut session = session;
        session.decider = session.participants.get(new.decider).map(|p| p.sid.clone());
        match ctx.store.create_session(&session, now).await {
            Ok(()) => {
                tracing::info!(session = %session.sid, attempt, "session created");
                return Ok(session);
            }
            Err(CreateError::Store(e)) => return Err(e.into()),
            Err(CreateError::Conflict(CreateConflict::UniqueName)) => {
                return Err(DomainError::UniqueNameTaken(format!(
                    "another session already has unique_name {:?}",
                    new.unique_name.unwrap_or_default()
                )));
            }
            Err(CreateError::Conflict(CreateConflict::Route { proxy, participant })) => {
                let requested = new.participants.iter().any(|p| {
                    p.identifier == participant && p.proxy_identifier.as_ref() == Some(&proxy)
                });
                if requested {
                    return Err(shortage_error(
                        Shortage::Taken {
                            number: proxy,
                            participant,
                        },
                        PoolState::Unreserved,
                    ));
                }
                // Someone else took this slot a moment ago; the next read sees it.
            }
            Err(CreateError::Conflict(
                CreateConflict::NumberGone(_) | CreateConflict::Contention,
            )) => {}
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(DomainError::Contention(
        "many sessions were created for these participants at once; nothing was written, retry"
            .into(),
    ))
}

pub(super) fn random_index() -> usize {
    uuid::Uuid::new_v4().as_u128() as usize
}

/// A few milliseconds, growing and jittered, so racing creates do not collide again in step.
pub(super) fn backoff(attempt: usize) -> Duration {
    let base = 5u64 << attempt.min(5);
    Duration::from_millis(base + (random_index() as u64 % (base + 1)))
}

/// Reads a session by SID, or by unique name when the key is not a SID.
pub async fn find(ctx: Ctx<'_>, sid_or_name: &str) -> Result<Session, DomainError> {
    let sid = if ids::is_sid(ids::SESSION, sid_or_name) {
        Some(sid_or_name.to_owned())
    } else if sid_or_name.is_empty() || sid_or_name.len() > 4 * MAX_UNIQUE_NAME {
        None
    } else {
        ctx.store.session_sid_by_unique_name(sid_or_name).await?
    };
    let session = match sid {
        Some(sid) => ctx.store.get_session(&sid).await?,
        None => None,
    };
    session.ok_or_else(|| DomainError::NotFound(format!("no session {sid_or_name:?}")))
}

/// Closes a session (I3) and ends its live calls. Closing a closed session returns it as it
/// is: DELETE is idempotent.
pub async fn close(ctx: Ctx<'_>, sid_or_name: &str, reason: &str) -> Result<Session, DomainError> {
    loop {
        let session = find(ctx, sid_or_name).await?;
        if !session.status.is_open() {
            return Ok(session);
        }
        let now = ctx.now();
        match ctx
            .store
            .close_session(&session, reason, now, now + ctx.settings.retention_seconds)
            .await
        {
            Ok(()) => {
                // Only a call still before its deadline has timers left to remove: a sweep
                // closing thousands of expired sessions makes no Scheduler request.
                let timed = session
                    .live_call
                    .as_ref()
                    .and_then(|l| l.deadline)
                    .is_some_and(|d| d > now);
                futures::future::join(end_live_calls(ctx, &session.sid), async {
                    if timed {
                        crate::domain::timers::disarm(ctx, &session.sid).await;
                    }
                })
                .await;
                tracing::info!(session = %session.sid, reason, "session closed");
                return find(ctx, &session.sid).await;
            }
            // A concurrent close or status change won; read again and answer from that.
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Asks Twilio to end every call leg of the session still live. Ending a parent ends the
/// leg it dialled, so only legs without a logged parent are ended directly. Failures are
/// logged: the session is already closed and routes nothing, whatever Twilio says.
pub async fn end_live_calls(ctx: Ctx<'_>, session_sid: &str) {
    let legs = match ctx.store.list_interactions(session_sid).await {
        Ok(legs) => legs,
        Err(e) => {
            tracing::error!(session = session_sid, error = %e, "could not list calls to end");
            return;
        }
    };
    let live: Vec<&Interaction> = legs.iter().filter(|l| !l.status.is_final()).collect();
    let live_sids: HashSet<&str> = live.iter().map(|l| l.call_sid.as_str()).collect();
    let roots = live.iter().filter(|l| {
        l.parent_call_sid
            .as_deref()
            .is_none_or(|p| !live_sids.contains(p))
    });
    for leg in roots {
        if let Err(e) = ctx.calls.end_call(&leg.call_sid).await {
            tracing::error!(session = session_sid, call = %leg.call_sid, error = %e, "could not end live call");
        }
    }
}

/// The live legs' Twilio `TimeLimit`, moved past the live call's new `deadline`. The sweep
/// ends the call at the deadline itself; this limit is the safety net should the sweep not
/// run, and without it Twilio would cut the call at the old one. A dialled leg has a limit
/// of its own (its parent's `<Dial timeLimit>`), so it is moved too. The limit counts from
/// each leg's creation, so it never cuts a call early whichever way Twilio counts (Twilio
/// REST API, Call resource, "Update a Call": `TimeLimit`).
pub async fn move_time_limits(ctx: Ctx<'_>, session_sid: &str, deadline: i64) {
    let legs = match ctx.store.list_interactions(session_sid).await {
        Ok(legs) => legs,
        Err(e) => {
            tracing::warn!(session = session_sid, error = %e, "could not list the calls whose TimeLimit to move");
            return;
        }
    };
    let live = legs.iter().filter(|l| !l.status.is_final());
    futures::future::join_all(live.map(|leg| async move {
        let limit = (deadline - leg.date_created).max(60) as u64 + 120;
        if let Err(e) = ctx
            .calls
            .set_time_limit(&leg.call_sid, limit.min(MAX_CALL_SECONDS))
            .await
        {
            tracing::warn!(call = %leg.call_sid, error = %e, "could not move the call's TimeLimit");
        }
    }))
    .await;
}

/// Moves the session's end by `seconds`: its `date_expiry` and its live call's deadline,
/// whichever it has (`POST /v1/sessions/{sid}/extend`).
pub async fn extend(ctx: Ctx<'_>, sid_or_name: &str, seconds: u64) -> Result<Session, DomainError> {
    if !(1..=MAX_EXTEND_SECONDS).contains(&seconds) {
        return Err(DomainError::Invalid(format!(
            "seconds must be 1 to {MAX_EXTEND_SECONDS} (30 days)"
        )));
    }
    let session = find(ctx, sid_or_name).await?;
    if !session.status.is_open() {
        return Err(DomainError::SessionClosed(format!(
            "session {} is closed",
            session.sid
        )));
    }
    let deadline = session.live_call.as_ref().and_then(|l| l.deadline);
    if session.date_expiry.is_none() && deadline.is_none() {
        return Err(DomainError::NothingToExtend(
            "the session has no date_expiry and no call under a time limit; set a ttl or date_expiry instead".into(),
        ));
    }
    let now = ctx.now();
    let seconds = seconds as i64;
    let furthest = now.saturating_add(MAX_END_AHEAD_SECONDS);
    let moved = session.extended_by(seconds);
    let moved_end = moved
        .date_expiry
        .into_iter()
        .chain(moved.live_call.as_ref().and_then(|l| l.deadline))
        .max();
    if moved_end.is_some_and(|end| end > furthest) {
        return Err(DomainError::BeyondMaximumEnd(format!(
            "extending by {seconds} s would end the session after {}; a session ends at most 365 days ahead",
            crate::clock::iso(furthest)
        )));
    }
    // A cost cap holds whoever extends: the call may not run past the moment its running
    // cost would pass max_cost (as pressing 1 may not: domain::extension).
    if let Some(deadline) = deadline
        && let Some(cap) = crate::domain::deadline::cost_deadline_of(ctx, &session, now).await?
        && deadline + seconds > cap
    {
        return Err(DomainError::ExtensionPastMaxCost(format!(
            "extending by {seconds} s would end the live call at {}, after its cost would pass max_cost at {}",
            crate::clock::iso(deadline + seconds),
            crate::clock::iso(cap)
        )));
    }
    // The sweep must wake for the moved end (and its warning), not the old one.
    let due = crate::domain::due::next_due(&session.extended_by(seconds), false, now);
    match ctx.store.extend_session(&session, seconds, due, now).await {
        Ok(()) => {
            if let Some(deadline) = deadline {
                futures::future::join(
                    move_time_limits(ctx, &session.sid, deadline + seconds),
                    crate::domain::timers::arm(ctx, &moved, deadline + seconds),
                )
                .await;
            }
            find(ctx, &session.sid).await
        }
        Err(StoreError::ConditionFailed) => Err(DomainError::SessionChanged(
            "the session closed or its end moved meanwhile; read it again and retry".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// A change asked by `POST /v1/sessions/{sid}` (Proxy's Session update).
#[derive(Debug, Clone, Default)]
pub struct SessionChange {
    pub status: Option<StatusChange>,
    pub date_expiry: Option<i64>,
    pub ttl: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// `closed`: as `DELETE` (idempotent).
    Close,
    /// `in-progress`: reopen a closed session.
    Reopen,
}

/// Applies a session update: close it, reopen it (routes allocated again under I1), or move
/// its `date_expiry` and `ttl`.
pub async fn update(
    ctx: Ctx<'_>,
    sid_or_name: &str,
    change: SessionChange,
) -> Result<Session, DomainError> {
    match change.status {
        Some(StatusChange::Close) => {
            if change.date_expiry.is_some() || change.ttl.is_some() {
                return Err(DomainError::Invalid(
                    "status closed cannot be combined with date_expiry or ttl".into(),
                ));
            }
            close(ctx, sid_or_name, "closed-by-api").await
        }
        Some(StatusChange::Reopen) => reopen(ctx, sid_or_name, &change).await,
        None => set_times(ctx, sid_or_name, &change).await,
    }
}

/// The session with the change's `date_expiry` and `ttl`; refused when its end has passed.
fn with_times(session: &Session, change: &SessionChange, now: i64) -> Result<Session, DomainError> {
    let mut after = session.clone();
    if let Some(expiry) = change.date_expiry {
        after.date_expiry = Some(expiry);
    }
    if let Some(ttl) = change.ttl {
        after.ttl = ttl;
    }
    after.date_updated = now;
    if after.date_expiry.is_some_and(|e| e <= now) {
        return Err(DomainError::Invalid(
            "the session's date_expiry has passed; give a new date_expiry".into(),
        ));
    }
    Ok(after)
}

async fn set_times(
    ctx: Ctx<'_>,
    sid_or_name: &str,
    change: &SessionChange,
) -> Result<Session, DomainError> {
    if change.date_expiry.is_none() && change.ttl.is_none() {
        return Err(DomainError::Invalid(
            "nothing to change: give status, date_expiry or ttl".into(),
        ));
    }
    let session = find(ctx, sid_or_name).await?;
    if !session.status.is_open() {
        return Err(DomainError::SessionClosed(format!(
            "session {} is closed; reopen it with status in-progress",
            session.sid
        )));
    }
    if session
        .live_call
        .as_ref()
        .is_some_and(|l| l.deadline.is_some())
    {
        // The live call's deadline was derived from the old end; it moves with POST …/extend.
        return Err(DomainError::CallInProgress(
            "the session has a call under a deadline; move it with POST …/extend, or change date_expiry or ttl once the call has ended".into(),
        ));
    }
    let now = ctx.now();
    let after = with_times(&session, change, now)?;
    let due = crate::domain::due::next_due(&after, false, now);
    match ctx
        .store
        .update_session_times(&session, &after, due, now)
        .await
    {
        Ok(()) => find(ctx, &session.sid).await,
        Err(StoreError::ConditionFailed) => Err(DomainError::SessionChanged(
            "the session closed or its end changed meanwhile; read it again and retry".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Reopens a closed session: its participants keep their proxy numbers when those are still
/// in the pool and free for each of them (I1), otherwise get new ones; its unique name is
/// claimed again (80603 when another session took it meanwhile). Reopening an open session
/// is 80608, as in Proxy (the transition is closed → in-progress only).
async fn reopen(
    ctx: Ctx<'_>,
    sid_or_name: &str,
    change: &SessionChange,
) -> Result<Session, DomainError> {
    for attempt in 0..MAX_CREATE_ATTEMPTS {
        let session = find(ctx, sid_or_name).await?;
        if session.status.is_open() {
            return Err(DomainError::InvalidStatusTransition(format!(
                "session {} is {}; only a closed session can be reopened (closed → in-progress)",
                session.sid,
                session.status.as_str()
            )));
        }
        let now = ctx.now();
        let mut after = with_times(&session, change, now)?;
        after.status = SessionStatus::InProgress;
        after.closed_reason = None;
        after.live_call = None;
        after.current_conference = None;
        after.date_reopened = Some(now);
        let (numbers, taken) = futures::try_join!(
            ctx.store.list_numbers(),
            futures::future::try_join_all(
                session
                    .participants
                    .iter()
                    .map(|p| ctx.store.proxies_of(&p.identifier))
            ),
        )?;
        let taken: Vec<HashSet<PhoneNumber>> =
            taken.into_iter().map(|t| t.into_iter().collect()).collect();
        let keep = session.participants.iter().zip(&taken).all(|(p, taken)| {
            !taken.contains(&p.proxy_identifier)
                && numbers.iter().any(|n| n.phone_number == p.proxy_identifier)
        });
        if !keep {
            let needs: Vec<Need<'_>> = session
                .participants
                .iter()
                .zip(&taken)
                .map(|(p, taken)| Need {
                    identifier: &p.identifier,
                    requested: None,
                    taken,
                })
                .collect();
            let chosen = pool::choose(&numbers, &needs, random_index())
                .map_err(|s| shortage_error(s, PoolState::of(&numbers)))?;
            for (p, proxy) in after.participants.iter_mut().zip(chosen) {
                p.proxy_identifier = proxy;
            }
        }
        match ctx.store.reopen_session(&session, &after, now).await {
            Ok(()) => {
                tracing::info!(session = %session.sid, attempt, kept_proxies = keep, "session reopened");
                return find(ctx, &session.sid).await;
            }
            Err(CreateError::Store(e)) => return Err(e.into()),
            Err(CreateError::Conflict(CreateConflict::UniqueName)) => {
                return Err(DomainError::UniqueNameTaken(format!(
                    "another session took unique_name {:?} after this one closed",
                    session.unique_name.unwrap_or_default()
                )));
            }
            // A slot or the session itself changed meanwhile: the next read sees it.
            Err(CreateError::Conflict(_)) => {}
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(DomainError::Contention(
        "the session or its participants' numbers changed many times at once; nothing was written, retry".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fakes::{CallRequest, World, leg};
    use crate::model::{CallStatus, LiveCall, sample_session};

    const NOW: i64 = 1_795_552_200;
    const SID: &str = "KC0123456789abcdef0123456789abcdef";

    fn open_session() -> Session {
        Session {
            unique_name: Some("order-1".into()),
            date_created: NOW - 600,
            ..sample_session()
        }
    }

    fn world_with(session: Session) -> World {
        let world = World::at(NOW);
        world.store.put_session(session);
        world
    }

    fn new_session(unique_name: Option<&str>) -> NewSession {
        let p = |n: &str| NewParticipant {
            identifier: PhoneNumber::parse(n).unwrap(),
            friendly_name: None,
            proxy_identifier: None,
            announcement: None,
            announcement_url: None,
        };
        NewSession {
            unique_name: unique_name.map(str::to_owned),
            ttl: 0,
            date_expiry: None,
            call_time_limit: None,
            warning_lead: 180,
            extension: Extension {
                seconds: 300,
                max_count: 1,
            },
            max_cost: None,
            decider: 1,
            participants: vec![p("090-1234-5678"), p("080-9876-5432")],
            record: false,
            recording_announcement: None,
        }
    }

    #[tokio::test]
    async fn a_session_is_found_by_sid_or_unique_name() {
        let world = world_with(open_session());
        assert_eq!(find(world.ctx(), SID).await.unwrap().sid, SID);
        assert_eq!(find(world.ctx(), "order-1").await.unwrap().sid, SID);
        for missing in ["order-2", "KC00000000000000000000000000000000", ""] {
            assert!(
                matches!(
                    find(world.ctx(), missing).await,
                    Err(DomainError::NotFound(_))
                ),
                "{missing:?}"
            );
        }
    }

    #[tokio::test]
    async fn closing_ends_only_the_live_legs_that_lead_their_call() {
        let world = world_with(Session {
            live_call: Some(LiveCall {
                mode: crate::model::CallMode::Conference,
                limit: 600,
                deadline: Some(NOW + 60),
                warned_for: None,
                warning: None,
                noticed_for: None,
            }),
            ..open_session()
        });
        // A's inbound leg and the leg it dialled are live; ending A's ends both. An old,
        // finished call is left alone.
        world
            .store
            .add_leg(leg(SID, "CA1", None, CallStatus::InProgress, NOW));
        world
            .store
            .add_leg(leg(SID, "CA2", Some("CA1"), CallStatus::InProgress, NOW));
        world
            .store
            .add_leg(leg(SID, "CA3", None, CallStatus::Completed, NOW));
        use crate::domain::ports::{TimerKind, Timers};
        world
            .timers
            .set(SID, TimerKind::End, NOW + 60, NOW + 60)
            .await
            .unwrap();
        let closed = close(world.ctx(), SID, "closed-by-api").await.unwrap();
        assert!(
            world.timers.all().is_empty(),
            "a closed session's timers go"
        );
        assert_eq!(closed.status, SessionStatus::Closed);
        assert_eq!(closed.closed_reason.as_deref(), Some("closed-by-api"));
        assert_eq!(
            world.calls.requests(),
            vec![CallRequest::EndCall("CA1".into())]
        );
    }

    #[tokio::test]
    async fn closing_a_closed_session_answers_it_as_it_is() {
        let world = world_with(Session {
            status: SessionStatus::Closed,
            closed_reason: Some("expired".into()),
            ..open_session()
        });
        let session = close(world.ctx(), SID, "closed-by-api").await.unwrap();
        assert_eq!(session.closed_reason.as_deref(), Some("expired"));
        assert!(world.calls.requests().is_empty());
    }

    #[tokio::test]
    async fn a_close_that_loses_a_race_reads_the_session_again() {
        let world = world_with(open_session());
        world
            .store
            .fail_next("close_session", StoreError::ConditionFailed);
        let session = close(world.ctx(), SID, "closed-by-api").await.unwrap();
        assert_eq!(session.status, SessionStatus::Closed);
    }

    #[tokio::test]
    async fn a_store_failure_while_closing_is_reported_and_ends_no_call() {
        let world = world_with(open_session());
        world
            .store
            .add_leg(leg(SID, "CA1", None, CallStatus::InProgress, NOW));
        world
            .store
            .fail_next("close_session", StoreError::Backend("down".into()));
        let err = close(world.ctx(), SID, "closed-by-api").await.unwrap_err();
        assert!(matches!(err, DomainError::Store(_)), "{err:?}");
        assert!(world.store.session(SID).unwrap().status.is_open());
        assert!(world.calls.requests().is_empty());
    }

    #[tokio::test]
    async fn an_extension_outside_its_bounds_changes_nothing() {
        let world = world_with(Session {
            date_expiry: Some(NOW + 600),
            ..open_session()
        });
        for seconds in [0, MAX_EXTEND_SECONDS + 1] {
            let err = extend(world.ctx(), SID, seconds).await.unwrap_err();
            assert!(matches!(err, DomainError::Invalid(_)), "{seconds}: {err:?}");
        }
        assert_eq!(
            world.store.session(SID).unwrap().date_expiry,
            Some(NOW + 600)
        );
    }

    #[tokio::test]
    async fn a_closed_session_or_one_without_an_end_cannot_be_extended() {
        let world = world_with(Session {
            status: SessionStatus::Closed,
            date_expiry: Some(NOW + 600),
            ..open_session()
        });
        assert!(matches!(
            extend(world.ctx(), SID, 60).await,
            Err(DomainError::SessionClosed(_))
        ));
        let world = world_with(open_session());
        assert!(matches!(
            extend(world.ctx(), SID, 60).await,
            Err(DomainError::NothingToExtend(_))
        ));
    }

    #[tokio::test]
    async fn an_extension_moves_the_end_and_the_live_deadline_and_refiles_the_warning() {
        let world = world_with(Session {
            date_expiry: Some(NOW + 3_600),
            live_call: Some(LiveCall {
                mode: crate::model::CallMode::Conference,
                limit: 600,
                deadline: Some(NOW + 300),
                warned_for: None,
                warning: None,
                noticed_for: None,
            }),
            ..open_session()
        });
        // The timers as the call's connection set them, for the old deadline.
        use crate::domain::ports::TimerKind;
        let old = NOW + 300;
        crate::domain::timers::arm(world.ctx(), &world.store.session(SID).unwrap(), old).await;
        assert_eq!(world.timers.get(SID, TimerKind::End), Some((old, old)));
        let session = extend(world.ctx(), SID, 120).await.unwrap();
        assert_eq!(session.date_expiry, Some(NOW + 3_720));
        assert_eq!(session.live_call.unwrap().deadline, Some(NOW + 420));
        // The sweep wakes for the moved deadline's warning, 180 s before it.
        assert_eq!(world.store.due(SID), Some(NOW + 240));
        // Each exact timer moves to the new deadline and carries it.
        let new = NOW + 420;
        assert_eq!(
            world.timers.get(SID, TimerKind::Warning),
            Some((new - 180, new))
        );
        assert_eq!(
            world.timers.get(SID, TimerKind::Notice),
            Some((new - crate::domain::timers::NOTICE_LEAD_SECONDS, new))
        );
        assert_eq!(world.timers.get(SID, TimerKind::End), Some((new, new)));
        assert_eq!(
            world.timers.all().len(),
            3,
            "no timer left for the old deadline"
        );
    }

    #[tokio::test]
    async fn an_extension_moves_a_live_bridges_twilio_limits_dialled_leg_included() {
        let world = world_with(Session {
            live_call: Some(LiveCall {
                mode: crate::model::CallMode::Bridge,
                limit: 600,
                deadline: Some(NOW + 300),
                warned_for: None,
                warning: None,
                noticed_for: None,
            }),
            ..open_session()
        });
        // A (CA1) was rung 310 s ago; B (CA2) is the leg A's <Dial> placed 300 s ago.
        world.store.add_leg(Interaction {
            twilio_direction: crate::model::TwilioDirection::OutboundApi,
            ..leg(SID, "CA1", None, CallStatus::InProgress, NOW - 310)
        });
        world.store.add_leg(leg(
            SID,
            "CA2",
            Some("CA1"),
            CallStatus::InProgress,
            NOW - 300,
        ));
        world
            .store
            .add_leg(leg(SID, "CA0", None, CallStatus::Completed, NOW - 900));
        let session = extend(world.ctx(), SID, 600).await.unwrap();
        assert_eq!(session.live_call.unwrap().deadline, Some(NOW + 900));
        // A bridge has no timers: its legs' limits end it.
        assert!(world.timers.all().is_empty());
        // Each limit counts from the leg's creation and leaves two minutes past the deadline.
        assert_eq!(
            world.calls.requests(),
            vec![
                CallRequest::SetTimeLimit {
                    call_sid: "CA1".into(),
                    seconds: 310 + 900 + 120,
                },
                CallRequest::SetTimeLimit {
                    call_sid: "CA2".into(),
                    seconds: 300 + 900 + 120,
                },
            ]
        );
    }

    #[tokio::test]
    async fn an_extension_of_a_session_without_a_running_call_moves_no_limit() {
        let world = world_with(Session {
            date_expiry: Some(NOW + 600),
            ..open_session()
        });
        world
            .store
            .add_leg(leg(SID, "CA1", None, CallStatus::Ringing, NOW - 10));
        extend(world.ctx(), SID, 60).await.unwrap();
        assert!(world.calls.requests().is_empty());
    }

    #[tokio::test]
    async fn an_extension_racing_a_close_is_refused() {
        let world = world_with(Session {
            date_expiry: Some(NOW + 600),
            ..open_session()
        });
        world
            .store
            .fail_next("extend_session", StoreError::ConditionFailed);
        assert!(matches!(
            extend(world.ctx(), SID, 60).await,
            Err(DomainError::SessionChanged(_))
        ));
        assert_eq!(
            world.store.session(SID).unwrap().date_expiry,
            Some(NOW + 600)
        );
    }

    #[tokio::test]
    async fn a_new_session_shares_one_free_proxy_number_and_names_its_decider() {
        let world = World::at(NOW);
        world.store.add_number("050-3123-4567");
        let session = create(world.ctx(), new_session(Some("order-9")))
            .await
            .unwrap();
        assert!(
            session
                .participants
                .iter()
                .all(|p| p.proxy_identifier.as_str() == "+815031234567")
        );
        assert_eq!(session.decider.as_ref(), Some(&session.participants[1].sid));
        assert_eq!(session.date_created, NOW);
        assert!(world.store.session(&session.sid).is_some());
    }

    #[tokio::test]
    async fn an_empty_pool_is_named_as_such() {
        let world = World::at(NOW);
        let err = create(world.ctx(), new_session(None)).await.unwrap_err();
        match err {
            DomainError::NoNumbersInPool(detail) => assert!(detail.contains("empty"), "{detail}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_pool_of_reserved_numbers_only_is_named_as_such() {
        let world = World::at(NOW);
        world.store.add_reserved_number("050-3123-4567");
        let err = create(world.ctx(), new_session(None)).await.unwrap_err();
        assert!(
            matches!(&err, DomainError::OnlyReservedNumbers(d) if d.contains("reserved")),
            "{err:?}"
        );
        // Named by proxy_identifier, the reserved number is used.
        let mut asked = new_session(None);
        for p in &mut asked.participants {
            p.proxy_identifier = Some(PhoneNumber::parse("050-3123-4567").unwrap());
        }
        assert!(create(world.ctx(), asked).await.is_ok());
    }

    #[tokio::test]
    async fn a_participant_on_every_unreserved_number_gets_no_more() {
        let world = World::at(NOW);
        world.store.add_number("050-3123-4567");
        world.store.add_reserved_number("050-3123-4568");
        create(world.ctx(), new_session(None)).await.unwrap();
        let err = create(world.ctx(), new_session(None)).await.unwrap_err();
        assert!(
            matches!(&err, DomainError::NoProxyNumber(d) if d.contains("every unreserved")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_create_that_loses_a_race_tries_again_with_what_the_winner_wrote() {
        let world = World::at(NOW);
        world.store.add_number("050-3123-4567");
        world.store.conflict_next_create(CreateConflict::Contention);
        let session = create(world.ctx(), new_session(None)).await.unwrap();
        assert!(world.store.session(&session.sid).is_some());
    }

    #[tokio::test]
    async fn a_taken_unique_name_is_refused() {
        let world = world_with(open_session());
        world.store.add_number("050-3123-4568");
        let err = create(world.ctx(), new_session(Some("order-1")))
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::UniqueNameTaken(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_unique_name_is_free_again_once_its_session_has_closed() {
        let world = world_with(open_session());
        world.store.add_number("050-3123-4568");
        close(world.ctx(), "order-1", "closed-by-api")
            .await
            .unwrap();
        let again = create(world.ctx(), new_session(Some("order-1")))
            .await
            .unwrap();
        assert_eq!(find(world.ctx(), "order-1").await.unwrap().sid, again.sid);
    }

    #[tokio::test]
    async fn a_proxy_number_of_the_pool_is_refused_as_a_participant() {
        let world = World::at(NOW);
        world.store.add_number("050-3123-4567");
        world.store.add_number("080-9876-5432");
        let err = create(world.ctx(), new_session(None)).await.unwrap_err();
        match err {
            DomainError::ParticipantIsProxyNumber(detail) => {
                assert!(detail.contains("+8180****5432"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn reopening_keeps_free_proxies_and_refuses_an_open_session() {
        let world = world_with(Session {
            status: SessionStatus::Closed,
            closed_reason: Some("closed-by-api".into()),
            ttl: 600,
            ..open_session()
        });
        world.store.add_number("050-3123-4567");
        let reopen = SessionChange {
            status: Some(StatusChange::Reopen),
            ..SessionChange::default()
        };
        let s = update(world.ctx(), SID, reopen.clone()).await.unwrap();
        assert_eq!(s.status, SessionStatus::InProgress);
        assert_eq!(s.closed_reason, None);
        assert_eq!(s.date_reopened, Some(NOW));
        assert_eq!(
            s.inactive_after(),
            Some(NOW + 600),
            "the ttl counts from now"
        );
        assert_eq!(s.participants[0].proxy_identifier.as_str(), "+815031234567");
        let err = update(world.ctx(), SID, reopen).await.unwrap_err();
        assert!(
            matches!(err, DomainError::InvalidStatusTransition(_)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_passed_end_must_be_replaced_to_reopen() {
        let world = world_with(Session {
            status: SessionStatus::Closed,
            date_expiry: Some(NOW - 10),
            ..open_session()
        });
        world.store.add_number("050-3123-4567");
        let mut change = SessionChange {
            status: Some(StatusChange::Reopen),
            ..SessionChange::default()
        };
        let err = update(world.ctx(), SID, change.clone()).await.unwrap_err();
        assert!(matches!(err, DomainError::Invalid(_)), "{err:?}");
        assert!(!world.store.session(SID).unwrap().status.is_open());
        change.date_expiry = Some(NOW + 3_600);
        let s = update(world.ctx(), SID, change).await.unwrap();
        assert_eq!(s.date_expiry, Some(NOW + 3_600));
    }

    #[tokio::test]
    async fn closing_by_update_cannot_carry_other_changes() {
        let world = world_with(open_session());
        let err = update(
            world.ctx(),
            SID,
            SessionChange {
                status: Some(StatusChange::Close),
                ttl: Some(60),
                ..SessionChange::default()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, DomainError::Invalid(_)), "{err:?}");
        assert!(world.store.session(SID).unwrap().status.is_open());
    }

    #[tokio::test]
    async fn an_extension_past_a_year_ahead_is_refused_and_changes_nothing() {
        // The review's case: a date_expiry in year 9999 came back as 1970 once extended.
        let far = crate::clock::parse_iso("9999-12-31T00:00:00Z").unwrap();
        for expiry in [far, NOW + MAX_END_AHEAD_SECONDS - 30] {
            let world = world_with(Session {
                date_expiry: Some(expiry),
                ..open_session()
            });
            let err = extend(world.ctx(), SID, 60).await.unwrap_err();
            assert!(matches!(err, DomainError::BeyondMaximumEnd(_)), "{err:?}");
            assert_eq!(world.store.session(SID).unwrap().date_expiry, Some(expiry));
        }
        let world = world_with(Session {
            date_expiry: Some(NOW + MAX_END_AHEAD_SECONDS - 60),
            ..open_session()
        });
        let moved = extend(world.ctx(), SID, 60).await.unwrap();
        assert_eq!(moved.date_expiry, Some(NOW + MAX_END_AHEAD_SECONDS));
    }
}
