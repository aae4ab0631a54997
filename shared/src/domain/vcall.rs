//! V字発信: the platform rings both parties itself, so both legs are Twilio-outbound (neither
//! user pays a carrier) and each sees only their own proxy number.
//!
//! - **bridge**: one REST call to the first party; when they answer, `bridge-twiml` dials the
//!   other with `<Dial timeLimit>` (no announcement possible).
//! - **conference**: REST calls to both; each answer joins the session's room
//!   (`conference-twiml`), which is what makes the spoken end-of-call warning possible.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::deadline;
use crate::domain::error::DomainError;
pub use crate::domain::ports::Mode;
use crate::domain::ports::{CallError, Ctx, Ring, StoreError};
use crate::domain::sessions::{self, MAX_CALL_SECONDS};
use crate::ids;
use crate::model::{CallStatus, Interaction, Participant, Session, TwilioDirection};
use crate::phone::PhoneNumber;
use crate::pricing::Direction;

/// Legs that have not reported a final status for this long are taken as lost callbacks,
/// not live calls (Twilio ends every call within four hours).
const LIVE_LEG_HORIZON_SECONDS: i64 = MAX_CALL_SECONDS as i64 + 600;
/// How long the lease taken while placing calls holds, should the function die meanwhile.
const CALL_LOCK_SECONDS: i64 = 60;

/// A V字発信 request.
#[derive(Debug, Clone)]
pub struct StartCall {
    pub mode: Mode,
    /// Who is rung first: a participant SID or identifier; the first participant by default.
    pub first: Option<String>,
    pub call_time_limit: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct PlacedLeg {
    pub participant_sid: String,
    pub call_sid: String,
}

#[derive(Debug)]
pub struct Placed {
    pub mode: Mode,
    pub call_time_limit: u64,
    pub legs: Vec<PlacedLeg>,
}

/// The session's conference room name: derived from the SID (random), so nobody can guess
/// it from a participant's number or the session's unique name.
pub fn room_name(session_sid: &str) -> String {
    let digest = Sha256::digest(format!("tsunagu-room:{session_sid}").as_bytes());
    format!("tsunagu-{}", hex::encode(&digest[..12]))
}

/// Seconds a call may last: the request's limit, the session's `call_time_limit` and what is
/// left before `date_expiry`, within Twilio's four hours.
pub fn call_limit(session: &Session, requested: Option<u64>, now: i64) -> u64 {
    let until_expiry = session.date_expiry.map(|t| (t - now).max(1) as u64);
    [
        requested,
        session.call_time_limit,
        until_expiry,
        Some(MAX_CALL_SECONDS),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(MAX_CALL_SECONDS)
}

fn closed(session: &Session) -> DomainError {
    DomainError::SessionClosed(format!(
        "session {} is {} and can place no calls",
        session.sid,
        session.status.as_str()
    ))
}

fn busy(session: &Session) -> DomainError {
    DomainError::CallInProgress(format!(
        "session {} already has a live call; wait for it to end",
        session.sid
    ))
}

fn pick_first<'a>(
    session: &'a Session,
    first: Option<&str>,
) -> Result<(&'a Participant, &'a Participant), DomainError> {
    let first = match first {
        None => session.participants.first(),
        Some(key) => {
            let e164 = PhoneNumber::parse(key)
                .map(|n| n.to_string())
                .unwrap_or_default();
            session
                .participants
                .iter()
                .find(|p| p.sid == key || p.identifier.as_str() == e164)
        }
    }
    .ok_or_else(|| {
        DomainError::Invalid(
            "first must be the SID or number of one of the session's participants".into(),
        )
    })?;
    let second = session
        .other(&first.sid)
        .ok_or_else(|| DomainError::Invalid("the session has only one participant".into()))?;
    Ok((first, second))
}

/// Rings the session's participants. Refuses closed or expired sessions and sessions with a
/// live call; a half-placed V字発信 (first leg created, second refused) is hung up again.
pub async fn start(
    ctx: Ctx<'_>,
    sid_or_name: &str,
    request: StartCall,
) -> Result<(Session, Placed), DomainError> {
    let mode = request.mode;
    if let Some(limit) = request.call_time_limit
        && !(60..=MAX_CALL_SECONDS).contains(&limit)
    {
        return Err(DomainError::Invalid(format!(
            "call_time_limit must be 60 to {MAX_CALL_SECONDS} seconds"
        )));
    }
    let session = sessions::find(ctx, sid_or_name).await?;
    let now = ctx.now();
    if !session.status.is_open() || session.deadline().is_some_and(|d| d <= now) {
        return Err(closed(&session));
    }
    let (first, second) = pick_first(&session, request.first.as_deref())?;
    let limit = call_limit(&session, request.call_time_limit, now);

    let legs = ctx.store.list_interactions(&session.sid).await?;
    if legs
        .iter()
        .any(|l| !l.status.is_final() && l.date_updated > now - LIVE_LEG_HORIZON_SECONDS)
    {
        return Err(busy(&session));
    }
    if !ctx
        .store
        .lock_calls(&session.sid, now, now + CALL_LOCK_SECONDS)
        .await?
    {
        let fresh = sessions::find(ctx, &session.sid).await?;
        return Err(if fresh.status.is_open() {
            busy(&fresh)
        } else {
            closed(&fresh)
        });
    }
    let placed = match ctx
        .store
        .begin_live_call(&session.sid, mode, limit, true)
        .await
    {
        Ok(()) => {
            let placed = place(ctx, &session, mode, first, second, limit).await;
            // Still under the lease, so no other V-call can have noted its own meanwhile.
            if placed.is_err() {
                abandon_live_call(ctx, &session.sid, mode, limit).await;
            }
            placed
        }
        Err(StoreError::ConditionFailed) => Err(closed(&session)),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = ctx.store.unlock_calls(&session.sid).await {
        tracing::error!(session = %session.sid, error = %e, "could not release the call lock; it lapses by itself");
    }
    let placed = placed?;
    Ok((sessions::find(ctx, &session.sid).await?, placed))
}

async fn place(
    ctx: Ctx<'_>,
    session: &Session,
    mode: Mode,
    first: &Participant,
    second: &Participant,
    limit: u64,
) -> Result<Placed, DomainError> {
    let mut callees = vec![first];
    if mode == Mode::Conference {
        callees.push(second);
    }
    let mut legs: Vec<PlacedLeg> = Vec::new();
    for callee in callees {
        match ring(ctx, &session.sid, mode, callee, limit).await {
            Ok(call_sid) => legs.push(PlacedLeg {
                participant_sid: callee.sid.clone(),
                call_sid,
            }),
            Err(e) => {
                for placed in &legs {
                    if let Err(hang_up) = ctx.calls.hang_up(&placed.call_sid).await {
                        tracing::error!(call = %placed.call_sid, error = %hang_up, "could not cancel the first leg of a failed V-call");
                    }
                }
                return Err(DomainError::CallNotPlaced {
                    callee: callee.identifier.masked().to_string(),
                    cause: e,
                });
            }
        }
    }
    Ok(Placed {
        mode,
        call_time_limit: limit,
        legs,
    })
}

/// A live call was noted but its calls could not be placed: it must not stay on the
/// session (the next call would inherit it, and it would never get a deadline). Only that
/// call, still unconnected, is forgotten; a failure is logged, as the call's own error is
/// what the caller needs to hear.
async fn abandon_live_call(ctx: Ctx<'_>, session_sid: &str, mode: Mode, limit: u64) {
    match ctx.store.abandon_live_call(session_sid, mode, limit).await {
        Ok(true) => tracing::info!(
            session = session_sid,
            "call not placed; live call forgotten"
        ),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(session = session_sid, error = %e, "call not placed, and its live call could not be forgotten");
        }
    }
}

/// A timed masked call came in: Twilio calls the other participant into the session's
/// room, from the proxy number they know, while the caller joins it. The live call is
/// noted first (kept if one is already on the line) so the room's start finds it; if the
/// other party cannot be called, it is forgotten again.
pub async fn call_into_room(
    ctx: Ctx<'_>,
    session_sid: &str,
    other: &Participant,
    limit: u64,
) -> Result<String, DomainError> {
    let mode = Mode::Conference;
    match ctx
        .store
        .begin_live_call(session_sid, mode, limit, false)
        .await
    {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => {
            return Err(DomainError::SessionClosed(format!(
                "session {session_sid} is closed and can place no calls"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    ring_into_room(ctx, session_sid, other, limit).await
}

/// [`call_into_room`] once the live call is noted (a timed masked call notes it in the
/// write that logs the caller's leg): places the other party's leg, or forgets the live call
/// if it cannot be placed.
pub async fn ring_into_room(
    ctx: Ctx<'_>,
    session_sid: &str,
    other: &Participant,
    limit: u64,
) -> Result<String, DomainError> {
    let mode = Mode::Conference;
    match ring(ctx, session_sid, mode, other, limit).await {
        Ok(call_sid) => Ok(call_sid),
        Err(cause) => {
            abandon_live_call(ctx, session_sid, mode, limit).await;
            Err(DomainError::CallNotPlaced {
                callee: other.identifier.masked().to_string(),
                cause,
            })
        }
    }
}

/// Both parties are connected: the live call's deadline is now + its limit, never past the
/// session's `date_expiry` nor the moment its cost would pass `max_cost`
/// (`deadline::effective_deadline`), and the sweep is filed for the warning before it. Later
/// calls change nothing. Returns the deadline when this call started the clock.
pub async fn start_the_clock(ctx: Ctx<'_>, session_sid: &str) -> Result<Option<i64>, DomainError> {
    let Some(session) = ctx.store.get_session(session_sid).await? else {
        return Ok(None);
    };
    start_the_clock_of(ctx, &session).await
}

/// [`start_the_clock`] for a session the caller has just read (`bridge-twiml` reads it to
/// check it is open): one request fewer. The write is conditional on the clock not running,
/// so a read a moment old starts it at most once all the same.
pub async fn start_the_clock_of(
    ctx: Ctx<'_>,
    session: &Session,
) -> Result<Option<i64>, DomainError> {
    let now = ctx.now();
    let session_sid = session.sid.as_str();
    let Some(live) = session.live_call.as_ref().filter(|l| l.deadline.is_none()) else {
        return Ok(None);
    };
    let cost_deadline = deadline::cost_deadline_of(ctx, session, now).await?;
    let deadline =
        deadline::effective_deadline(now, live.limit, session.date_expiry, cost_deadline);
    let due = (deadline - session.warning_lead as i64).max(now + 1);
    if !ctx
        .store
        .connect_live_call(session_sid, deadline, due)
        .await?
    {
        return Ok(None);
    }
    tracing::info!(
        session = session_sid,
        deadline,
        "call connected; its clock is running"
    );
    crate::domain::timers::arm(ctx, session, deadline).await;
    Ok(Some(deadline))
}

/// Creates one outbound leg and logs it as queued, so a second request sees it as live.
async fn ring(
    ctx: Ctx<'_>,
    session_sid: &str,
    mode: Mode,
    callee: &Participant,
    limit: u64,
) -> Result<String, CallError> {
    // The first leg of a bridge also spans the other party's ringing.
    let leg_limit = match mode {
        Mode::Bridge => limit + u64::from(ctx.settings.dial_timeout_seconds),
        Mode::Conference => limit,
    };
    let call_sid = ctx
        .calls
        .ring(&Ring {
            session_sid,
            callee,
            mode,
            limit,
            leg_limit: leg_limit.min(MAX_CALL_SECONDS),
        })
        .await?;
    let now = ctx.now();
    let leg = Interaction {
        sid: ids::new_sid(ids::INTERACTION),
        session_sid: session_sid.to_owned(),
        call_sid: call_sid.clone(),
        parent_call_sid: None,
        direction: Direction::Outbound,
        twilio_direction: TwilioDirection::OutboundApi,
        from_masked: callee.proxy_identifier.masked().to_string(),
        to_masked: callee.identifier.masked().to_string(),
        from_participant_sid: None,
        to_participant_sid: Some(callee.sid.clone()),
        callee_class: callee.identifier.class(),
        status: CallStatus::Queued,
        duration: 0,
        billed_minutes: 0,
        cost_milli_yen: 0,
        date_created: now,
        date_updated: now,
        date_ended: None,
        recording: Default::default(),
    };
    if let Err(e) = ctx
        .store
        .record_leg(&leg, now, ctx.settings.retention_seconds)
        .await
    {
        tracing::error!(call = %call_sid, error = %e, "placed a call but could not log it yet; its callbacks will");
    }
    tracing::info!(session = session_sid, call = %call_sid, to = %callee.identifier.masked(), mode = ?mode, "V-call leg placed");
    Ok(call_sid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expiry: Option<i64>, limit: Option<u64>) -> Session {
        Session {
            date_expiry: expiry,
            call_time_limit: limit,
            ..crate::model::sample_session()
        }
    }

    #[test]
    fn the_room_is_not_derived_from_user_data() {
        let room = room_name("KC0123456789abcdef0123456789abcdef");
        assert!(room.starts_with("tsunagu-") && room.len() == 32, "{room}");
        assert_ne!(room, room_name("KC0123456789abcdef0123456789abcdee"));
        assert!(!room.contains("0123456789abcdef"));
    }

    #[test]
    fn the_limit_is_the_tightest_bound() {
        assert_eq!(call_limit(&session(None, None), None, 0), MAX_CALL_SECONDS);
        assert_eq!(call_limit(&session(None, Some(1800)), Some(600), 0), 600);
        assert_eq!(call_limit(&session(Some(300), Some(1800)), None, 0), 300);
    }

    #[test]
    fn first_is_found_by_sid_or_number() {
        let s = session(None, None);
        assert_eq!(pick_first(&s, None).unwrap().0.sid, "KP1");
        assert_eq!(pick_first(&s, Some("KP2")).unwrap().0.sid, "KP2");
        assert_eq!(pick_first(&s, Some("080-9876-5432")).unwrap().1.sid, "KP1");
        assert!(pick_first(&s, Some("070-0000-0000")).is_err());
    }

    mod placing {
        use super::super::*;
        use crate::domain::fakes::{CallRequest, World, leg};
        use crate::model::{CallStatus, SessionStatus, sample_session};

        const NOW: i64 = 1_795_552_200;
        const SID: &str = "KC0123456789abcdef0123456789abcdef";

        fn world() -> World {
            let world = World::at(NOW);
            world.store.put_session(sample_session());
            world
        }

        fn request(mode: Mode) -> StartCall {
            StartCall {
                mode,
                first: None,
                call_time_limit: Some(600),
            }
        }

        #[tokio::test]
        async fn a_bridge_rings_the_first_party_once_for_the_limit_and_their_ringing() {
            let world = world();
            let (session, placed) = start(world.ctx(), SID, request(Mode::Bridge))
                .await
                .unwrap();
            assert_eq!(placed.legs.len(), 1);
            assert_eq!(placed.legs[0].participant_sid, "KP1");
            assert_eq!(
                world.calls.requests(),
                vec![CallRequest::Ring {
                    to: "+819012345678".into(),
                    mode: "bridge",
                    limit: 600,
                    leg_limit: 630,
                }]
            );
            assert_eq!(session.live_call.unwrap().mode, Mode::Bridge);
            let logged = world.store.legs();
            assert_eq!(logged.len(), 1);
            assert_eq!(
                logged[0].status,
                CallStatus::Queued,
                "a second request sees it live"
            );
            assert!(!world.store.is_locked(SID), "the lease is released");
        }

        #[tokio::test]
        async fn a_conference_rings_both_parties_starting_with_the_one_asked_for() {
            let world = world();
            let mut req = request(Mode::Conference);
            req.first = Some("080-9876-5432".into());
            let (_, placed) = start(world.ctx(), SID, req).await.unwrap();
            let rung: Vec<&str> = placed
                .legs
                .iter()
                .map(|l| l.participant_sid.as_str())
                .collect();
            assert_eq!(rung, ["KP2", "KP1"]);
            assert!(world.calls.requests().iter().all(|r| matches!(
                r,
                CallRequest::Ring {
                    mode: "conference",
                    leg_limit: 600,
                    ..
                }
            )));
            assert_eq!(world.store.legs().len(), 2);
        }

        #[tokio::test]
        async fn a_refused_second_leg_hangs_the_first_up_again() {
            let world = world();
            world.calls.script_rings(vec![
                Ok(()),
                Err(CallError::Refused {
                    status: 400,
                    code: 21210,
                    message: "not verified".into(),
                }),
            ]);
            let err = start(world.ctx(), SID, request(Mode::Conference))
                .await
                .unwrap_err();
            match err {
                DomainError::CallNotPlaced { callee, cause } => {
                    assert_eq!(callee, "+8180****5432");
                    assert!(matches!(cause, CallError::Refused { code: 21210, .. }));
                }
                other => panic!("{other:?}"),
            }
            let first = world.store.legs()[0].call_sid.clone();
            assert_eq!(
                world.calls.requests().last(),
                Some(&CallRequest::HangUp(first))
            );
            assert!(!world.store.is_locked(SID));
            assert_eq!(
                world.store.session(SID).unwrap().live_call,
                None,
                "the call that never was is not left on the session"
            );
        }

        fn refused() -> CallError {
            CallError::Refused {
                status: 400,
                code: 21214,
                message: "'To' phone number cannot be reached".into(),
            }
        }

        #[tokio::test]
        async fn a_refused_first_leg_leaves_no_live_call_and_a_new_call_can_start() {
            let world = world();
            world.calls.script_rings(vec![Err(refused())]);
            assert!(matches!(
                start(world.ctx(), SID, request(Mode::Bridge)).await,
                Err(DomainError::CallNotPlaced { .. })
            ));
            let session = world.store.session(SID).unwrap();
            assert_eq!(session.live_call, None);
            assert!(world.store.legs().is_empty(), "no leg was created");
            assert!(!world.store.is_locked(SID));

            let (session, placed) = start(world.ctx(), SID, request(Mode::Conference))
                .await
                .unwrap();
            assert_eq!(placed.legs.len(), 2);
            assert_eq!(session.live_call.unwrap().mode, Mode::Conference);
        }

        #[tokio::test]
        async fn a_live_call_that_cannot_be_forgotten_still_reports_the_refusal() {
            let world = world();
            world.calls.script_rings(vec![Err(refused())]);
            world
                .store
                .fail_next("abandon_live_call", StoreError::Backend("down".into()));
            assert!(matches!(
                start(world.ctx(), SID, request(Mode::Bridge)).await,
                Err(DomainError::CallNotPlaced { .. })
            ));
            assert!(
                !world.store.is_locked(SID),
                "the lease is released all the same"
            );
        }

        fn other() -> Participant {
            sample_session().participants[1].clone()
        }

        #[tokio::test]
        async fn a_timed_caller_has_the_other_party_called_into_the_room() {
            let world = world();
            call_into_room(world.ctx(), SID, &other(), 600)
                .await
                .unwrap();
            let live = world.store.session(SID).unwrap().live_call.unwrap();
            assert_eq!(
                (live.mode, live.limit, live.deadline),
                (Mode::Conference, 600, None)
            );
            assert_eq!(
                world.calls.requests(),
                vec![CallRequest::Ring {
                    to: "+818098765432".into(),
                    mode: "conference",
                    limit: 600,
                    leg_limit: 600,
                }]
            );
        }

        #[tokio::test]
        async fn a_ring_that_fails_leaves_no_live_call_without_a_deadline() {
            let world = world();
            world.calls.script_rings(vec![Err(refused())]);
            assert!(matches!(
                call_into_room(world.ctx(), SID, &other(), 600).await,
                Err(DomainError::CallNotPlaced { .. })
            ));
            assert_eq!(world.store.session(SID).unwrap().live_call, None);
        }

        #[tokio::test]
        async fn a_failed_ring_leaves_a_call_already_connected_alone() {
            let world = World::at(NOW);
            let connected = crate::model::LiveCall {
                mode: Mode::Conference,
                limit: 600,
                deadline: Some(NOW + 300),
                warned_for: None,
                warning: None,
                noticed_for: None,
            };
            world.store.put_session(Session {
                live_call: Some(connected.clone()),
                ..sample_session()
            });
            world.calls.script_rings(vec![Err(refused())]);
            assert!(
                call_into_room(world.ctx(), SID, &other(), 600)
                    .await
                    .is_err()
            );
            assert_eq!(world.store.session(SID).unwrap().live_call, Some(connected));
        }

        #[tokio::test]
        async fn a_closed_session_calls_nobody_into_its_room() {
            let world = World::at(NOW);
            world.store.put_session(Session {
                status: SessionStatus::Closed,
                ..sample_session()
            });
            assert!(matches!(
                call_into_room(world.ctx(), SID, &other(), 600).await,
                Err(DomainError::SessionClosed(_))
            ));
            assert!(world.calls.requests().is_empty());
        }

        #[tokio::test]
        async fn a_closed_or_ended_session_rings_nobody() {
            for session in [
                Session {
                    status: SessionStatus::Closed,
                    ..sample_session()
                },
                Session {
                    date_expiry: Some(NOW),
                    ..sample_session()
                },
            ] {
                let world = World::at(NOW);
                world.store.put_session(session);
                assert!(matches!(
                    start(world.ctx(), SID, request(Mode::Bridge)).await,
                    Err(DomainError::SessionClosed(_))
                ));
                assert!(world.calls.requests().is_empty());
            }
        }

        #[tokio::test]
        async fn a_live_leg_or_a_held_lease_means_a_call_is_in_progress() {
            let world = world();
            world
                .store
                .add_leg(leg(SID, "CA1", None, CallStatus::Ringing, NOW - 30));
            assert!(matches!(
                start(world.ctx(), SID, request(Mode::Bridge)).await,
                Err(DomainError::CallInProgress(_))
            ));
            let world = self::world();
            world.store.hold_lock(SID);
            assert!(matches!(
                start(world.ctx(), SID, request(Mode::Bridge)).await,
                Err(DomainError::CallInProgress(_))
            ));
            assert!(world.calls.requests().is_empty());
        }

        #[tokio::test]
        async fn a_leg_silent_for_longer_than_any_call_is_a_lost_callback_not_a_call() {
            let world = world();
            world.store.add_leg(leg(
                SID,
                "CA1",
                None,
                CallStatus::InProgress,
                NOW - LIVE_LEG_HORIZON_SECONDS - 1,
            ));
            assert!(start(world.ctx(), SID, request(Mode::Bridge)).await.is_ok());
        }

        #[tokio::test]
        async fn bad_limits_and_unknown_parties_are_refused_before_ringing() {
            let world = world();
            for limit in [59, MAX_CALL_SECONDS + 1] {
                let mut req = request(Mode::Bridge);
                req.call_time_limit = Some(limit);
                assert!(matches!(
                    start(world.ctx(), SID, req).await,
                    Err(DomainError::Invalid(_))
                ));
            }
            let mut req = request(Mode::Bridge);
            req.first = Some("070-0000-0000".into());
            assert!(matches!(
                start(world.ctx(), SID, req).await,
                Err(DomainError::Invalid(_))
            ));
            assert!(world.calls.requests().is_empty());
            assert!(world.store.session(SID).unwrap().live_call.is_none());
        }
    }

    mod the_clock {
        use super::super::*;
        use crate::domain::fakes::World;
        use crate::model::{CallMode, LiveCall, SessionStatus, sample_session};

        const NOW: i64 = 1_795_552_200;
        const SID: &str = "KC0123456789abcdef0123456789abcdef";

        fn ringing(date_expiry: Option<i64>) -> World {
            let world = World::at(NOW);
            world.store.put_session(Session {
                date_expiry,
                live_call: Some(LiveCall {
                    mode: CallMode::Conference,
                    limit: 600,
                    deadline: None,
                    warned_for: None,
                    warning: None,
                    noticed_for: None,
                }),
                ..sample_session()
            });
            world
        }

        #[tokio::test]
        async fn the_clock_starts_once_at_connection_for_the_calls_limit() {
            let world = ringing(None);
            assert_eq!(
                start_the_clock(world.ctx(), SID).await.unwrap(),
                Some(NOW + 600)
            );
            assert_eq!(world.store.due(SID), Some(NOW + 600 - 180), "the warning");
            // And the exact timers, each carrying the deadline.
            use crate::domain::ports::TimerKind;
            assert_eq!(
                world.timers.get(SID, TimerKind::Warning),
                Some((NOW + 420, NOW + 600))
            );
            assert_eq!(
                world.timers.get(SID, TimerKind::Notice),
                Some((NOW + 580, NOW + 600))
            );
            assert_eq!(
                world.timers.get(SID, TimerKind::End),
                Some((NOW + 600, NOW + 600))
            );
            // A repeated callback changes nothing.
            assert_eq!(start_the_clock(world.ctx(), SID).await.unwrap(), None);
            let live = world.store.session(SID).unwrap().live_call.unwrap();
            assert_eq!(live.deadline, Some(NOW + 600));
        }

        #[tokio::test]
        async fn the_deadline_never_passes_the_sessions_expiry() {
            let world = ringing(Some(NOW + 120));
            assert_eq!(
                start_the_clock(world.ctx(), SID).await.unwrap(),
                Some(NOW + 120)
            );
            // The warning instant is already past: the sweep looks at once.
            assert_eq!(world.store.due(SID), Some(NOW + 1));
        }

        #[tokio::test]
        async fn max_cost_brings_the_deadline_forward_to_the_minute_that_would_pass_it() {
            use crate::domain::fakes::leg;
            use crate::model::CallStatus;
            let world = ringing(None);
            let mut session = world.store.session(SID).unwrap();
            // 100 yen; two mobile legs through the room at 16.5 yen a minute each, the
            // first answered 10 s ago: 33 at NOW, 49.5 at NOW + 50, 66 at NOW + 60,
            // 82.5 at NOW + 110, 99 at NOW + 120, 115.5 at NOW + 170.
            session.max_cost_milli_yen = Some(100_000);
            world.store.put_session(session);
            for (call, party, created) in [("CA1", "KP1", NOW - 10), ("CA2", "KP2", NOW)] {
                let mut l = leg(SID, call, None, CallStatus::InProgress, created);
                l.to_participant_sid = Some(party.into());
                world.store.add_leg(l);
            }
            // An ended leg of an earlier call is not part of this call's cost.
            world
                .store
                .add_leg(leg(SID, "CA0", None, CallStatus::Completed, NOW - 900));
            let expected = NOW + 170 - crate::domain::deadline::END_MARGIN_SECONDS;
            assert_eq!(
                start_the_clock(world.ctx(), SID).await.unwrap(),
                Some(expected),
                "earlier than the limit's NOW + 600"
            );
            assert_eq!(
                world.store.due(SID),
                Some(NOW + 1),
                "the warning is due at once"
            );
            let live = world.store.session(SID).unwrap().live_call.unwrap();
            assert_eq!(live.deadline, Some(expected));
        }

        #[tokio::test]
        async fn a_party_not_yet_dialled_counts_from_the_start_of_the_clock() {
            use crate::domain::fakes::leg;
            use crate::model::CallStatus;
            // A bridge: the first party (KP1) answered 10 s ago; the second is dialled now.
            let world = ringing(None);
            let mut session = world.store.session(SID).unwrap();
            session.max_cost_milli_yen = Some(40_000);
            session.live_call.as_mut().unwrap().mode = CallMode::Bridge;
            world.store.put_session(session);
            let mut first = leg(SID, "CA1", None, CallStatus::InProgress, NOW - 10);
            first.to_participant_sid = Some("KP1".into());
            world.store.add_leg(first);
            // 16.2 a minute each: 16.2 at NOW - 10, 32.4 at NOW, 48.6 at NOW + 50.
            assert_eq!(
                start_the_clock(world.ctx(), SID).await.unwrap(),
                Some(NOW + 50 - crate::domain::deadline::END_MARGIN_SECONDS),
                "the second party's leg is counted before it is logged"
            );
        }

        #[tokio::test]
        async fn no_live_call_or_a_closed_session_starts_nothing() {
            let world = World::at(NOW);
            world.store.put_session(sample_session());
            assert_eq!(start_the_clock(world.ctx(), SID).await.unwrap(), None);
            let world = ringing(None);
            let mut closed = world.store.session(SID).unwrap();
            closed.status = SessionStatus::Closed;
            world.store.put_session(closed);
            assert_eq!(start_the_clock(world.ctx(), SID).await.unwrap(), None);
            assert_eq!(world.store.due(SID), None);
        }
    }
}
