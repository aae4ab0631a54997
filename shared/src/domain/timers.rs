//! The live call's exact timers: when its warning, its short notice and its end are due,
//! set when the clock starts, moved with the deadline and removed when the call is over.
//! They only make the steps punctual: the minute sweep stays as the safety net, and each
//! step is claimed in the store so whichever comes first does it and the other finds
//! nothing to do (I4). A timer that cannot be set is logged and left to the sweep.

use crate::domain::ports::{Ctx, TimerKind};
use crate::model::{CallMode, Session};

/// Both parties hear the short notice this long before the deadline.
pub const NOTICE_LEAD_SECONDS: i64 = 20;

/// The steps still to come for the live call ending at `deadline`, and when each is due.
/// A bridge call gets none: there is no room to speak into, and Twilio's `<Dial timeLimit>`
/// already ends it to the second (the sweep still records that no warning was possible).
/// A step whose instant has passed is due at once (a warning lead longer than the call).
pub fn plan(session: &Session, deadline: i64, now: i64) -> Vec<(TimerKind, i64)> {
    let Some(live) = session
        .live_call
        .as_ref()
        .filter(|l| l.mode == CallMode::Conference)
    else {
        return Vec::new();
    };
    let mut steps = Vec::with_capacity(3);
    if session.warning_lead > 0 && live.warned_for != Some(deadline) {
        steps.push((TimerKind::Warning, deadline - session.warning_lead as i64));
    }
    if live.noticed_for != Some(deadline) {
        steps.push((TimerKind::Notice, deadline - NOTICE_LEAD_SECONDS));
    }
    steps.push((TimerKind::End, deadline));
    steps
        .into_iter()
        .map(|(kind, at)| (kind, at.max(now + 1)))
        .collect()
}

/// Sets (or moves) the timers of `session`'s live call for `deadline`. Failures are
/// logged, never returned: the call goes on and the sweep keeps time.
pub async fn arm(ctx: Ctx<'_>, session: &Session, deadline: i64) {
    let steps = plan(session, deadline, ctx.now());
    let sid = session.sid.as_str();
    let set = steps.iter().map(|&(kind, at)| async move {
        if let Err(e) = ctx.timers.set(sid, kind, at, deadline).await {
            tracing::warn!(session = sid, kind = kind.as_str(), error = %e, "could not set the timer; the sweep will do it");
        }
    });
    futures::future::join_all(set).await;
    // A step no longer planned (a warning already given) must not fire for the new deadline.
    let unplanned = TimerKind::ALL
        .into_iter()
        .filter(|k| !steps.iter().any(|(kind, _)| kind == k));
    cancel_each(ctx, sid, unplanned).await;
}

/// Removes the session's timers: its live call is over or the session closed. A timer left
/// behind would find its deadline gone and do nothing, so failures are only logged.
pub async fn disarm(ctx: Ctx<'_>, session_sid: &str) {
    cancel_each(ctx, session_sid, TimerKind::ALL.into_iter()).await;
}

async fn cancel_each(ctx: Ctx<'_>, sid: &str, kinds: impl Iterator<Item = TimerKind>) {
    futures::future::join_all(kinds.map(|kind| async move {
        if let Err(e) = ctx.timers.cancel(sid, kind).await {
            tracing::warn!(session = sid, kind = kind.as_str(), error = %e, "could not remove the timer");
        }
    }))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fakes::World;
    use crate::domain::ports::TimerError;
    use crate::model::{LiveCall, sample_session};

    const NOW: i64 = 1_795_552_200;

    fn session(mode: CallMode, warned_for: Option<i64>) -> Session {
        Session {
            warning_lead: 180,
            live_call: Some(LiveCall {
                mode,
                limit: 600,
                deadline: Some(NOW + 600),
                warned_for,
                warning: None,
                noticed_for: None,
            }),
            ..sample_session()
        }
    }

    #[test]
    fn a_room_gets_its_warning_notice_and_end() {
        let d = NOW + 600;
        assert_eq!(
            plan(&session(CallMode::Conference, None), d, NOW),
            vec![
                (TimerKind::Warning, d - 180),
                (TimerKind::Notice, d - 20),
                (TimerKind::End, d)
            ]
        );
        // Warned already for this deadline: no second warning (I4).
        assert_eq!(
            plan(&session(CallMode::Conference, Some(d)), d, NOW)[0],
            (TimerKind::Notice, d - 20)
        );
        // A bridge: no room to speak into, and <Dial timeLimit> ends it.
        assert_eq!(plan(&session(CallMode::Bridge, None), d, NOW), vec![]);
        // A lead longer than what is left: due at once, never in the past.
        assert_eq!(
            plan(&session(CallMode::Conference, None), NOW + 100, NOW)[0],
            (TimerKind::Warning, NOW + 1)
        );
    }

    #[tokio::test]
    async fn arming_sets_the_plan_and_removes_what_is_no_longer_due() {
        let world = World::at(NOW);
        let d = NOW + 600;
        arm(world.ctx(), &session(CallMode::Conference, None), d).await;
        let sid = sample_session().sid;
        assert_eq!(
            world.timers.get(&sid, TimerKind::Warning),
            Some((d - 180, d))
        );
        assert_eq!(world.timers.get(&sid, TimerKind::End), Some((d, d)));
        // Extended: every step moves with the deadline (a new deadline gets its warning).
        arm(
            world.ctx(),
            &session(CallMode::Conference, Some(d)),
            d + 300,
        )
        .await;
        assert_eq!(
            world.timers.get(&sid, TimerKind::Warning),
            Some((d + 120, d + 300))
        );
        assert_eq!(
            world.timers.get(&sid, TimerKind::Notice),
            Some((d + 280, d + 300))
        );
        // Set again once the warning was given for it: the warning's timer goes.
        arm(
            world.ctx(),
            &session(CallMode::Conference, Some(d + 300)),
            d + 300,
        )
        .await;
        assert_eq!(world.timers.get(&sid, TimerKind::Warning), None);
        disarm(world.ctx(), &sid).await;
        assert!(world.timers.all().is_empty());
    }

    #[tokio::test]
    async fn a_scheduler_that_fails_changes_nothing_else() {
        let world = World::at(NOW);
        world.timers.fail(TimerError("throttled".into()));
        arm(world.ctx(), &session(CallMode::Conference, None), NOW + 600).await;
        disarm(world.ctx(), &sample_session().sid).await;
        assert!(world.timers.all().is_empty());
        assert!(world.calls.requests().is_empty());
    }
}
