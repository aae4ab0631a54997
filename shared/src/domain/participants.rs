//! Participants added to a session after its creation, and removed from it (Proxy's
//! Participant resource). A session has at most two; its routes exist while it has both.

use std::collections::HashSet;

use crate::domain::error::DomainError;
use crate::domain::ports::{CreateConflict, CreateError, Ctx, StoreError};
use crate::domain::sessions::{
    MAX_CREATE_ATTEMPTS, NewParticipant, PoolState, backoff, find, random_index, shortage_error,
};
use crate::ids;
use crate::model::{Participant, Session};
use crate::phone::PhoneNumber;
use crate::pool::{self, Need, Shortage};

/// Adds a participant: refuses a third (80609) or one already in the session, picks a
/// proxy number under I1 — the other participant's when it is free for this one, so both
/// share one contact — and writes it with its routes, retrying when a concurrent change won.
pub async fn add(
    ctx: Ctx<'_>,
    sid_or_name: &str,
    new: NewParticipant,
) -> Result<(Session, Participant), DomainError> {
    for attempt in 0..MAX_CREATE_ATTEMPTS {
        let session = find(ctx, sid_or_name).await?;
        if !session.status.is_open() {
            return Err(DomainError::SessionClosed(format!(
                "session {} is closed; reopen it (POST with status in-progress) before adding participants",
                session.sid
            )));
        }
        if session.participants.len() >= 2 {
            return Err(DomainError::TooManyParticipants(format!(
                "session {} already has its two participants",
                session.sid
            )));
        }
        if let Some(p) = session.participants.first() {
            if p.identifier == new.identifier {
                return Err(DomainError::ParticipantAlreadyInSession(format!(
                    "{} is already a participant of this session",
                    new.identifier.masked()
                )));
            }
            if new.proxy_identifier.as_ref() == Some(&p.identifier) {
                return Err(DomainError::Invalid(
                    "a proxy_identifier cannot be a participant's own number".into(),
                ));
            }
        }
        let (numbers, taken) = futures::try_join!(
            ctx.store.list_numbers(),
            ctx.store.proxies_of(&new.identifier)
        )?;
        if numbers.iter().any(|n| n.phone_number == new.identifier) {
            return Err(DomainError::ParticipantIsProxyNumber(format!(
                "{} is one of the pool's proxy numbers; a participant must be a person's own number",
                new.identifier.masked()
            )));
        }
        let taken: HashSet<PhoneNumber> = taken.into_iter().collect();
        let proxy = choose(&session, &new, &numbers, &taken)
            .map_err(|s| shortage_error(s, PoolState::of(&numbers)))?;
        let participant = Participant {
            sid: ids::new_sid(ids::PARTICIPANT),
            identifier: new.identifier.clone(),
            proxy_identifier: proxy,
            friendly_name: new.friendly_name.clone(),
            announcement: new.announcement.clone(),
            announcement_url: new.announcement_url.clone(),
        };
        match ctx
            .store
            .add_participant(&session, &participant, ctx.now())
            .await
        {
            Ok(()) => {
                tracing::info!(session = %session.sid, participant = %participant.sid, attempt, "participant added");
                return Ok((find(ctx, &session.sid).await?, participant));
            }
            Err(CreateError::Store(e)) => return Err(e.into()),
            Err(CreateError::Conflict(CreateConflict::Route {
                proxy,
                participant: who,
            })) if new.proxy_identifier.as_ref() == Some(&proxy) && who == new.identifier => {
                return Err(shortage_error(
                    Shortage::Taken {
                        number: proxy,
                        participant: who,
                    },
                    PoolState::Unreserved,
                ));
            }
            // Another change won (a concurrent add, a close, a number taken meanwhile):
            // the next read sees it.
            Err(CreateError::Conflict(_)) => {}
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(DomainError::Contention(
        "the session or this participant's numbers changed many times at once; nothing was written, retry"
            .into(),
    ))
}

/// The new participant's proxy: the one asked for, else the other participant's when it is
/// an unreserved number free for this one, else the pool's choice.
fn choose(
    session: &Session,
    new: &NewParticipant,
    numbers: &[crate::model::ProxyNumber],
    taken: &HashSet<PhoneNumber>,
) -> Result<PhoneNumber, Shortage> {
    if new.proxy_identifier.is_none()
        && let Some(other) = session.participants.first()
        && !taken.contains(&other.proxy_identifier)
        && numbers
            .iter()
            .any(|n| n.phone_number == other.proxy_identifier && !n.is_reserved)
    {
        return Ok(other.proxy_identifier.clone());
    }
    let need = Need {
        identifier: &new.identifier,
        requested: new.proxy_identifier.as_ref(),
        taken,
    };
    let mut chosen = pool::choose(numbers, &[need], random_index())?;
    Ok(chosen.remove(0))
}

/// Removes a participant (by SID) with its routes; the session keeps the other one, who can
/// no longer be reached through it until a new participant is added.
pub async fn remove(
    ctx: Ctx<'_>,
    sid_or_name: &str,
    participant_sid: &str,
) -> Result<Session, DomainError> {
    for attempt in 0..MAX_CREATE_ATTEMPTS {
        let session = find(ctx, sid_or_name).await?;
        let Some(index) = session
            .participants
            .iter()
            .position(|p| p.sid == participant_sid)
        else {
            return Err(DomainError::NotFound(format!(
                "session {} has no participant {participant_sid:?}",
                session.sid
            )));
        };
        match ctx
            .store
            .remove_participant(&session, index, ctx.now())
            .await
        {
            Ok(()) => {
                tracing::info!(session = %session.sid, participant = participant_sid, "participant removed");
                return find(ctx, &session.sid).await;
            }
            // The session closed or its participants changed meanwhile: read it again.
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(DomainError::Contention(
        "the session changed many times at once; nothing was written, retry".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fakes::World;
    use crate::model::sample_session;

    const NOW: i64 = 1_795_552_200;
    const SID: &str = "KC0123456789abcdef0123456789abcdef";

    fn newcomer(n: &str) -> NewParticipant {
        NewParticipant {
            identifier: PhoneNumber::parse(n).unwrap(),
            friendly_name: None,
            proxy_identifier: None,
            announcement: None,
            announcement_url: None,
        }
    }

    fn with_parties(n: usize) -> World {
        let world = World::at(NOW);
        world.store.add_number("050-3123-4567");
        world.store.add_number("050-3123-4568");
        let mut s = sample_session();
        s.participants.truncate(n);
        world.store.put_session(s);
        world
    }

    #[tokio::test]
    async fn the_second_participant_shares_the_first_ones_proxy_and_opens_the_routes() {
        let world = with_parties(1);
        let (session, added) = add(world.ctx(), SID, newcomer("080-9876-5432"))
            .await
            .unwrap();
        assert_eq!(session.participants.len(), 2);
        assert_eq!(added.proxy_identifier.as_str(), "+815031234567");
        let proxy = PhoneNumber::parse("050-3123-4567").unwrap();
        let first = PhoneNumber::parse("090-1234-5678").unwrap();
        let route = world.store.route(&proxy, &first).expect("a route now");
        assert_eq!(route.other_participant_sid, added.sid);
    }

    #[tokio::test]
    async fn a_third_participant_or_the_same_one_twice_is_refused() {
        let world = with_parties(2);
        let err = add(world.ctx(), SID, newcomer("070-1111-2222"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::TooManyParticipants(_)),
            "{err:?}"
        );
        let world = with_parties(1);
        let err = add(world.ctx(), SID, newcomer("090-1234-5678"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::ParticipantAlreadyInSession(_)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_add_that_loses_a_race_reads_the_session_again() {
        let world = with_parties(1);
        world.store.conflict_next_create(CreateConflict::Contention);
        assert!(
            add(world.ctx(), SID, newcomer("080-9876-5432"))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn removing_a_participant_takes_the_routes_with_it() {
        let world = with_parties(2);
        let kp2 = sample_session().participants[1].sid.clone();
        let session = remove(world.ctx(), SID, &kp2).await.unwrap();
        assert_eq!(session.participants.len(), 1);
        let proxy = PhoneNumber::parse("050-3123-4567").unwrap();
        let first = PhoneNumber::parse("090-1234-5678").unwrap();
        assert!(world.store.route(&proxy, &first).is_none());
        let err = remove(world.ctx(), SID, &kp2).await.unwrap_err();
        assert!(matches!(err, DomainError::NotFound(_)), "{err:?}");
    }
}
