//! A masked call comes in: whether the caller may be connected, and how. One conditional
//! write on the caller's route proves the session open and hands back the route; the
//! platform's intercept may refuse; then the other party is dialled — the legs are logged by
//! `call-status` from the callbacks Twilio sends anyway — or, for a timed call, the caller's
//! leg is logged and the other party called into the session's room.

use crate::domain::DomainError;
use crate::domain::ports::{Ctx, Intercept, Route, RouteCheck};
use crate::domain::sessions::MAX_CALL_SECONDS;
use crate::domain::vcall;
use crate::ids;
use crate::model::{CallMode, CallStatus, Interaction, LiveCall, Participant, TwilioDirection};
use crate::phone::{self, PhoneNumber};
use crate::pricing::Direction;

/// A call to a proxy number, as Twilio described it.
#[derive(Debug, Clone, Copy)]
pub struct InboundCall<'a> {
    pub call_sid: &'a str,
    /// The caller's number as Twilio sent it (`From`), if it did.
    pub from: Option<&'a str>,
    /// The proxy number called (`To`).
    pub to: &'a str,
}

/// What the caller gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The caller ID is withheld, so no route can be found: ask them to call again with it
    /// shown.
    WithheldCaller,
    /// No open session routes this caller on this number (the platform may answer instead).
    NoSession,
    /// The session is closed, past its end or idle past its ttl.
    Closed,
    /// The platform's intercept refused the call.
    Blocked,
    /// Dial the other party, showing them their own proxy number, for at most `limit` seconds.
    Dial { route: Route, limit: u64 },
    /// A timed call: the other party is being called into the session's room, which the
    /// caller joins.
    Room { route: Route },
}

/// Decides what a caller gets. A plain call is one request to the store; a timed call also
/// logs the caller's leg (once per CallSid) and notes its live call.
/// An `Err` is a failure (the store, or Twilio refusing the other party's leg): the caller
/// hears an apology.
pub async fn admit(
    ctx: Ctx<'_>,
    intercept: &dyn Intercept,
    call: InboundCall<'_>,
) -> Result<Admission, DomainError> {
    let call_sid = call.call_sid;
    // A withheld caller ID ("anonymous", "+266696687") has no route: the caller is asked to
    // call again with their number shown (186 first), which is all they can do.
    if phone::is_withheld(call.from) {
        tracing::info!(
            call = call_sid,
            "caller ID withheld; asked to call with the number shown"
        );
        return Ok(Admission::WithheldCaller);
    }
    let from = call.from.and_then(|f| PhoneNumber::parse(f).ok());
    let (Some(from), Some(to)) = (from, PhoneNumber::parse(call.to).ok()) else {
        return Ok(Admission::NoSession);
    };
    let now = ctx.now();
    // One request on the caller's path: the route's conditional write (see `RouteCheck`).
    let (route, prior) = match ctx.store.admit_route(&to, &from, call_sid, now).await? {
        RouteCheck::Open(route, prior) => (route, Some(prior)),
        RouteCheck::Missing => {
            tracing::info!(from = %from.masked(), to = %to.masked(), call = call_sid, "caller has no open session on this number");
            return Ok(Admission::NoSession);
        }
        RouteCheck::Ended(_) => return Ok(Admission::Closed),
        // The route's copy of the ttl is moved only by calls on this route; the session's by
        // every interaction. The session decides, and the transaction below re-checks it.
        RouteCheck::Idle(route) => match ctx.store.get_session(&route.session_sid).await? {
            Some(s) if s.status.is_open() && s.inactive_after().is_none_or(|t| t > now) => {
                (route, None)
            }
            _ => return Ok(Admission::Closed),
        },
    };
    if !intercept.allows(&route, call_sid).await {
        tracing::info!(session = %route.session_sid, call = call_sid, from = %from.masked(), "intercept callback blocked the call");
        // A blocked call is no activity: the route's note goes back to what it was (a
        // request only on this path). Failing that, the caller has still been refused.
        if let Some(prior) = &prior
            && let Err(e) = ctx.store.forget_call(&to, &from, call_sid, prior).await
        {
            tracing::warn!(session = %route.session_sid, call = call_sid, error = %e, "could not take a blocked call's note off its route");
        }
        return Ok(Admission::Blocked);
    }
    let noted = prior.is_some();
    // A plain call needs nothing more: the route proved the session open. A timed call
    // notes its live call and logs the caller's leg now (its room leg is no child of the
    // caller's call, so no dialled leg's callback can name the caller's); so does a call
    // whose route had to be confirmed against the session, which also restarts the ttl.
    let limit = time_limit(&route, now);
    if route.timed || !noted {
        let leg = inbound_leg(&route, call_sid, &from, &to, now);
        let retention = ctx.settings.retention_seconds;
        // A timed call notes its live call in the same write: one request fewer.
        let live = route.timed.then_some(LiveCall {
            mode: CallMode::Conference,
            limit,
            deadline: None,
            warned_for: None,
            warning: None,
            noticed_for: None,
        });
        if !ctx
            .store
            .start_inbound_leg(&leg, (&to, &from), live.as_ref(), now, retention)
            .await?
        {
            tracing::info!(session = %route.session_sid, call = call_sid, "session closed or expired; call refused");
            return Ok(Admission::Closed);
        }
    }
    tracing::info!(session = %route.session_sid, call = call_sid, from = %from.masked(), to = %route.other_identifier.masked(), "connecting masked call");
    if !route.timed {
        return Ok(Admission::Dial { route, limit });
    }
    let other = Participant {
        sid: route.other_participant_sid.clone(),
        identifier: route.other_identifier.clone(),
        proxy_identifier: route.other_proxy.clone(),
        friendly_name: None,
        announcement: None,
        announcement_url: None,
    };
    match vcall::ring_into_room(ctx, &route.session_sid, &other, limit).await {
        Ok(_) => Ok(Admission::Room { route }),
        Err(DomainError::SessionClosed(_)) => Ok(Admission::Closed),
        Err(e) => {
            tracing::warn!(session = %route.session_sid, error = %e, "could not call the other party into the room");
            Err(e)
        }
    }
}

/// The caller's leg, as logged when it is let through.
fn inbound_leg(
    route: &Route,
    call_sid: &str,
    from: &PhoneNumber,
    to: &PhoneNumber,
    now: i64,
) -> Interaction {
    Interaction {
        sid: ids::new_sid(ids::INTERACTION),
        session_sid: route.session_sid.clone(),
        call_sid: call_sid.to_owned(),
        parent_call_sid: None,
        direction: Direction::Inbound,
        twilio_direction: TwilioDirection::Inbound,
        from_masked: from.masked().to_string(),
        to_masked: to.masked().to_string(),
        from_participant_sid: Some(route.participant_sid.clone()),
        to_participant_sid: Some(route.other_participant_sid.clone()),
        callee_class: to.class(),
        status: CallStatus::InProgress,
        duration: 0,
        billed_minutes: 0,
        cost_milli_yen: 0,
        date_created: now,
        date_updated: now,
        date_ended: None,
        recording: Default::default(),
    }
}

/// The seconds a call may last: the session's `call_time_limit`, cut to what is left before
/// `date_expiry`, within Twilio's four hours.
pub fn time_limit(route: &Route, now: i64) -> u64 {
    let until_expiry = route.date_expiry.map(|t| (t - now).max(1) as u64);
    [route.call_time_limit, until_expiry, Some(MAX_CALL_SECONDS)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(MAX_CALL_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fakes::{CallRequest, FakeIntercept, World};
    use crate::domain::ports::{CallError, SessionStore, StoreError};
    use crate::model::{CallMode, Session, SessionStatus, sample_session};

    const NOW: i64 = 1_000_000;
    const CALLER: &str = "+819012345678";
    const PROXY: &str = "+815031234567";
    const CALL: &str = "CA0123456789abcdef0123456789abcdef";

    fn call(from: Option<&'static str>) -> InboundCall<'static> {
        InboundCall {
            call_sid: CALL,
            from,
            to: PROXY,
        }
    }

    fn world_with(session: Session) -> World {
        let world = World::at(NOW);
        world.store.put_session(session);
        world
    }

    /// A session that can be timed (warned before its end): a call time limit of ten minutes.
    fn timed() -> Session {
        Session {
            call_time_limit: Some(600),
            ..sample_session()
        }
    }

    async fn admit_in(world: &World, intercept: &FakeIntercept) -> Admission {
        admit(world.ctx(), intercept, call(Some(CALLER)))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_withheld_caller_is_asked_to_show_their_number_before_anything_is_read() {
        let world = world_with(sample_session());
        // Were the route looked up, this would fail the call.
        world
            .store
            .fail_next("admit_route", StoreError::Backend("down".into()));
        let intercept = FakeIntercept::default();
        for from in [Some("anonymous"), Some("+266696687"), Some(""), None] {
            let got = admit(world.ctx(), &intercept, call(from)).await.unwrap();
            assert_eq!(got, Admission::WithheldCaller, "{from:?}");
        }
        assert!(world.store.legs().is_empty());
        assert!(intercept.asked().is_empty());
    }

    #[tokio::test]
    async fn a_caller_without_an_open_session_on_the_number_has_none() {
        let world = world_with(sample_session());
        let intercept = FakeIntercept::default();
        // Someone else calls the proxy number.
        let stranger = admit(world.ctx(), &intercept, call(Some("+819011112222")))
            .await
            .unwrap();
        assert_eq!(stranger, Admission::NoSession);
        // A proxy number that is not one.
        let nowhere = InboundCall {
            to: "not a number",
            ..call(Some(CALLER))
        };
        let got = admit(world.ctx(), &intercept, nowhere).await.unwrap();
        assert_eq!(got, Admission::NoSession);
        // A session closed in the usual way released its routes.
        let closed = World::at(NOW);
        closed.store.put_session(sample_session());
        let session = closed.store.session(&sample_session().sid).unwrap();
        closed
            .store
            .close_session(&session, "closed", NOW, NOW)
            .await
            .unwrap();
        assert_eq!(admit_in(&closed, &intercept).await, Admission::NoSession);
        assert!(world.store.legs().is_empty() && closed.store.legs().is_empty());
    }

    #[tokio::test]
    async fn a_session_past_its_end_or_closed_meanwhile_refuses_the_call_and_logs_nothing() {
        let intercept = FakeIntercept::default();
        let expired = world_with(Session {
            date_expiry: Some(NOW),
            ..sample_session()
        });
        assert_eq!(admit_in(&expired, &intercept).await, Admission::Closed);
        assert!(intercept.asked().is_empty(), "no need to ask the platform");

        // A close that deletes the routes before the call's write: refused (the store's
        // write on the route is conditional on the route existing).
        let closed = world_with(sample_session());
        let session = closed.store.session(&sample_session().sid).unwrap();
        closed
            .store
            .close_session(&session, "closed", NOW, NOW)
            .await
            .unwrap();
        assert_eq!(admit_in(&closed, &intercept).await, Admission::NoSession);
        // A timed call writes its leg after its route: a close landing in between wins.
        let raced = world_with(timed());
        raced.store.close_after_routing(&timed().sid);
        assert_eq!(admit_in(&raced, &intercept).await, Admission::Closed);
        assert!(raced.store.legs().is_empty());
        assert!(raced.calls.requests().is_empty(), "nobody is called");

        let idle = world_with(Session {
            ttl: 600,
            date_last_interaction: Some(NOW - 600),
            ..sample_session()
        });
        assert_eq!(admit_in(&idle, &intercept).await, Admission::Closed);
        assert!(idle.store.legs().is_empty());
    }

    #[tokio::test]
    async fn a_call_the_platform_intercepts_is_blocked_and_logs_nothing() {
        let world = world_with(sample_session());
        let intercept = FakeIntercept::refusing();
        assert_eq!(admit_in(&world, &intercept).await, Admission::Blocked);
        assert_eq!(intercept.asked(), vec![CALL.to_owned()]);
        assert!(world.store.legs().is_empty());
        // The route's note is put back: a blocked call is no activity, and its callbacks
        // cannot find the session through the route.
        let route = world
            .store
            .route(PROXY, CALLER)
            .expect("the session's route");
        assert_eq!(route.last_call_sid, None);
        assert_eq!(route.inactive_after, sample_session().inactive_after());
        let session = world.store.session(&sample_session().sid).unwrap();
        assert_eq!(session.status, SessionStatus::Open);
    }

    #[tokio::test]
    async fn an_open_session_dials_the_other_party_after_one_write_on_the_route() {
        // No warning, so no room: the call is a plain <Dial>.
        let world = world_with(Session {
            date_expiry: Some(NOW + 300),
            warning_lead: 0,
            ttl: 600,
            date_created: NOW - 10,
            ..sample_session()
        });
        let intercept = FakeIntercept::default();
        let Admission::Dial { route, limit } = admit_in(&world, &intercept).await else {
            panic!("an untimed session dials");
        };
        assert_eq!(route.other_participant_sid, "KP2");
        assert_eq!(route.other_identifier.as_str(), "+818098765432");
        assert_eq!(route.other_proxy.as_str(), PROXY);
        assert_eq!(limit, 300, "cut to what is left before the session's end");
        // The route noted the call and restarted its copy of the ttl; the legs are logged by
        // call-status, from the callbacks.
        assert_eq!(route.last_call_sid.as_deref(), Some(CALL));
        assert_eq!(route.last_call_at, Some(NOW));
        assert_eq!(route.inactive_after, Some(NOW + 600));
        assert!(world.store.legs().is_empty());
        assert!(
            world.calls.requests().is_empty(),
            "the caller's <Dial> rings"
        );
    }

    #[tokio::test]
    async fn a_route_idle_by_its_copy_asks_the_session_which_decides() {
        // A's route holds the ttl of the session's creation, 700 s ago.
        let world = world_with(Session {
            ttl: 600,
            warning_lead: 0,
            date_created: NOW - 700,
            ..sample_session()
        });
        let intercept = FakeIntercept::default();
        assert_eq!(
            admit_in(&world, &intercept).await,
            Admission::Closed,
            "idle by both"
        );
        // Activity that moved only the session (call-status): the session decides.
        let sid = sample_session().sid;
        world.store.touch_session_only(&sid, NOW - 100);
        let Admission::Dial { .. } = admit_in(&world, &intercept).await else {
            panic!("the session is active: the call goes through");
        };
        // Confirmed through the session: the leg is logged, the ttl restarts on both.
        assert_eq!(world.store.legs().len(), 1);
        let session = world.store.session(&sid).unwrap();
        assert_eq!(session.date_last_interaction, Some(NOW));
        let Admission::Dial { route, .. } = admit_in(&world, &intercept).await else {
            panic!("and again, now on the route alone");
        };
        assert_eq!(route.inactive_after, Some(NOW + 600));
        assert_eq!(world.store.legs().len(), 1, "the route alone logs nothing");
    }

    #[tokio::test]
    async fn a_repeated_call_sid_is_answered_alike() {
        let world = world_with(sample_session());
        let intercept = FakeIntercept::default();
        let first = admit_in(&world, &intercept).await;
        let again = admit_in(&world, &intercept).await;
        assert!(matches!(first, Admission::Dial { .. }));
        assert_eq!(again, first);
    }

    #[tokio::test]
    async fn a_timed_session_calls_the_other_party_into_the_room() {
        let world = world_with(timed());
        let intercept = FakeIntercept::default();
        let Admission::Room { route } = admit_in(&world, &intercept).await else {
            panic!("a timed session runs through the room");
        };
        assert_eq!(route.participant_sid, "KP1");
        assert_eq!(
            world.calls.requests(),
            vec![CallRequest::Ring {
                to: "+818098765432".into(),
                mode: "conference",
                limit: 600,
                leg_limit: 600,
            }]
        );
        let live = world
            .store
            .session(&timed().sid)
            .unwrap()
            .live_call
            .unwrap();
        assert_eq!((live.mode, live.limit), (CallMode::Conference, 600));
        let legs = world.store.legs();
        assert_eq!(legs.iter().filter(|l| l.call_sid == CALL).count(), 1);
    }

    #[tokio::test]
    async fn a_timed_call_whose_other_party_cannot_be_called_fails_and_leaves_no_live_call() {
        let world = world_with(timed());
        world
            .calls
            .script_rings(vec![Err(CallError::Unreachable("down".into()))]);
        let got = admit(world.ctx(), &FakeIntercept::default(), call(Some(CALLER))).await;
        assert!(
            matches!(got, Err(DomainError::CallNotPlaced { .. })),
            "{got:?}"
        );
        assert!(
            world
                .store
                .session(&timed().sid)
                .unwrap()
                .live_call
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_store_failure_or_conflict_is_an_error_for_the_apology() {
        let intercept = FakeIntercept::default();
        let world = world_with(sample_session());
        world
            .store
            .fail_next("admit_route", StoreError::Backend("throttled".into()));
        let got = admit(world.ctx(), &intercept, call(Some(CALLER))).await;
        assert!(matches!(got, Err(DomainError::Store(_))), "{got:?}");

        // A timed call's leg write meeting another session's record of this CallSid.
        let world = world_with(timed());
        world
            .store
            .fail_next("start_inbound_leg", StoreError::ConditionFailed);
        let got = admit(world.ctx(), &intercept, call(Some(CALLER))).await;
        assert!(
            matches!(got, Err(DomainError::Store(StoreError::ConditionFailed))),
            "{got:?}"
        );
        assert!(world.store.legs().is_empty());
    }

    fn route(expiry: Option<i64>, limit: Option<u64>) -> Route {
        Route {
            session_sid: "KC1".into(),
            participant_sid: "KP1".into(),
            other_participant_sid: "KP2".into(),
            other_identifier: PhoneNumber::parse("080-9876-5432").unwrap(),
            other_proxy: PhoneNumber::parse("050-3123-4567").unwrap(),
            date_expiry: expiry,
            call_time_limit: limit,
            timed: false,
            recording_notice: None,
            other_announced: false,
            ttl: 0,
            inactive_after: None,
            last_call_sid: None,
            last_call_at: None,
        }
    }

    #[test]
    fn time_limit_is_the_tightest_bound() {
        assert_eq!(time_limit(&route(None, None), 1000), MAX_CALL_SECONDS);
        assert_eq!(time_limit(&route(None, Some(600)), 1000), 600);
        assert_eq!(time_limit(&route(Some(1300), Some(600)), 1000), 300);
        assert_eq!(
            time_limit(&route(Some(1000), None), 1000),
            1,
            "never zero: Twilio would read it as no limit"
        );
        assert_eq!(
            time_limit(&route(Some(100_000), None), 1000),
            MAX_CALL_SECONDS
        );
    }
}
