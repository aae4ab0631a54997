//! When a session next needs the sweep: the one rule both the sweep and every change of a
//! session's end use to file it in the due index.

use crate::model::{LiveCall, Session};

/// A session with live legs but no tracked deadline is looked at again this much later.
pub const RECHECK_SECONDS: i64 = 60;

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
            mode: crate::model::CallMode::Conference,
            limit: 600,
            deadline: Some(deadline),
            warned_for: warned,
            warning: None,
            noticed_for: None,
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
