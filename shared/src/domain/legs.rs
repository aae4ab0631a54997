//! What happens when a call leg ends, or leaves the session's room: nobody is left waiting
//! for a party who is gone, and the live call is forgotten once it is over.
//!
//! - `leg_ended` (a leg's final status callback): a party Tsunagu called who could not be
//!   reached releases the others waiting for them; the first leg of a bridge ending ends the
//!   live call; a leg of the room ending ends the room.
//! - `left_room` (`participant-leave`): a party who hung up in the room ends it, and the
//!   legs still ringing to join them are canceled.
//! - `room_ended` (`conference-end`): the room and the live call are over.

use crate::domain::due::next_due;
use crate::domain::error::DomainError;
use crate::domain::ports::{Ctx, Goodbye, StoreError};
use crate::model::{CallMode, CallStatus, Interaction, Session, TwilioDirection};

/// A leg that reported its final status.
#[derive(Debug, Clone, Copy)]
pub struct EndedLeg<'a> {
    pub call_sid: &'a str,
    pub twilio_direction: TwilioDirection,
    pub status: CallStatus,
    /// The session, when the caller has just read it (`call-status` reads it for a caller's
    /// own leg): not read again.
    pub session: Option<&'a Session>,
}

/// A leg's final status arrived (a status that is not final changes nothing here).
pub async fn leg_ended(
    ctx: Ctx<'_>,
    session_sid: &str,
    leg: EndedLeg<'_>,
) -> Result<(), DomainError> {
    if !leg.status.is_final() {
        return Ok(());
    }
    if leg.twilio_direction == TwilioDirection::OutboundApi && leg.status != CallStatus::Completed {
        release_waiting_legs(ctx, session_sid, leg.call_sid, leg.status).await;
    }
    // A dialled leg's end is its parent's <Dial> result, handled there.
    if leg.twilio_direction != TwilioDirection::OutboundDial {
        after_leg_ended(ctx, session_sid, &leg).await?;
    }
    Ok(())
}

/// What a masked call's caller hears when the other party's leg ended with `status`.
fn goodbye_for(status: CallStatus) -> Goodbye {
    match status {
        CallStatus::Busy => Goodbye::OtherBusy,
        CallStatus::NoAnswer => Goodbye::OtherNoAnswer,
        _ => Goodbye::OtherFailed,
    }
}

/// A party Tsunagu called into a room who could not be reached (busy, no answer, failed,
/// canceled) must not leave anyone waiting there: the other V字発信 legs the platform placed
/// hear that the other is unreachable, the caller of a timed masked call hears why, and
/// each call ends. Failures are logged: the legs end at their own limit anyway.
async fn release_waiting_legs(
    ctx: Ctx<'_>,
    session_sid: &str,
    unreachable_call: &str,
    status: CallStatus,
) {
    let legs = match ctx.store.list_interactions(session_sid).await {
        Ok(legs) => legs,
        Err(e) => {
            tracing::error!(session = session_sid, error = %e, "could not list the call's other legs");
            return;
        }
    };
    for other in legs
        .iter()
        .filter(|l| !l.status.is_final() && l.call_sid != unreachable_call)
    {
        let why = match other.twilio_direction {
            TwilioDirection::OutboundApi => Goodbye::OtherUnreachable,
            TwilioDirection::Inbound => goodbye_for(status),
            // A dialled leg is its own caller's <Dial>, which hears how it ended.
            TwilioDirection::OutboundDial => continue,
        };
        if let Err(e) = ctx.calls.say_goodbye(&other.call_sid, why).await {
            tracing::error!(call = %other.call_sid, error = %e, "could not release a leg waiting for the unreachable party");
        }
    }
}

/// After a leg's final status: a leg of the room that ends — even outside it, as during
/// the warning prompt — ends the room, so the other party is never left alone on hold; and
/// the first leg of a bridge V-call ending means that call is over.
async fn after_leg_ended(
    ctx: Ctx<'_>,
    session_sid: &str,
    leg: &EndedLeg<'_>,
) -> Result<(), DomainError> {
    let read;
    let session = match leg.session {
        Some(session) => session,
        None => match ctx.store.get_session(session_sid).await? {
            Some(session) => {
                read = session;
                &read
            }
            None => return Ok(()),
        },
    };
    let bridge = session
        .live_call
        .as_ref()
        .is_some_and(|l| l.mode == CallMode::Bridge);
    if bridge && leg.twilio_direction == TwilioDirection::OutboundApi {
        forget_live_call(ctx, session).await?;
    }
    let Some(conference) = &session.current_conference else {
        return Ok(());
    };
    let in_room = ctx
        .store
        .get_conference(session_sid, conference)
        .await?
        .is_some_and(|c| c.legs.values().any(|l| l == leg.call_sid));
    if in_room && let Err(e) = ctx.calls.end_conference(conference).await {
        tracing::error!(conference = %conference, error = %e, "could not end the conference its party left");
    }
    Ok(())
}

/// The live call is over: forget it and file the session for what is due next without it.
/// A session gone meanwhile has nothing left to forget.
async fn forget_live_call(ctx: Ctx<'_>, session: &Session) -> Result<(), DomainError> {
    let after = Session {
        live_call: None,
        ..session.clone()
    };
    let due = next_due(&after, false, ctx.now());
    match ctx.store.clear_live_call(&session.sid, due).await {
        Ok(()) => {
            // Only a room call has timers (`timers::plan`); a bridge's end asks for nothing.
            if session
                .live_call
                .as_ref()
                .is_some_and(|l| l.mode == CallMode::Conference)
            {
                crate::domain::timers::disarm(ctx, &session.sid).await;
            }
            Ok(())
        }
        Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A `participant-leave` callback.
#[derive(Debug, Clone, Copy)]
pub struct Leave<'a> {
    pub call_sid: &'a str,
    /// The participant label, for the log.
    pub label: Option<&'a str>,
    /// `ReasonParticipantLeft`, for the log.
    pub reason: Option<&'a str>,
    /// Whether the leg's call is over, as the callback itself says; `None` if it does not.
    pub reported: Option<bool>,
}

/// A leg leaves the room when its phone hangs up — and also when the warning flow gives it
/// new TwiML (the call still in progress). Only the first leaves the other alone, so only
/// then the room ends. The callback says which; only an older one that does not is checked
/// by asking Twilio for the call's status. Returns whether the room was ended.
pub async fn left_room(
    ctx: Ctx<'_>,
    session_sid: &str,
    conference_sid: &str,
    leave: Leave<'_>,
) -> bool {
    let call_sid = leave.call_sid;
    let over = match leave.reported {
        Some(over) => over,
        None => match ctx.calls.call_status(call_sid).await {
            Ok(status) => status.is_some_and(CallStatus::is_final),
            Err(e) => {
                tracing::error!(call = call_sid, error = %e, "could not read the call that left the conference");
                return false;
            }
        },
    };
    if !over {
        return false;
    }
    tracing::info!(
        session = session_sid,
        call = call_sid,
        participant = leave.label,
        reason = leave.reason,
        "a party hung up; ending the conference for the other"
    );
    if let Err(e) = ctx.calls.end_conference(conference_sid).await {
        tracing::error!(conference = conference_sid, error = %e, "could not end the conference");
    }
    cancel_ringing_legs(ctx, session_sid, call_sid).await;
    true
}

/// Legs Tsunagu placed to call someone into the room that are still ringing (not answered,
/// as far as their callbacks told) are canceled once a party hung up in the room: whoever
/// they would join has gone (e.g. a timed call's caller hangs up while the other party's
/// phone rings). Twilio ignores the cancel for a call answered meanwhile.
async fn cancel_ringing_legs(ctx: Ctx<'_>, session_sid: &str, ended_call: &str) {
    let legs = match ctx.store.list_interactions(session_sid).await {
        Ok(legs) => legs,
        Err(e) => {
            tracing::error!(session = session_sid, error = %e, "could not list the session's ringing legs");
            return;
        }
    };
    let ringing = |l: &&Interaction| {
        l.twilio_direction == TwilioDirection::OutboundApi
            && l.call_sid != ended_call
            && matches!(
                l.status,
                CallStatus::Queued | CallStatus::Initiated | CallStatus::Ringing
            )
    };
    for other in legs.iter().filter(ringing) {
        tracing::info!(session = session_sid, call = %other.call_sid, "the other party has gone; no longer calling this one");
        if let Err(e) = ctx.calls.cancel(&other.call_sid).await {
            tracing::error!(call = %other.call_sid, error = %e, "could not cancel a ringing leg");
        }
    }
}

/// `conference-end`: the room is over, and so is the session's live call; the session is
/// filed for what is due next without it.
pub async fn room_ended(
    ctx: Ctx<'_>,
    session_sid: &str,
    conference_sid: &str,
    reason: &str,
) -> Result<(), DomainError> {
    ctx.store
        .conference_ended(session_sid, conference_sid, reason, ctx.now())
        .await?;
    match ctx.store.get_session(session_sid).await? {
        Some(session) => forget_live_call(ctx, &session).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fakes::{CallRequest, World, leg};
    use crate::domain::ports::SessionStore;
    use crate::model::{LiveCall, SessionStatus, sample_session};

    const NOW: i64 = 1_795_552_200;
    const SID: &str = "KC0123456789abcdef0123456789abcdef";

    fn live(mode: CallMode) -> LiveCall {
        LiveCall {
            mode,
            limit: 600,
            deadline: Some(NOW + 500),
            warned_for: None,
            warning: None,
            noticed_for: None,
        }
    }

    /// A leg Tsunagu placed (V字発信, or the other party of a timed masked call).
    fn placed(call_sid: &str, status: CallStatus) -> Interaction {
        Interaction {
            twilio_direction: TwilioDirection::OutboundApi,
            ..leg(SID, call_sid, None, status, NOW - 20)
        }
    }

    fn caller(call_sid: &str, status: CallStatus) -> Interaction {
        leg(SID, call_sid, None, status, NOW - 20)
    }

    fn dialled(call_sid: &str, parent: &str, status: CallStatus) -> Interaction {
        leg(SID, call_sid, Some(parent), status, NOW - 20)
    }

    /// A session whose room CF1 holds KP1 on CA1 (and KP2 on CA2 with `both`).
    fn in_room(both: bool) -> World {
        let world = World::at(NOW);
        world.store.put_session(Session {
            current_conference: Some("CF1".into()),
            live_call: Some(live(CallMode::Conference)),
            ..sample_session()
        });
        let legs: &[(&str, &str)] = if both {
            &[("KP1", "CA1"), ("KP2", "CA2")]
        } else {
            &[("KP1", "CA1")]
        };
        world.store.put_room(SID, "CF1", legs);
        world
    }

    fn ended(
        call_sid: &str,
        twilio_direction: TwilioDirection,
        status: CallStatus,
    ) -> EndedLeg<'_> {
        EndedLeg {
            call_sid,
            twilio_direction,
            status,
            session: None,
        }
    }

    #[tokio::test]
    async fn an_unreachable_v_call_party_releases_the_one_waiting_in_the_room() {
        for status in [
            CallStatus::Busy,
            CallStatus::NoAnswer,
            CallStatus::Failed,
            CallStatus::Canceled,
        ] {
            let world = in_room(false);
            world.store.add_leg(placed("CA1", CallStatus::InProgress));
            world.store.add_leg(placed("CA2", status));
            // Over already, or someone else's <Dial>: nobody to tell.
            world.store.add_leg(placed("CA3", CallStatus::Completed));
            world
                .store
                .add_leg(dialled("CA4", "CA9", CallStatus::Ringing));
            let leg = ended("CA2", TwilioDirection::OutboundApi, status);
            leg_ended(world.ctx(), SID, leg).await.unwrap();
            assert_eq!(
                world.calls.requests(),
                vec![CallRequest::Goodbye {
                    call_sid: "CA1".into(),
                    why: Goodbye::OtherUnreachable,
                }],
                "{status:?}: CA2 never joined the room, so the room itself goes on"
            );
        }
    }

    #[tokio::test]
    async fn a_timed_caller_hears_why_the_other_party_was_not_reached() {
        for (status, why) in [
            (CallStatus::Busy, Goodbye::OtherBusy),
            (CallStatus::NoAnswer, Goodbye::OtherNoAnswer),
            (CallStatus::Failed, Goodbye::OtherFailed),
            (CallStatus::Canceled, Goodbye::OtherFailed),
        ] {
            let world = in_room(false);
            world.store.add_leg(caller("CA1", CallStatus::InProgress));
            world.store.add_leg(placed("CA2", status));
            let leg = ended("CA2", TwilioDirection::OutboundApi, status);
            leg_ended(world.ctx(), SID, leg).await.unwrap();
            assert_eq!(
                world.calls.requests(),
                vec![CallRequest::Goodbye {
                    call_sid: "CA1".into(),
                    why,
                }],
                "{status:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_completed_leg_releases_nobody_but_ends_the_room_it_was_in() {
        let world = in_room(true);
        world.store.add_leg(placed("CA1", CallStatus::Completed));
        world.store.add_leg(placed("CA2", CallStatus::InProgress));
        let leg = ended("CA1", TwilioDirection::OutboundApi, CallStatus::Completed);
        leg_ended(world.ctx(), SID, leg).await.unwrap();
        assert_eq!(
            world.calls.requests(),
            vec![CallRequest::EndConference("CF1".into())],
            "the other party is not left alone in the room"
        );
        assert!(
            world.store.session(SID).unwrap().live_call.is_some(),
            "a conference's live call ends with the room (conference-end), not here"
        );
    }

    #[tokio::test]
    async fn a_leg_that_never_joined_the_room_does_not_end_it() {
        let world = in_room(false);
        let leg = ended("CA7", TwilioDirection::Inbound, CallStatus::Completed);
        leg_ended(world.ctx(), SID, leg).await.unwrap();
        assert!(world.calls.requests().is_empty());
    }

    #[tokio::test]
    async fn the_first_leg_of_a_bridge_ending_ends_the_live_call() {
        let world = World::at(NOW);
        let session = Session {
            live_call: Some(live(CallMode::Bridge)),
            date_expiry: Some(NOW + 3_600),
            ..sample_session()
        };
        world.store.put_session(session);
        world.store.file_due(SID, NOW + 320);
        let leg = ended("CA1", TwilioDirection::OutboundApi, CallStatus::Completed);
        leg_ended(world.ctx(), SID, leg).await.unwrap();
        let after = world.store.session(SID).unwrap();
        assert_eq!(after.live_call, None);
        assert_eq!(
            world.store.due(SID),
            Some(NOW + 3_600),
            "filed for the session's own end, not the call's warning"
        );
        assert!(world.calls.requests().is_empty());
    }

    #[tokio::test]
    async fn a_bridge_call_goes_on_when_a_leg_other_than_its_first_ends() {
        for (call, direction) in [
            ("CA2", TwilioDirection::OutboundDial),
            ("CA3", TwilioDirection::Inbound),
        ] {
            let world = World::at(NOW);
            world.store.put_session(Session {
                live_call: Some(live(CallMode::Bridge)),
                ..sample_session()
            });
            let leg = ended(call, direction, CallStatus::Completed);
            leg_ended(world.ctx(), SID, leg).await.unwrap();
            assert!(
                world.store.session(SID).unwrap().live_call.is_some(),
                "{direction:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_status_that_is_not_final_changes_nothing() {
        let world = in_room(true);
        world.store.add_leg(placed("CA2", CallStatus::InProgress));
        let leg = ended("CA1", TwilioDirection::OutboundApi, CallStatus::Ringing);
        leg_ended(world.ctx(), SID, leg).await.unwrap();
        assert!(world.calls.requests().is_empty());
        assert!(world.store.session(SID).unwrap().live_call.is_some());
    }

    #[tokio::test]
    async fn a_session_gone_or_closed_meanwhile_is_no_error() {
        let world = World::at(NOW);
        let leg = ended("CA1", TwilioDirection::OutboundApi, CallStatus::Completed);
        leg_ended(world.ctx(), SID, leg).await.unwrap();
        assert!(world.calls.requests().is_empty());

        // Closing already forgot the live call and the room.
        let world = World::at(NOW);
        world.store.put_session(Session {
            status: SessionStatus::Closed,
            ..sample_session()
        });
        leg_ended(world.ctx(), SID, leg).await.unwrap();
        assert!(world.calls.requests().is_empty());
        assert_eq!(world.store.due(SID), None, "a closed session is not filed");
    }

    #[tokio::test]
    async fn a_store_that_fails_is_reported_after_the_waiting_are_released() {
        let world = in_room(false);
        world.store.add_leg(placed("CA1", CallStatus::InProgress));
        world.store.add_leg(placed("CA2", CallStatus::Busy));
        world
            .store
            .fail_next("get_session", StoreError::Backend("throttled".into()));
        let leg = ended("CA2", TwilioDirection::OutboundApi, CallStatus::Busy);
        let err = leg_ended(world.ctx(), SID, leg).await.unwrap_err();
        assert!(matches!(err, DomainError::Store(StoreError::Backend(_))));
        assert_eq!(world.calls.requests().len(), 1, "CA1 was released first");
    }

    #[tokio::test]
    async fn a_bridge_session_deleted_before_its_live_call_is_forgotten_is_no_error() {
        let world = World::at(NOW);
        world.store.put_session(Session {
            live_call: Some(live(CallMode::Bridge)),
            ..sample_session()
        });
        world
            .store
            .fail_next("clear_live_call", StoreError::ConditionFailed);
        let leg = ended("CA1", TwilioDirection::OutboundApi, CallStatus::Completed);
        assert!(leg_ended(world.ctx(), SID, leg).await.is_ok());
        world
            .store
            .fail_next("clear_live_call", StoreError::Backend("down".into()));
        assert!(matches!(
            leg_ended(world.ctx(), SID, leg).await,
            Err(DomainError::Store(StoreError::Backend(_)))
        ));
    }

    fn leave(call_sid: &str, reported: Option<bool>) -> Leave<'_> {
        Leave {
            call_sid,
            label: Some("KP1"),
            reason: Some("participant_hung_up"),
            reported,
        }
    }

    #[tokio::test]
    async fn a_party_hanging_up_in_the_room_ends_it_for_the_other_still_in_it() {
        let world = in_room(true);
        world.store.add_leg(placed("CA1", CallStatus::Completed));
        world.store.add_leg(placed("CA2", CallStatus::InProgress));
        assert!(left_room(world.ctx(), SID, "CF1", leave("CA1", Some(true))).await);
        assert_eq!(
            world.calls.requests(),
            vec![CallRequest::EndConference("CF1".into())],
            "the other's answered call is not canceled, it ends with the room"
        );
    }

    #[tokio::test]
    async fn a_caller_hanging_up_while_the_other_rings_stops_the_ringing() {
        let world = in_room(false);
        world.store.add_leg(caller("CA1", CallStatus::Completed));
        world.store.add_leg(placed("CA2", CallStatus::Ringing));
        world.store.add_leg(placed("CA3", CallStatus::Queued));
        world.store.add_leg(placed("CA4", CallStatus::NoAnswer));
        assert!(left_room(world.ctx(), SID, "CF1", leave("CA1", Some(true))).await);
        assert_eq!(
            world.calls.requests(),
            vec![
                CallRequest::EndConference("CF1".into()),
                CallRequest::Cancel("CA2".into()),
                CallRequest::Cancel("CA3".into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_leg_taken_out_for_the_warning_leaves_the_room_as_it_is() {
        let world = in_room(true);
        world.store.add_leg(placed("CA2", CallStatus::Ringing));
        assert!(!left_room(world.ctx(), SID, "CF1", leave("CA1", Some(false))).await);
        assert!(world.calls.requests().is_empty());
    }

    #[tokio::test]
    async fn an_older_callback_that_does_not_say_is_checked_with_twilio() {
        let world = in_room(true);
        world.calls.set_status("CA1", CallStatus::InProgress);
        assert!(!left_room(world.ctx(), SID, "CF1", leave("CA1", None)).await);
        world.calls.set_status("CA1", CallStatus::Completed);
        assert!(left_room(world.ctx(), SID, "CF1", leave("CA1", None)).await);
        assert_eq!(
            world.calls.requests(),
            vec![
                CallRequest::CallStatus("CA1".into()),
                CallRequest::CallStatus("CA1".into()),
                CallRequest::EndConference("CF1".into()),
            ]
        );
        // Twilio cannot tell: the room is left as it is (its legs end it when they end).
        let world = in_room(true);
        assert!(!left_room(world.ctx(), SID, "CF1", leave("CA9", None)).await);
        assert_eq!(world.calls.requests().len(), 1);
    }

    #[tokio::test]
    async fn the_room_ending_ends_the_live_call_and_files_the_session_for_its_end() {
        let world = in_room(true);
        let mut session = world.store.session(SID).unwrap();
        session.date_expiry = Some(NOW + 3_600);
        world.store.put_session(session);
        use crate::domain::ports::{TimerKind, Timers};
        world
            .timers
            .set(SID, TimerKind::End, NOW + 60, NOW + 60)
            .await
            .unwrap();
        room_ended(world.ctx(), SID, "CF1", "last-participant-left")
            .await
            .unwrap();
        let after = world.store.session(SID).unwrap();
        assert_eq!((after.live_call, after.current_conference), (None, None));
        assert!(
            world.timers.all().is_empty(),
            "the call's timers go with it"
        );
        assert_eq!(world.store.due(SID), Some(NOW + 3_600));
        let room = world
            .store
            .get_conference(SID, "CF1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(room.ended_at, Some(NOW));
        assert_eq!(room.ended_reason.as_deref(), Some("last-participant-left"));
        // A repeated callback changes nothing more.
        room_ended(world.ctx(), SID, "CF1", "again").await.unwrap();
        let room = world
            .store
            .get_conference(SID, "CF1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(room.ended_reason.as_deref(), Some("last-participant-left"));
        assert!(world.calls.requests().is_empty());
    }
}
