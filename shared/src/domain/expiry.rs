//! The minute sweep (`expiry-warning`, an EventBridge schedule): finds the sessions whose
//! time has come through the due index (a Query per shard, never a Scan), gives the spoken
//! warning once per deadline (I4), ends calls at their deadline and closes expired sessions.
//!
//! A session is filed in the index for the next instant something may happen to it — its
//! warning, its live call's deadline, its `date_expiry` or its inactivity limit. Waking early
//! is harmless: each visit works out what is really due and files the session again.

use futures::StreamExt;
use serde::Serialize;

use crate::domain::due::next_due;
use crate::domain::error::DomainError;
use crate::domain::ports::{Ctx, StoreError, TimerKind};
use crate::domain::sessions;
use crate::model::{CallMode, LiveCall, Session, WarningOutcome};
use crate::store::DUE_SHARDS;

/// At most this many sessions are handled at once, which bounds the requests in flight
/// towards Twilio (each session makes at most two at a time).
pub const CONCURRENCY: usize = 8;

/// A run starts no session after this much wall-clock time. `expiry-warning`'s `Timeout` in
/// template.yaml is 300 s; the visits in flight and the report fit in the rest. A session
/// not visited stays filed in the due index, which is the next run's cursor: it is handled
/// a minute later, and nothing is lost or done twice (I4).
pub const TIME_BUDGET: std::time::Duration = std::time::Duration::from_secs(240);

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
    /// The `due_at` of the oldest session handled: how late the sweep ran (`SweepLag`).
    pub oldest_due: Option<i64>,
    /// Sessions returned as due but left for the next run: the time budget was spent.
    #[serde(skip_serializing_if = "is_zero")]
    pub deferred: usize,
    /// The time budget ran out: some shards' pages were not read, and what they hold stays due.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Nothing,
    Warned,
    NoWarningPossible,
    CallEnded,
    Closed,
}

/// One run of the sweep at `now`, within `TIME_BUDGET` of wall-clock time.
pub async fn sweep(ctx: Ctx<'_>, now: i64) -> Result<SweepReport, StoreError> {
    sweep_until(ctx, now, std::time::Instant::now() + TIME_BUDGET).await
}

/// One run of the sweep at `now` that starts no session at or after `stop_at` (wall clock,
/// not `ctx.clock`: it is the invocation's own time that runs out).
pub async fn sweep_until(
    ctx: Ctx<'_>,
    now: i64,
    stop_at: std::time::Instant,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    'shards: for shard in 0..DUE_SHARDS {
        let mut start = None;
        loop {
            if std::time::Instant::now() >= stop_at {
                report.stopped_early = true;
                break 'shards;
            }
            let (page, next) = ctx.store.due_page(shard, now, start).await?;
            report.queries += 1;
            report.due += page.len();
            // The page's sessions in a few batch reads rather than one read each; a session
            // the batch left out (or a failed batch) is read on its own by its visit.
            let sids: Vec<String> = page.iter().map(|d| d.sid.clone()).collect();
            let mut read = ctx.store.get_sessions(&sids).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "batch read of due sessions failed; reading them one by one");
                Default::default()
            });
            let outcomes: Vec<Option<(i64, Result<Outcome, DomainError>)>> =
                futures::stream::iter(page)
                    .map(|due| {
                        let session = read.remove(&due.sid);
                        async move {
                            if std::time::Instant::now() >= stop_at {
                                return None;
                            }
                            Some((due.due_at, visit(ctx, due.sid, session, now).await))
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
            for outcome in outcomes {
                let Some((due_at, outcome)) = outcome else {
                    report.deferred += 1;
                    continue;
                };
                report.oldest_due = Some(report.oldest_due.map_or(due_at, |o| o.min(due_at)));
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

/// What a fired timer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fired {
    /// Its deadline is no longer the live call's (moved, or the call is over), or its step
    /// was done already (by the sweep, or by an earlier delivery): nothing to do.
    Nothing,
    Warned,
    NoWarningPossible,
    Noticed,
    CallEnded,
    Closed,
}

/// A timer set for the live call ending at `deadline` fired at `now`. It acts only while
/// `deadline` is still the live call's: the warning and the end go through the sweep's own
/// visit, so their claims decide who does them (I4), and the notice is claimed once.
pub async fn fire(
    ctx: Ctx<'_>,
    sid: &str,
    kind: TimerKind,
    deadline: i64,
    now: i64,
) -> Result<Fired, DomainError> {
    let Some(session) = ctx.store.get_session(sid).await? else {
        return Ok(Fired::Nothing);
    };
    let live = session.live_call.as_ref();
    if !session.status.is_open() || live.and_then(|l| l.deadline) != Some(deadline) {
        return Ok(Fired::Nothing);
    }
    match kind {
        TimerKind::Warning | TimerKind::End => Ok(
            match visit(ctx, sid.to_owned(), Some(session.clone()), now).await? {
                Outcome::Nothing => Fired::Nothing,
                Outcome::Warned => Fired::Warned,
                Outcome::NoWarningPossible => Fired::NoWarningPossible,
                Outcome::CallEnded => Fired::CallEnded,
                Outcome::Closed => Fired::Closed,
            },
        ),
        TimerKind::Notice => notice(ctx, &session, deadline).await,
    }
}

/// The short notice before the end, to everyone in the room, once per deadline. A call
/// with no room (a bridge) has nowhere to say it.
async fn notice(ctx: Ctx<'_>, session: &Session, deadline: i64) -> Result<Fired, DomainError> {
    let in_room = session
        .live_call
        .as_ref()
        .is_some_and(|l| l.mode == CallMode::Conference);
    let Some(conference) = session.current_conference.as_deref().filter(|_| in_room) else {
        return Ok(Fired::Nothing);
    };
    if !ctx.store.claim_notice(&session.sid, deadline).await? {
        return Ok(Fired::Nothing);
    }
    if let Err(e) = ctx
        .calls
        .announce_notice(&session.sid, deadline, conference)
        .await
    {
        tracing::error!(conference = %conference, error = %e, "could not give the room the notice before the end");
    }
    tracing::info!(session = %session.sid, deadline, "notice before the end given");
    Ok(Fired::Noticed)
}

/// `read`: the session as the page's batch read found it, if it did.
async fn visit(
    ctx: Ctx<'_>,
    sid: String,
    read: Option<Session>,
    now: i64,
) -> Result<Outcome, DomainError> {
    let session = match read {
        Some(session) => Some(session),
        None => ctx.store.get_session(&sid).await?,
    };
    let Some(session) = session else {
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
            // No timers to remove: every one of this call's was due by its deadline, so each
            // has run or runs now, finds nothing, and Scheduler deletes it (a sweep ending
            // thousands of calls makes no Scheduler request).
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

/// The three-minute warning, claimed first so that it happens once. Both parties hear the
/// time left: the deciding party's call is given the extension prompt, and the other is put
/// on hold hearing that the deciding party is being asked (or, with no extension left, just
/// the time left). A deciding party not in the room cannot be asked: whoever is in it hears
/// the time left through a room announcement.
async fn warn(
    ctx: Ctx<'_>,
    session: &Session,
    live: &LiveCall,
    deadline: i64,
) -> Result<Outcome, StoreError> {
    if live.mode != CallMode::Conference {
        if ctx
            .store
            .claim_warning(&session.sid, deadline, WarningOutcome::NotPossibleBridge)
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
    let (Some((conference, legs)), Some(decider), Some(decider_leg)) =
        (legs.clone(), decider, decider_leg)
    else {
        if ctx
            .store
            .claim_warning(&session.sid, deadline, WarningOutcome::NotPossibleAbsent)
            .await?
        {
            if let Some((conference, legs)) = legs
                && !legs.is_empty()
                && let Err(e) = ctx
                    .calls
                    .announce_time_left(&session.sid, deadline, &conference)
                    .await
            {
                tracing::error!(conference = %conference, error = %e, "could not tell the room the time left");
            }
            return Ok(Outcome::NoWarningPossible);
        }
        return Ok(Outcome::Nothing);
    };
    if !ctx
        .store
        .claim_warning(&session.sid, deadline, WarningOutcome::Given)
        .await?
    {
        return Ok(Outcome::Nothing);
    }
    let asking = session.extension_count < session.extension.max_count;
    if let Some(other_leg) = session.other(&decider.sid).and_then(|o| legs.get(&o.sid))
        && let Err(e) = ctx
            .calls
            .hold_for_warning(&session.sid, deadline, asking, &conference, other_leg)
            .await
    {
        tracing::error!(call = %other_leg, error = %e, "could not hold the other party for the warning");
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
    use crate::domain::due::RECHECK_SECONDS;
    use crate::domain::fakes::{CallRequest, World, leg};
    use crate::model::{CallStatus, SessionStatus, sample_session};

    const NOW: i64 = 1_795_552_200;
    const SID: &str = "KC0123456789abcdef0123456789abcdef";

    fn live(mode: CallMode, deadline: i64) -> LiveCall {
        LiveCall {
            mode,
            limit: 600,
            deadline: Some(deadline),
            warned_for: None,
            warning: None,
            noticed_for: None,
        }
    }

    /// A session due now, in a conference room where A (KP1) is leg CA1 and B is CA2.
    fn in_room(session: Session) -> World {
        let world = World::at(NOW);
        world.store.put_session(Session {
            current_conference: Some("CF1".into()),
            ..session
        });
        world
            .store
            .put_room(SID, "CF1", &[("KP1", "CA1"), ("KP2", "CA2")]);
        world.store.file_due(SID, NOW);
        world
    }

    #[tokio::test]
    async fn the_warning_holds_the_other_and_prompts_the_decider_once() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Conference, NOW + 100)),
            ..sample_session()
        });
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.warned, 1, "{report:?}");
        assert_eq!(
            world.calls.requests(),
            vec![
                CallRequest::Hold {
                    call_sid: "CA2".into(),
                    deadline: NOW + 100,
                    asking: true
                },
                CallRequest::Prompt {
                    call_sid: "CA1".into(),
                    deadline: NOW + 100
                },
            ]
        );
        assert_eq!(
            world.store.claimed(SID),
            Some((NOW + 100, WarningOutcome::Given))
        );
        // Re-filed for the deadline itself; a second sweep warns nobody again (I4).
        assert_eq!(world.store.due(SID), Some(NOW + 100));
        world.store.file_due(SID, NOW);
        let again = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(again.warned, 0);
        assert_eq!(world.calls.requests().len(), 2);
    }

    #[tokio::test]
    async fn the_report_names_the_oldest_due_instant_handled() {
        let world = World::at(NOW);
        assert_eq!(sweep(world.ctx(), NOW).await.unwrap().oldest_due, None);
        for (i, due) in [NOW - 30, NOW - 95, NOW].into_iter().enumerate() {
            let sid = format!("KC{i:032x}");
            world.store.put_session(Session {
                sid: sid.clone(),
                ..sample_session()
            });
            world.store.file_due(&sid, due);
        }
        // Filed for later: not handled, so not counted.
        world
            .store
            .file_due("KC0000000000000000000000000000000f", NOW + 500);
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.due, 3, "{report:?}");
        assert_eq!(report.oldest_due, Some(NOW - 95));
    }

    #[tokio::test]
    async fn the_named_decider_hears_the_warning() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Conference, NOW + 100)),
            decider: Some("KP2".into()),
            ..sample_session()
        });
        sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(
            world.calls.requests(),
            vec![
                CallRequest::Hold {
                    call_sid: "CA1".into(),
                    deadline: NOW + 100,
                    asking: true
                },
                CallRequest::Prompt {
                    call_sid: "CA2".into(),
                    deadline: NOW + 100
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_bridge_call_is_recorded_as_no_warning_possible() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Bridge, NOW + 100)),
            ..sample_session()
        });
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.no_warning_possible, 1, "{report:?}");
        assert!(world.calls.requests().is_empty());
        assert_eq!(
            world.store.claimed(SID),
            Some((NOW + 100, WarningOutcome::NotPossibleBridge))
        );
    }

    #[tokio::test]
    async fn with_no_extension_left_the_other_hears_only_the_time_left() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Conference, NOW + 100)),
            extension_count: 1,
            ..sample_session()
        });
        sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(
            world.calls.requests()[0],
            CallRequest::Hold {
                call_sid: "CA2".into(),
                deadline: NOW + 100,
                asking: false
            }
        );
    }

    #[tokio::test]
    async fn a_decider_not_in_the_room_cannot_be_asked_but_the_room_hears_the_time_left() {
        // Only B (KP2) is recorded in the room.
        let world = World::at(NOW);
        world.store.put_session(Session {
            current_conference: Some("CF1".into()),
            live_call: Some(live(CallMode::Conference, NOW + 100)),
            ..sample_session()
        });
        world.store.put_room(SID, "CF1", &[("KP2", "CA2")]);
        world.store.file_due(SID, NOW);
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.no_warning_possible, 1, "{report:?}");
        assert_eq!(
            world.calls.requests(),
            vec![CallRequest::AnnounceTimeLeft {
                conference_sid: "CF1".into(),
                deadline: NOW + 100
            }]
        );
        // Once per deadline (I4).
        world.store.file_due(SID, NOW);
        sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(world.calls.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_decider_not_in_the_room_cannot_be_warned() {
        let world = World::at(NOW);
        world.store.put_session(Session {
            live_call: Some(live(CallMode::Conference, NOW + 100)),
            ..sample_session()
        });
        world.store.file_due(SID, NOW);
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.no_warning_possible, 1, "{report:?}");
        assert_eq!(
            world.store.claimed(SID).map(|c| c.1),
            Some(WarningOutcome::NotPossibleAbsent)
        );
        assert!(world.calls.requests().is_empty(), "no room, nobody to tell");
    }

    #[tokio::test]
    async fn a_call_at_its_deadline_is_ended_with_its_room() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Conference, NOW)),
            ..sample_session()
        });
        world
            .store
            .add_leg(leg(SID, "CA1", None, CallStatus::InProgress, NOW - 600));
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.calls_ended, 1, "{report:?}");
        assert_eq!(
            world.calls.requests(),
            vec![
                CallRequest::EndConference("CF1".into()),
                CallRequest::EndCall("CA1".into()),
            ]
        );
        let session = world.store.session(SID).unwrap();
        assert!(session.live_call.is_none());
        assert!(session.status.is_open(), "the session itself goes on");
    }

    #[tokio::test]
    async fn a_session_past_its_expiry_is_closed_and_its_room_ended() {
        let world = in_room(Session {
            date_expiry: Some(NOW - 1),
            ..sample_session()
        });
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.closed, 1, "{report:?}");
        let session = world.store.session(SID).unwrap();
        assert_eq!(session.status, SessionStatus::Closed);
        assert_eq!(session.closed_reason.as_deref(), Some("expired"));
        assert!(
            world
                .calls
                .requests()
                .contains(&CallRequest::EndConference("CF1".into()))
        );
    }

    #[tokio::test]
    async fn a_quiet_session_past_its_ttl_is_closed_but_not_during_a_call() {
        let quiet = Session {
            ttl: 60,
            date_last_interaction: Some(NOW - 100),
            ..sample_session()
        };
        let world = World::at(NOW);
        world.store.put_session(quiet.clone());
        world.store.file_due(SID, NOW);
        assert_eq!(sweep(world.ctx(), NOW).await.unwrap().closed, 1);

        let world = World::at(NOW);
        world.store.put_session(quiet);
        world.store.file_due(SID, NOW);
        world
            .store
            .add_leg(leg(SID, "CA1", None, CallStatus::InProgress, NOW - 30));
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.closed, 0, "{report:?}");
        assert!(world.store.session(SID).unwrap().status.is_open());
        assert_eq!(world.store.due(SID), Some(NOW + RECHECK_SECONDS));
    }

    #[tokio::test]
    async fn a_run_out_of_time_starts_nothing_and_leaves_every_session_due() {
        let world = in_room(Session {
            date_expiry: Some(NOW - 1),
            ..sample_session()
        });
        let report = sweep_until(world.ctx(), NOW, std::time::Instant::now())
            .await
            .unwrap();
        assert!(report.stopped_early, "{report:?}");
        assert_eq!((report.due, report.closed), (0, 0), "{report:?}");
        assert!(world.store.session(SID).unwrap().status.is_open());
        assert!(world.store.due(SID).is_some(), "still due for the next run");
        // The next run, with time, handles it.
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!((report.closed, report.stopped_early), (1, false));
        let shown = serde_json::to_value(&report).unwrap();
        assert!(
            shown.get("deferred").is_none() && shown.get("stopped_early").is_none(),
            "a run that fit shows the report as before: {shown}"
        );
    }

    #[tokio::test]
    async fn a_session_that_failed_stays_due_and_is_counted() {
        let world = in_room(Session {
            date_expiry: Some(NOW - 1),
            ..sample_session()
        });
        // The page's batch read fails, and so does the session's own read.
        world
            .store
            .fail_next("get_sessions", StoreError::Backend("down".into()));
        world
            .store
            .fail_next("get_session", StoreError::Backend("down".into()));
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!((report.failed, report.closed), (1, 0), "{report:?}");
        assert_eq!(world.store.due(SID), Some(NOW));
    }

    #[tokio::test]
    async fn closed_sessions_and_vanished_ones_are_left_alone() {
        let world = World::at(NOW);
        world.store.put_session(Session {
            status: SessionStatus::Closed,
            date_expiry: Some(NOW - 1),
            ..sample_session()
        });
        world.store.file_due(SID, NOW);
        world
            .store
            .file_due("KC00000000000000000000000000000000", NOW);
        let report = sweep(world.ctx(), NOW).await.unwrap();
        assert_eq!(report.due, 2);
        assert_eq!((report.closed, report.failed), (0, 0), "{report:?}");
        assert!(world.calls.requests().is_empty());
    }

    #[tokio::test]
    async fn a_timer_warns_once_and_the_sweep_then_finds_nothing_to_do() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Conference, NOW + 100)),
            ..sample_session()
        });
        let fired = fire(world.ctx(), SID, TimerKind::Warning, NOW + 100, NOW).await;
        assert_eq!(fired.unwrap(), Fired::Warned);
        assert_eq!(world.calls.requests().len(), 2, "hold and prompt");
        // Delivered again, or the sweep coming by: nothing more (I4).
        let again = fire(world.ctx(), SID, TimerKind::Warning, NOW + 100, NOW).await;
        assert_eq!(again.unwrap(), Fired::Nothing);
        world.store.file_due(SID, NOW);
        assert_eq!(sweep(world.ctx(), NOW).await.unwrap().warned, 0);
        assert_eq!(world.calls.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_timer_for_a_deadline_that_moved_does_nothing() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Conference, NOW + 400)),
            ..sample_session()
        });
        for kind in TimerKind::ALL {
            let fired = fire(world.ctx(), SID, kind, NOW, NOW).await.unwrap();
            assert_eq!(fired, Fired::Nothing, "{kind:?}");
        }
        assert!(world.calls.requests().is_empty());
        assert!(world.store.session(SID).unwrap().live_call.is_some());
    }

    #[tokio::test]
    async fn the_end_timer_ends_the_call_at_its_deadline_and_the_sweep_then_finds_no_call() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Conference, NOW)),
            ..sample_session()
        });
        let fired = fire(world.ctx(), SID, TimerKind::End, NOW, NOW)
            .await
            .unwrap();
        assert_eq!(fired, Fired::CallEnded);
        assert!(
            world
                .calls
                .requests()
                .contains(&CallRequest::EndConference("CF1".into()))
        );
        assert!(world.store.session(SID).unwrap().live_call.is_none());
        // The sweep, due for the same deadline, finds no call to end.
        world.store.file_due(SID, NOW);
        assert_eq!(sweep(world.ctx(), NOW).await.unwrap().calls_ended, 0);
    }

    #[tokio::test]
    async fn the_notice_is_announced_to_the_room_once_per_deadline() {
        let world = in_room(Session {
            live_call: Some(live(CallMode::Conference, NOW + 20)),
            ..sample_session()
        });
        let fired = fire(world.ctx(), SID, TimerKind::Notice, NOW + 20, NOW).await;
        assert_eq!(fired.unwrap(), Fired::Noticed);
        let again = fire(world.ctx(), SID, TimerKind::Notice, NOW + 20, NOW).await;
        assert_eq!(again.unwrap(), Fired::Nothing);
        assert_eq!(
            world.calls.requests(),
            vec![CallRequest::AnnounceNotice {
                conference_sid: "CF1".into(),
                deadline: NOW + 20
            }]
        );
        // A bridge has no room: nothing to say it into.
        let bridge = in_room(Session {
            live_call: Some(live(CallMode::Bridge, NOW + 20)),
            ..sample_session()
        });
        let fired = fire(bridge.ctx(), SID, TimerKind::Notice, NOW + 20, NOW).await;
        assert_eq!(fired.unwrap(), Fired::Nothing);
        assert!(bridge.calls.requests().is_empty());
    }
}
