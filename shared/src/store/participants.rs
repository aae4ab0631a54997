//! Participants added to and removed from a session after it was created (Proxy's
//! Participant resource). The participants stay in the session item's `participants` list,
//! so the session item alone says who is in it; routes and participations follow them in
//! the same transaction (I1 when adding, I3's release when removing).

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::sessions::{CreateConflict, CreateError, conflict_of, has_routes};
use super::{
    Condition, OnlyIf, Route, Store, StoreError, n, participation_key, route_key, s, session_key,
    session_ref, to_attr, to_item, with_key,
};
use crate::model::{Participant, Session, SessionStatus};

impl Store {
    /// Adds `participant` to `session` as read: the session must still be open with the
    /// participants it had; the participant's (proxy, number) slot must be free (I1); with
    /// the second participant, both routes are written. A cancelled transaction is explained
    /// as `create_session`'s is.
    pub async fn add_participant(
        &self,
        session: &Session,
        participant: &Participant,
        now: i64,
    ) -> Result<(), CreateError> {
        let (items, meaning) = self.add_participant_items(session, participant, now)?;
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(StoreError::Cancelled(codes)) => {
                Err(CreateError::Conflict(conflict_of(&codes, &meaning)))
            }
            Err(e) => Err(CreateError::Store(e)),
        }
    }

    fn add_participant_items(
        &self,
        session: &Session,
        participant: &Participant,
        now: i64,
    ) -> Result<(Vec<TransactWriteItem>, Vec<Option<CreateConflict>>), StoreError> {
        let mut after = session.clone();
        after.participants.push(participant.clone());
        let mut items = Vec::new();
        let mut meaning = Vec::new();

        // The session changed meanwhile (closed, or another participant added): a failure
        // here means nothing more specific, so the caller reads it again.
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.sid)))
            .update_expression("SET #parts = list_append(#parts, :new), date_updated = :now")
            .only_if(Condition::session_open().and(same_participants(session)))
            .expression_attribute_values(":new", to_attr(&vec![participant])?)
            .expression_attribute_values(":now", n(now))
            .build()?;
        items.push(TransactWriteItem::builder().update(update).build());
        meaning.push(None);

        let slot = |p: &Participant| CreateConflict::Route {
            proxy: p.proxy_identifier.clone(),
            participant: p.identifier.clone(),
        };
        items.push(self.put(
            session_ref(
                &session.sid,
                participation_key(&participant.identifier, &participant.proxy_identifier),
            )?,
            Condition::absent(),
        )?);
        meaning.push(Some(slot(participant)));
        if has_routes(&after) {
            for p in &after.participants {
                let other = after.other(&p.sid).unwrap_or(p);
                items.push(self.put(
                    with_key(
                        to_item(&Route::of(&after, p, other))?,
                        route_key(&p.proxy_identifier, &p.identifier),
                    ),
                    Condition::absent(),
                )?);
                meaning.push(Some(slot(p)));
            }
        }
        let new_proxy = session
            .participants
            .iter()
            .all(|p| p.proxy_identifier != participant.proxy_identifier);
        if new_proxy {
            items.push(self.count_number(&participant.proxy_identifier, 1, now)?);
            meaning.push(Some(CreateConflict::NumberGone(
                participant.proxy_identifier.clone(),
            )));
        }
        Ok((items, meaning))
    }

    /// Removes the participant at `index` of `session` as read, with its participation and
    /// the session's routes (none lead anywhere without both parties), while the session
    /// still has the same participants and status. `ConditionFailed` when it changed.
    pub async fn remove_participant(
        &self,
        session: &Session,
        index: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        let items = self.remove_participant_items(session, index, now)?;
        match self.transact(items).await {
            Err(StoreError::Cancelled(_)) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    fn remove_participant_items(
        &self,
        session: &Session,
        index: usize,
        now: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let gone = session
            .participants
            .get(index)
            .ok_or_else(|| StoreError::Request(format!("no participant at {index}")))?;
        let open = session.status.is_open();
        let status = if open {
            Condition::session_open()
        } else {
            Condition::new("#status = :closed")
                .name("#status", "status")
                .value(":closed", s(SessionStatus::Closed.as_str()))
        };
        let mut expression = format!("SET date_updated = :now REMOVE #parts[{index}]");
        if session.decider.as_deref() == Some(gone.sid.as_str()) {
            expression.push_str(", decider");
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.sid)))
            .update_expression(expression)
            .only_if(status.and(same_participants(session)))
            .expression_attribute_values(":now", n(now))
            .build()?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        // A closed session released its routes and participations when it closed.
        if open {
            items.push(self.delete_if_session(
                participation_key(&gone.identifier, &gone.proxy_identifier),
                &session.sid,
            )?);
            if has_routes(session) {
                for p in &session.participants {
                    items.push(self.delete_if_session(
                        route_key(&p.proxy_identifier, &p.identifier),
                        &session.sid,
                    )?);
                }
            }
            let shared = session
                .participants
                .iter()
                .any(|p| p.sid != gone.sid && p.proxy_identifier == gone.proxy_identifier);
            if !shared {
                items.push(self.count_number(&gone.proxy_identifier, -1, now)?);
            }
        }
        Ok(items)
    }
}

/// The session's participants are still those it was read with: same count, same SIDs in
/// the same places (a list index in a later write must name the same participant).
fn same_participants(session: &Session) -> Condition {
    let mut expression = "size(#parts) = :count".to_owned();
    let mut condition_values = Vec::new();
    for (i, p) in session.participants.iter().enumerate() {
        expression.push_str(&format!(" AND #parts[{i}].#psid = :psid{i}"));
        condition_values.push((i, p.sid.clone()));
    }
    let mut c = Condition::new(expression)
        .name("#parts", "participants")
        .value(":count", n(session.participants.len()));
    if !session.participants.is_empty() {
        c = c.name("#psid", "sid");
    }
    for (i, sid) in condition_values {
        c = c.value(PSID[i], s(sid));
    }
    c
}

/// Placeholders for the participants' SIDs (a session has at most two).
const PSID: [&str; 2] = [":psid0", ":psid1"];

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        assert_item_binds_exactly, condition_of, key_of, offline_store,
    };
    use super::*;
    use crate::model::sample_session;
    use crate::phone::PhoneNumber;

    fn one_party() -> Session {
        let mut s = sample_session();
        s.participants.truncate(1);
        s
    }

    #[test]
    fn the_second_participant_brings_both_routes_and_claims_its_slot() {
        let store = offline_store();
        let session = one_party();
        let second = sample_session().participants[1].clone();
        let (items, meaning) = store.add_participant_items(&session, &second, 100).unwrap();
        let keys: Vec<(String, String)> = items.iter().map(key_of).collect();
        let proxy = "+815031234567";
        assert_eq!(
            keys,
            [
                (format!("SESSION#{}", session.sid), "SESSION".into()),
                ("PARTICIPANT#+818098765432".into(), format!("PROXY#{proxy}")),
                (format!("ROUTE#{proxy}"), "CALLER#+819012345678".into()),
                (format!("ROUTE#{proxy}"), "CALLER#+818098765432".into()),
            ],
            "the proxy is shared with the first: its count does not move"
        );
        assert_eq!(meaning.len(), items.len());
        assert_eq!(
            condition_of(&items[0]),
            "#status IN (:open, :in_progress) AND size(#parts) = :count AND #parts[0].#psid = :psid0"
        );
        for item in &items[1..] {
            assert_eq!(condition_of(item), "attribute_not_exists(pk)");
        }
        items.iter().for_each(assert_item_binds_exactly);
    }

    #[test]
    fn a_first_participant_gets_no_route_and_counts_its_proxy() {
        let store = offline_store();
        let mut session = one_party();
        let first = session.participants.remove(0);
        let (items, _) = store.add_participant_items(&session, &first, 100).unwrap();
        assert_eq!(items.len(), 3, "session, participation, pool count");
        assert_eq!(key_of(&items[2]).0, "POOL");
        items.iter().for_each(assert_item_binds_exactly);
    }

    #[test]
    fn removing_a_participant_releases_its_slot_and_both_routes() {
        let store = offline_store();
        let mut session = sample_session();
        session.participants[1].proxy_identifier = PhoneNumber::parse("050-3123-0000").unwrap();
        session.decider = Some(session.participants[1].sid.clone());
        let items = store.remove_participant_items(&session, 1, 100).unwrap();
        let update = items[0].update().unwrap();
        assert_eq!(
            update.update_expression(),
            "SET date_updated = :now REMOVE #parts[1], decider"
        );
        assert_eq!(items.len(), 5, "session, participation, 2 routes, count");
        for item in &items[1..4] {
            assert_eq!(condition_of(item), "session_sid = :sid");
        }
        items.iter().for_each(assert_item_binds_exactly);
        // From a closed session: the session item only.
        session.status = SessionStatus::Closed;
        let items = store.remove_participant_items(&session, 0, 100).unwrap();
        assert_eq!(items.len(), 1);
        assert!(condition_of(&items[0]).starts_with("#status = :closed AND "));
        items.iter().for_each(assert_item_binds_exactly);
    }
}
