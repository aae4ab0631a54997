//! Sessions: creating one with its routes (I1), reading, closing (I3), moving its end,
//! and the activity its calls record on it.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::{
    Condition, OnlyIf, Route, SessionRef, Store, StoreError, due_shard, from_item, n,
    participation_key, proxies_of_session, route_key, s, session_key, session_ref, to_item,
    unique_name_key, with_key,
};
use crate::model::{Session, SessionStatus};
use crate::phone::PhoneNumber;

/// Which item of a session-creating transaction failed, so the caller can explain or retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateConflict {
    UniqueName,
    /// The participant already has an open session on this proxy number (I1).
    Route {
        proxy: PhoneNumber,
        participant: PhoneNumber,
    },
    /// The number left the pool between reading and writing.
    NumberGone(PhoneNumber),
    /// Another transaction touched the same items; try again.
    Contention,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("session conflicts with existing state: {0:?}")]
    Conflict(CreateConflict),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Writes a new session with its routes in one transaction: the session, its unique
    /// name, for each participant the route and participation items (each must not exist:
    /// I1), and the use count of each proxy number (which must still be in the pool).
    pub async fn create_session(&self, session: &Session, now: i64) -> Result<(), CreateError> {
        let mut items = Vec::new();
        // Index of each item in the transaction, to explain a cancellation.
        let mut meaning: Vec<Option<CreateConflict>> = Vec::new();

        let mut session_item = with_key(to_item(session)?, session_key(&session.sid));
        if let Some(due) = session.deadline() {
            session_item.insert("due_shard".into(), s(due_shard(&session.sid)));
            session_item.insert("due_at".into(), n(due));
        }
        if let Some(t) = session.inactive_after() {
            session_item.insert("inactive_after".into(), n(t));
        }
        items.push(self.put(session_item, Condition::absent())?);
        meaning.push(None);

        if let Some(name) = &session.unique_name {
            let item = session_ref(&session.sid, unique_name_key(name))?;
            items.push(self.put(item, Condition::absent())?);
            meaning.push(Some(CreateConflict::UniqueName));
        }

        for p in &session.participants {
            let other = session.other(&p.sid).unwrap_or(p);
            let route = Route {
                session_sid: session.sid.clone(),
                participant_sid: p.sid.clone(),
                other_participant_sid: other.sid.clone(),
                other_identifier: other.identifier.clone(),
                other_proxy: other.proxy_identifier.clone(),
                date_expiry: session.date_expiry,
                call_time_limit: session.call_time_limit,
                timed: session.is_timed(),
            };
            let conflict = CreateConflict::Route {
                proxy: p.proxy_identifier.clone(),
                participant: p.identifier.clone(),
            };
            items.push(self.put(
                with_key(
                    to_item(&route)?,
                    route_key(&p.proxy_identifier, &p.identifier),
                ),
                Condition::absent(),
            )?);
            meaning.push(Some(conflict.clone()));
            items.push(self.put(
                session_ref(
                    &session.sid,
                    participation_key(&p.identifier, &p.proxy_identifier),
                )?,
                Condition::absent(),
            )?);
            meaning.push(Some(conflict));
        }

        for proxy in proxies_of_session(session) {
            items.push(self.count_number(proxy, 1, now)?);
            meaning.push(Some(CreateConflict::NumberGone(proxy.clone())));
        }

        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(StoreError::Cancelled(codes)) => {
                let failed = codes
                    .iter()
                    .zip(&meaning)
                    .find(|(code, _)| *code == "ConditionalCheckFailed")
                    .and_then(|(_, m)| m.clone());
                Err(CreateError::Conflict(
                    failed.unwrap_or(CreateConflict::Contention),
                ))
            }
            Err(e) => Err(CreateError::Store(e)),
        }
    }

    pub async fn get_session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        self.get(session_key(sid)).await?.map(from_item).transpose()
    }

    pub async fn session_sid_by_unique_name(
        &self,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(unique_name_key(name))
            .await?
            .map(from_item::<SessionRef>)
            .transpose()?
            .map(|r| r.session_sid))
    }

    /// Closes an open session and releases its routes in one transaction (I3). Fails with
    /// `ConditionFailed` when the session is no longer open (a concurrent close won).
    pub async fn close_session(
        &self,
        session: &Session,
        reason: &str,
        now: i64,
        expire_at: i64,
    ) -> Result<(), StoreError> {
        let mut items = Vec::new();
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.sid)))
            .update_expression(
                "SET #status = :closed, closed_reason = :reason, date_updated = :now, expire_at = :expire \
                 REMOVE due_shard, due_at",
            )
            .only_if(Condition::session_open())
            .expression_attribute_values(":closed", s(SessionStatus::Closed.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expire", n(expire_at))
            .build()?;
        items.push(TransactWriteItem::builder().update(update).build());
        for p in &session.participants {
            items.push(
                self.delete_if_session(
                    route_key(&p.proxy_identifier, &p.identifier),
                    &session.sid,
                )?,
            );
            items.push(self.delete_if_session(
                participation_key(&p.identifier, &p.proxy_identifier),
                &session.sid,
            )?);
        }
        for proxy in proxies_of_session(session) {
            items.push(self.count_number(proxy, -1, now)?);
        }
        match self.transact(items).await {
            Err(e) if e.failed_at(0) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    /// Moves `date_expiry` and the live call's deadline by `seconds` (whichever exist), on
    /// the session and its routes, while both are still what `session` says. With `due`,
    /// files the session in the due index for that instant (the caller knows when the moved
    /// session next needs the sweep).
    pub async fn extend_session(
        &self,
        session: &Session,
        seconds: i64,
        due: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let moved = session.extended_by(seconds);
        let mut sets = vec!["date_updated = :now".to_owned()];
        let mut condition = Condition::session_open();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.sid)))
            .expression_attribute_values(":now", n(now));
        let new_expiry = moved.date_expiry;
        if let (Some(old), Some(new)) = (session.date_expiry, new_expiry) {
            sets.push("date_expiry = :new_expiry".into());
            condition = condition
                .and(Condition::new("date_expiry = :old_expiry").value(":old_expiry", n(old)));
            update = update.expression_attribute_values(":new_expiry", n(new));
        }
        let deadline = |s: &Session| s.live_call.as_ref().and_then(|l| l.deadline);
        if let (Some(old), Some(new)) = (deadline(session), deadline(&moved)) {
            sets.push("#live.#deadline = :new_deadline".into());
            condition = condition.and(Condition::live_deadline_is(":old_deadline", old));
            update = update.expression_attribute_values(":new_deadline", n(new));
        }
        if let Some(due) = due {
            sets.push("due_shard = :shard, due_at = :due".into());
            update = update
                .expression_attribute_values(":shard", s(due_shard(&session.sid)))
                .expression_attribute_values(":due", n(due));
        }
        let update = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .only_if(condition)
            .build()?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        if let Some(expiry) = new_expiry {
            items.extend(self.route_expiry_updates(session, expiry)?);
        }
        match self.transact(items).await {
            Err(StoreError::Cancelled(_)) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    /// Marks session activity: last interaction, ttl restart, open → in-progress. With
    /// `check_deadline`, also requires the session not to be past `date_expiry` or its
    /// inactivity limit (`inactive_after`, kept as `now + ttl` by every touch).
    pub(super) fn touch_session(
        &self,
        sid: &str,
        now: i64,
        check_deadline: bool,
        cost_milli_yen: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut condition = Condition::session_open();
        if check_deadline {
            condition = condition
                .and(
                    Condition::new("attribute_not_exists(date_expiry) OR date_expiry > :now")
                        .value(":now", n(now)),
                )
                .and(
                    Condition::new(
                        "#ttl = :zero OR attribute_not_exists(inactive_after) OR inactive_after > :now",
                    )
                    .name("#ttl", "ttl")
                    .value(":zero", n(0))
                    .value(":now", n(now)),
                );
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression(
                "SET #status = :in_progress, date_last_interaction = :now, date_updated = :now, \
                 inactive_after = :now + #ttl ADD total_cost_milli_yen :cost",
            )
            .only_if(condition)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":cost", n(cost_milli_yen))
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Adds a late leg's cost to a session that has closed (and must exist).
    pub(super) fn add_cost(
        &self,
        sid: &str,
        cost_milli_yen: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression("ADD total_cost_milli_yen :cost")
            .only_if(Condition::exists())
            .expression_attribute_values(":cost", n(cost_milli_yen))
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
