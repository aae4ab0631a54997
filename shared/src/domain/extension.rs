//! Press 1 to extend: what the deciding party's answer to the end-of-call warning does to
//! the call, and bringing both parties back to it.

use crate::domain::deadline;
use crate::domain::error::DomainError;
use crate::domain::ports::{Ctx, StoreError, Told};
use crate::domain::sessions;
use crate::model::Session;

/// Why the call goes on as it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No extension was offered (none left when the warning was given): nothing to answer.
    NotOffered,
    /// Anything but 1 was pressed, or nothing.
    Declined,
    /// 1 was pressed, but no extension is left, or the warning was for an older deadline.
    NoneLeft,
    /// 1 was pressed, but the extension would take the call's cost past `max_cost`.
    CostLimit,
    /// The deadline moved.
    Extended,
    /// The session closed meanwhile: a close wins over an extension.
    SessionClosed,
}

/// The answer and the deadline in force after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub answer: Answer,
    pub deadline: i64,
}

/// Decides the deciding party's answer to the warning given for `warned_for`, and brings the
/// others back from hold. An extension moves the deadline by `extension.seconds`, at most
/// `extension.max_count` times and never past the session's cost cap (`max_cost`), and the
/// live legs' Twilio `TimeLimit` past it.
pub async fn answer(
    ctx: Ctx<'_>,
    session: &Session,
    decider_sid: &str,
    warned_for: Option<i64>,
    offered: bool,
    pressed_one: bool,
) -> Result<Outcome, DomainError> {
    let now = ctx.now();
    let current = session.live_call.as_ref().and_then(|l| l.deadline);
    let deadline = current.unwrap_or(now);
    let extension = session.extension;
    let answer = if !offered {
        Answer::NotOffered
    } else if !pressed_one {
        Answer::Declined
    } else if session.extension_count >= extension.max_count
        || current.is_none()
        || warned_for != current
    {
        Answer::NoneLeft
    } else if deadline::cost_deadline_of(ctx, session, now)
        .await?
        .is_some_and(|cap| deadline + extension.seconds as i64 > cap)
    {
        // An extension may not lift the call past its cost cap; none is given in part, so
        // what was offered ("extend by N minutes") is either true or refused.
        Answer::CostLimit
    } else {
        let to = deadline + extension.seconds as i64;
        let due = (to - session.warning_lead as i64).max(now + 1);
        match ctx
            .store
            .extend_live_call(session, deadline, to, due, extension.max_count, now)
            .await
        {
            Ok(()) => Answer::Extended,
            // A close (or another answer) got there first: the close wins.
            Err(StoreError::ConditionFailed) => {
                let still_open =
                    ctx.store.get_session(&session.sid).await?.is_some_and(|s| {
                        s.status.is_open() && s.date_expiry.is_none_or(|t| t > now)
                    });
                if !still_open {
                    return Ok(Outcome {
                        answer: Answer::SessionClosed,
                        deadline,
                    });
                }
                Answer::NoneLeft
            }
            Err(e) => return Err(e.into()),
        }
    };
    let deadline = if answer == Answer::Extended {
        tracing::info!(session = %session.sid, deadline = deadline + extension.seconds as i64, "call extended");
        deadline + extension.seconds as i64
    } else {
        deadline
    };
    // Both at once: a slow Twilio costs the caller one wait, not several.
    let limits = async {
        if answer == Answer::Extended {
            let moved = futures::future::join(
                sessions::move_time_limits(ctx, &session.sid, deadline),
                crate::domain::timers::arm(ctx, session, deadline),
            );
            moved.await;
        }
    };
    // The other party hears the outcome as they come off hold; nothing was asked when no
    // extension was offered, and they have heard the time left already.
    let told = match answer {
        Answer::NotOffered | Answer::SessionClosed => None,
        Answer::Extended => Some(Told::Extended {
            minutes: extension.seconds / 60,
            deadline,
        }),
        Answer::Declined | Answer::NoneLeft | Answer::CostLimit => Some(Told::Ending),
    };
    futures::future::join(off_hold(ctx, session, decider_sid, told), limits)
        .await
        .0?;
    Ok(Outcome { answer, deadline })
}

/// Takes everyone but the deciding party off hold, telling them the outcome.
async fn off_hold(
    ctx: Ctx<'_>,
    session: &Session,
    decider_sid: &str,
    told: Option<Told>,
) -> Result<(), DomainError> {
    let Some(conference) = &session.current_conference else {
        return Ok(());
    };
    let Some(record) = ctx.store.get_conference(&session.sid, conference).await? else {
        return Ok(());
    };
    let others = record
        .legs
        .iter()
        .filter(|(label, _)| label.as_str() != decider_sid);
    futures::future::join_all(others.map(|(_, call_sid)| async move {
        if let Err(e) = ctx
            .calls
            .unhold(&session.sid, conference, call_sid, told)
            .await
        {
            tracing::error!(call = %call_sid, error = %e, "could not take the other party off hold");
        }
    }))
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fakes::{CallRequest, World, leg};
    use crate::model::{CallMode, CallStatus, LiveCall, SessionStatus, sample_session};

    const NOW: i64 = 1_795_552_200;
    const SID: &str = "KC0123456789abcdef0123456789abcdef";
    const DEADLINE: i64 = NOW + 170;

    /// A conference call warned for `DEADLINE`: A (KP1, the decider) is CA1 at the prompt,
    /// B is CA2 on hold. Both legs started ten minutes ago.
    fn warned() -> (World, Session) {
        let session = Session {
            current_conference: Some("CF1".into()),
            live_call: Some(LiveCall {
                mode: CallMode::Conference,
                limit: 780,
                deadline: Some(DEADLINE),
                warned_for: Some(DEADLINE),
                warning: Some(crate::model::WarningOutcome::Given),
                noticed_for: None,
            }),
            ..sample_session()
        };
        let world = World::at(NOW);
        world.store.put_session(session.clone());
        world
            .store
            .put_room(SID, "CF1", &[("KP1", "CA1"), ("KP2", "CA2")]);
        for (call, party) in [("CA1", "KP1"), ("CA2", "KP2")] {
            let mut l = leg(SID, call, None, CallStatus::InProgress, NOW - 600);
            l.to_participant_sid = Some(party.into());
            world.store.add_leg(l);
        }
        (world, session)
    }

    #[tokio::test]
    async fn pressing_1_moves_the_deadline_and_the_twilio_limits_and_ends_the_hold() {
        let (world, session) = warned();
        let outcome = answer(world.ctx(), &session, "KP1", Some(DEADLINE), true, true)
            .await
            .unwrap();
        assert_eq!(outcome.answer, Answer::Extended);
        assert_eq!(outcome.deadline, DEADLINE + 300);
        let stored = world.store.session(SID).unwrap();
        assert_eq!(stored.extension_count, 1);
        assert_eq!(stored.live_call.unwrap().deadline, Some(DEADLINE + 300));
        // The sweep wakes for the next warning, 180 s before the new deadline.
        assert_eq!(world.store.due(SID), Some(DEADLINE + 300 - 180));
        // And the timers move with the deadline.
        use crate::domain::ports::TimerKind;
        assert_eq!(
            world.timers.get(SID, TimerKind::End),
            Some((DEADLINE + 300, DEADLINE + 300))
        );
        assert_eq!(
            world.timers.get(SID, TimerKind::Warning),
            Some((DEADLINE + 120, DEADLINE + 300))
        );
        let requests = world.calls.requests();
        // The other party comes back hearing the extension; the decider heard it already.
        assert!(
            requests.contains(&CallRequest::Unhold {
                call_sid: "CA2".into(),
                told: Some(Told::Extended {
                    minutes: 5,
                    deadline: DEADLINE + 300
                })
            }),
            "{requests:?}"
        );
        assert!(
            !requests
                .iter()
                .any(|r| matches!(r, CallRequest::Unhold { call_sid, .. } if call_sid == "CA1"))
        );
        // Each leg's limit counts from its creation and leaves two minutes past the deadline.
        for call in ["CA1", "CA2"] {
            assert!(requests.contains(&CallRequest::SetTimeLimit {
                call_sid: call.into(),
                seconds: 600 + 470 + 120,
            }));
        }
    }

    #[tokio::test]
    async fn an_extension_past_max_cost_is_refused_and_both_hear_the_call_ends() {
        // Two mobile legs through the room, 16.5 yen a minute each, ten minutes in (330 yen).
        // Extending to DEADLINE + 300 = NOW + 470 would bill 18 minutes each, 594 yen.
        for (max_cost, expected) in [
            (500_000, Answer::CostLimit),
            (593_999, Answer::CostLimit),
            (600_000, Answer::Extended),
        ] {
            let (world, mut session) = warned();
            session.max_cost_milli_yen = Some(max_cost);
            world.store.put_session(session.clone());
            let outcome = answer(world.ctx(), &session, "KP1", Some(DEADLINE), true, true)
                .await
                .unwrap();
            assert_eq!(outcome.answer, expected, "max_cost {max_cost}");
            if expected == Answer::CostLimit {
                assert_eq!(outcome.deadline, DEADLINE);
                let stored = world.store.session(SID).unwrap();
                assert_eq!(stored.extension_count, 0, "no extension used");
                assert_eq!(stored.live_call.unwrap().deadline, Some(DEADLINE));
                assert!(world.calls.requests().contains(&CallRequest::Unhold {
                    call_sid: "CA2".into(),
                    told: Some(Told::Ending),
                }));
            }
        }
    }

    #[tokio::test]
    async fn any_other_key_or_silence_keeps_the_deadline_but_ends_the_hold() {
        let (world, session) = warned();
        let outcome = answer(world.ctx(), &session, "KP1", Some(DEADLINE), true, false)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Outcome {
                answer: Answer::Declined,
                deadline: DEADLINE
            }
        );
        assert_eq!(world.store.session(SID).unwrap().extension_count, 0);
        assert_eq!(
            world.calls.requests(),
            vec![CallRequest::Unhold {
                call_sid: "CA2".into(),
                told: Some(Told::Ending)
            }]
        );
    }

    #[tokio::test]
    async fn no_extension_is_given_past_max_count_or_for_an_older_warning() {
        let (world, session) = warned();
        let used_up = Session {
            extension_count: 1,
            ..session.clone()
        };
        let outcome = answer(world.ctx(), &used_up, "KP1", Some(DEADLINE), true, true)
            .await
            .unwrap();
        assert_eq!(outcome.answer, Answer::NoneLeft);
        let stale = answer(
            world.ctx(),
            &session,
            "KP1",
            Some(DEADLINE - 300),
            true,
            true,
        )
        .await
        .unwrap();
        assert_eq!(stale.answer, Answer::NoneLeft);
        let not_offered = answer(world.ctx(), &session, "KP1", Some(DEADLINE), false, true)
            .await
            .unwrap();
        assert_eq!(not_offered.answer, Answer::NotOffered);
        assert_eq!(world.store.session(SID).unwrap().extension_count, 0);
        // Told the end is coming twice (none left, stale), and nothing when nothing was asked.
        let told: Vec<_> = world
            .calls
            .requests()
            .into_iter()
            .filter_map(|r| match r {
                CallRequest::Unhold { told, .. } => Some(told),
                _ => None,
            })
            .collect();
        assert_eq!(told, vec![Some(Told::Ending), Some(Told::Ending), None]);
    }

    #[tokio::test]
    async fn a_close_racing_the_answer_wins() {
        let (world, session) = warned();
        // The session closes between the webhook's read and the extension's write.
        world.store.put_session(Session {
            status: SessionStatus::Closed,
            ..session.clone()
        });
        let outcome = answer(world.ctx(), &session, "KP1", Some(DEADLINE), true, true)
            .await
            .unwrap();
        assert_eq!(outcome.answer, Answer::SessionClosed);
        assert!(world.calls.requests().is_empty());
    }

    #[tokio::test]
    async fn another_answer_that_extended_first_leaves_none_for_this_one() {
        let (world, session) = warned();
        world
            .store
            .fail_next("extend_live_call", StoreError::ConditionFailed);
        let outcome = answer(world.ctx(), &session, "KP1", Some(DEADLINE), true, true)
            .await
            .unwrap();
        assert_eq!(outcome.answer, Answer::NoneLeft);
        assert_eq!(outcome.deadline, DEADLINE);
        assert_eq!(
            world.calls.requests(),
            vec![CallRequest::Unhold {
                call_sid: "CA2".into(),
                told: Some(Told::Ending)
            }]
        );
    }
}
