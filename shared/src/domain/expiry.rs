//! The minute sweep (`expiry-warning`, an EventBridge schedule): finds the sessions whose
//! time has come through the due index (a Query per shard, never a Scan), gives the spoken
//! warning once per deadline (I4), ends calls at their deadline and closes expired sessions.
//!
//! A session is filed in the index for the next instant something may happen to it — its
//! warning, its live call's deadline, its `date_expiry` or its inactivity limit. Waking early
//! is harmless: each visit works out what is really due and files the session again.

use futures::StreamExt;
use serde::Serialize;

use crate::domain::error::DomainError;
use crate::domain::ports::{Ctx, StoreError};
use crate::domain::sessions;
use crate::model::{LiveCall, Session};
use crate::store::DUE_SHARDS;

/// At most this many sessions are handled at once, which bounds the requests in flight
/// towards Twilio (each session makes at most two at a time).
pub const CONCURRENCY: usize = 8;
/// A session with live legs but no tracked deadline is looked at again this much later.
const RECHECK_SECONDS: i64 = 60;

pub const WARNING_GIVEN: &str = "given";
pub const WARNING_NOT_POSSIBLE_BRIDGE: &str =
    "not-possible: bridge calls cannot carry an announcement";
pub const WARNING_NOT_POSSIBLE_ABSENT: &str =
    "not-possible: the deciding participant is not in the room";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Sessions the index returned as due.
    pub due: usize,
    /// Index Queries made (pages over all shards).
    pub queries: usize,
    pub warned: usize,
    pub no_warning_possible: usize,
    pub calls_ended: usize,
    pub closed: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Nothing,
    Warned,
    NoWarningPossible,
    CallEnded,
    Closed,
}

/// One run of the sweep at `now`.
pub async fn sweep(ctx: Ctx<'_>, now: i64) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for shard in 0..DUE_SHARDS {
        let mut start = None;
        loop {
            let (sids, next) = ctx.store.due_page(shard, now, start).await?;
            report.queries += 1;
            report.due += sids.len();
            let outcomes: Vec<Result<Outcome, DomainError>> = futures::stream::iter(sids)
                .map(|sid| visit(ctx, sid, now))
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for outcome in outcomes {
                match outcome {
                    Ok(Outcome::Warned) => report.warned += 1,
                    Ok(Outcome::NoWarningPossible) => report.no_warning_possible += 1,
                    Ok(Outcome::CallEnded) => report.calls_ended += 1,
                    Ok(Outcome::Closed) => report.closed += 1,
                    Ok(Outcome::Nothing) => {}
                    Err(e) => {
                        report.failed += 1;
                        tracing::error!(error = %e, "sweep could not handle a session; it stays due");
                    }
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => break,
            }
        }
    }
    tracing::info!(report = ?report, now, "expiry sweep done");
    Ok(report)
}

/// The next instant this session needs the sweep, after `now`.
pub fn next_due(session: &Session, live_legs: bool, now: i64) -> Option<i64> {
    let mut candidates = vec![session.date_expiry];
    match &session.live_call {
        Some(LiveCall {
            deadline: Some(deadline),
            warned_for,
            ..
        }) => {
            candidates.push(Some(*deadline));
            if session.warning_lead > 0 && *warned_for != Some(*deadline) {
                candidates.push(Some(deadline - session.warning_lead as i64));
            }
        }
        // Inactivity only closes a session without a call on the line.
        _ if live_legs => candidates.push(Some(now + RECHECK_SECONDS)),
        _ => candidates.push(session.inactive_after()),
    }
    candidates
        .into_iter()
        .flatten()
        .map(|t| t.max(now + 1))
        .min()
}

async fn visit(ctx: Ctx<'_>, sid: String, now: i64) -> Result<Outcome, DomainError> {
    let Some(session) = ctx.store.get_session(&sid).await? else {
        return Ok(Outcome::Nothing);
    };
    if !session.status.is_open() {
        return Ok(Outcome::Nothing);
    }
    if session.date_expiry.is_some_and(|t| t <= now) {
        return close_expired(ctx, &session).await;
    }
    let mut outcome = Outcome::Nothing;
    let mut session = session;
    if let Some(live) = session.live_call.clone()
        && let Some(deadline) = live.deadline
    {
        if deadline <= now {
            end_live_call(ctx, &session).await;
            let after = Session {
                live_call: None,
                ..session.clone()
            };
            ctx.store
                .clear_live_call(&sid, next_due(&after, false, now))
                .await?;
            tracing::info!(session = %sid, deadline, "call ended at its deadline");
            return Ok(Outcome::CallEnded);
        }
        let warning_at = deadline - session.warning_lead as i64;
        if session.warning_lead > 0 && now >= warning_at && live.warned_for != Some(deadline) {
            outcome = warn(ctx, &session, &live, deadline).await?;
            if let Some(l) = session.live_call.as_mut() {
                l.warned_for = Some(deadline);
            }
        }
    }
    let live_legs =
        if session.live_call.is_none() && session.inactive_after().is_some_and(|t| t <= now) {
            let legs = ctx.store.list_interactions(&sid).await?;
            let live = legs.iter().any(|l| !l.status.is_final());
            if !live {
                return close_expired(ctx, &session).await;
            }
            true
        } else {
            false
        };
    ctx.store
        .set_due(&sid, next_due(&session, live_legs, now))
        .await?;
    Ok(outcome)
}

async fn close_expired(ctx: Ctx<'_>, session: &Session) -> Result<Outcome, DomainError> {
    sessions::close(ctx, &session.sid, "expired").await?;
    if let Some(conference) = &session.current_conference
        && let Err(e) = ctx.calls.end_conference(conference).await
    {
        tracing::error!(conference = %conference, error = %e, "could not end the expired session's conference");
    }
    Ok(Outcome::Closed)
}

/// Ends the live call: the room for a conference, the legs themselves otherwise.
async fn end_live_call(ctx: Ctx<'_>, session: &Session) {
    if let Some(conference) = &session.current_conference
        && let Err(e) = ctx.calls.end_conference(conference).await
    {
        tracing::error!(conference = %conference, error = %e, "could not end the conference at its deadline");
    }
    sessions::end_live_calls(ctx, &session.sid).await;
}

/// The three-minute warning: the other party is put on hold (with a "please wait"), the
/// deciding party's call is given the extension prompt. Claimed first, so it happens once.
async fn warn(
    ctx: Ctx<'_>,
    session: &Session,
    live: &LiveCall,
    deadline: i64,
) -> Result<Outcome, StoreError> {
    if live.mode != "conference" {
        if ctx
            .store
            .claim_warning(&session.sid, deadline, WARNING_NOT_POSSIBLE_BRIDGE)
            .await?
        {
            tracing::info!(session = %session.sid, deadline, "bridge call: no warning possible; <Dial timeLimit> ends it");
            return Ok(Outcome::NoWarningPossible);
        }
        return Ok(Outcome::Nothing);
    }
    let legs = match &session.current_conference {
        Some(cf) => ctx
            .store
            .get_conference(&session.sid, cf)
            .await?
            .map(|c| (cf.clone(), c.legs)),
        None => None,
    };
    let decider = session.decider();
    let decider_leg = legs
        .as_ref()
        .zip(decider)
        .and_then(|((_, legs), d)| legs.get(&d.sid).cloned());
    let (Some((conference, legs)), Some(decider), Some(decider_leg)) = (legs, decider, decider_leg)
    else {
        if ctx
            .store
            .claim_warning(&session.sid, deadline, WARNING_NOT_POSSIBLE_ABSENT)
            .await?
        {
            return Ok(Outcome::NoWarningPossible);
        }
        return Ok(Outcome::Nothing);
    };
    if !ctx
        .store
        .claim_warning(&session.sid, deadline, WARNING_GIVEN)
        .await?
    {
        return Ok(Outcome::Nothing);
    }
    if let Some(other_leg) = session.other(&decider.sid).and_then(|o| legs.get(&o.sid)) {
        if let Err(e) = ctx
            .calls
            .hold_for_warning(&session.sid, &conference, other_leg)
            .await
        {
            tracing::error!(call = %other_leg, error = %e, "could not hold the other party for the warning");
        }
    }
    if let Err(e) = ctx
        .calls
        .prompt_extension(&session.sid, deadline, &decider_leg)
        .await
    {
        tracing::error!(call = %decider_leg, error = %e, "could not give the deciding party the warning");
    }
    tracing::info!(session = %session.sid, deadline, "end-of-call warning given");
    Ok(Outcome::Warned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SessionStatus;

    fn session(expiry: Option<i64>, ttl: u64, live: Option<LiveCall>) -> Session {
        Session {
            sid: "KC1".into(),
            status: SessionStatus::InProgress,
            ttl,
            date_expiry: expiry,
            date_last_interaction: Some(100),
            call_time_limit: Some(600),
            live_call: live,
            ..crate::model::sample_session()
        }
    }

    fn live(deadline: i64, warned: Option<i64>) -> LiveCall {
        LiveCall {
            mode: "conference".into(),
            limit: 600,
            deadline: Some(deadline),
            warned_for: warned,
            warning: None,
        }
    }

    #[test]
    fn the_next_due_instant_is_the_earliest_pending_event() {
        // Warning at deadline - 180 until it is given; then the deadline itself.
        assert_eq!(
            next_due(&session(None, 0, Some(live(1000, None))), false, 500),
            Some(820)
        );
        assert_eq!(
            next_due(&session(None, 0, Some(live(1000, Some(1000)))), false, 850),
            Some(1000)
        );
        // A session expiring before the call's deadline wakes the sweep first.
        assert_eq!(
            next_due(&session(Some(700), 0, Some(live(1000, None))), false, 500),
            Some(700)
        );
        // Inactivity counts only without a call on the line.
        assert_eq!(next_due(&session(None, 60, None), false, 120), Some(160));
        assert_eq!(next_due(&session(None, 60, None), true, 200), Some(260));
        assert_eq!(next_due(&session(None, 0, None), false, 200), None);
        // Never in the past: a late sweep re-files for the next instant, not for then.
        assert_eq!(
            next_due(&session(Some(100), 0, None), false, 200),
            Some(201)
        );
    }
}
