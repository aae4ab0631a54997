//! Sessions: creating one with its routes (I1), reading, closing (I3), moving its end,
//! and the activity its calls record on it.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::{
    Condition, Item, OnlyIf, Route, SessionRef, Store, StoreError, due_shard, from_item, n,
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

/// The session item as `create_session` writes it: the session, and the attributes the
/// due index and the inactivity check read.
fn session_item(session: &Session) -> Result<Item, StoreError> {
    let mut item = with_key(to_item(session)?, session_key(&session.sid));
    item.extend(super::listing::list_attributes(session));
    if let Some(due) = session.deadline() {
        item.insert("due_shard".into(), s(due_shard(&session.sid)));
        item.insert("due_at".into(), n(due));
    }
    if let Some(t) = session.inactive_after() {
        item.insert("inactive_after".into(), n(t));
    }
    Ok(item)
}

/// Routes exist while the session has both its parties; before that, only participations.
pub(super) fn has_routes(session: &Session) -> bool {
    session.participants.len() == 2
}

/// What a cancelled create means: the first item whose condition failed, or contention
/// when none did (another transaction touched the same items).
pub(super) fn conflict_of(codes: &[String], meaning: &[Option<CreateConflict>]) -> CreateConflict {
    codes
        .iter()
        .zip(meaning)
        .find(|(code, _)| *code == "ConditionalCheckFailed")
        .and_then(|(_, m)| m.clone())
        .unwrap_or(CreateConflict::Contention)
}

impl Store {
    /// Writes a new session with its routes in one transaction: the session, its unique
    /// name, for each participant the route and participation items (each must not exist:
    /// I1), and the use count of each proxy number (which must still be in the pool).
    pub async fn create_session(&self, session: &Session, now: i64) -> Result<(), CreateError> {
        let (items, meaning) = self.create_items(session, now)?;
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(StoreError::Cancelled(codes)) => {
                Err(CreateError::Conflict(conflict_of(&codes, &meaning)))
            }
            Err(e) => Err(CreateError::Store(e)),
        }
    }

    /// The items of `create_session`'s transaction, each with the conflict its failed
    /// condition would mean.
    fn create_items(
        &self,
        session: &Session,
        now: i64,
    ) -> Result<(Vec<TransactWriteItem>, Vec<Option<CreateConflict>>), StoreError> {
        let mut items = Vec::new();
        let mut meaning: Vec<Option<CreateConflict>> = Vec::new();

        items.push(self.put(session_item(session)?, Condition::absent())?);
        meaning.push(None);

        if let Some(name) = &session.unique_name {
            let item = session_ref(&session.sid, unique_name_key(name))?;
            items.push(self.put(item, Condition::unique_name_free())?);
            meaning.push(Some(CreateConflict::UniqueName));
        }

        for p in &session.participants {
            let conflict = CreateConflict::Route {
                proxy: p.proxy_identifier.clone(),
                participant: p.identifier.clone(),
            };
            // A route leads to the other party: a session with one participant has none
            // yet, and its participation item alone holds the (proxy, participant) slot (I1).
            if let Some(other) = session.other(&p.sid) {
                let route = Route::of(session, p, other);
                items.push(self.put(
                    with_key(
                        to_item(&route)?,
                        route_key(&p.proxy_identifier, &p.identifier),
                    ),
                    Condition::absent(),
                )?);
                meaning.push(Some(conflict.clone()));
            }
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
        Ok((items, meaning))
    }

    pub async fn get_session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        self.get(session_key(sid)).await?.map(from_item).transpose()
    }

    /// The sessions of `sids` that exist, by SID: strongly consistent BatchGetItem, 100 keys a
    /// request (the API's limit). Keys DynamoDB returns unprocessed are asked again, with
    /// exponential backoff as the API reference for BatchGetItem advises; after a few tries
    /// they are left out, and the caller reads them one by one.
    pub async fn get_sessions(
        &self,
        sids: &[String],
    ) -> Result<std::collections::HashMap<String, Session>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = std::collections::HashMap::with_capacity(sids.len());
        for chunk in sids.chunks(100) {
            let mut keys: Vec<_> = chunk.iter().map(|sid| session_key(sid)).collect();
            for attempt in 0..4u32 {
                if keys.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(StoreError::backend)?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let session: Session = from_item(item)?;
                    found.insert(session.sid.clone(), session);
                }
                keys = out
                    .unprocessed_keys
                    .unwrap_or_default()
                    .remove(&self.table)
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(found)
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

    /// Closes an open session and releases its routes and its unique name in one
    /// transaction (I3). Fails with
    /// `ConditionFailed` when the session is no longer open (a concurrent close won).
    pub async fn close_session(
        &self,
        session: &Session,
        reason: &str,
        now: i64,
        expire_at: i64,
    ) -> Result<(), StoreError> {
        let items = self.close_items(session, reason, now, expire_at)?;
        match self.transact(items).await {
            Err(e) if e.failed_at(0) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    fn close_items(
        &self,
        session: &Session,
        reason: &str,
        now: i64,
        expire_at: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
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
        if let Some(name) = &session.unique_name {
            // The name is free for a new session from now on; until one takes it, it still
            // finds this one (GET /v1/sessions/{unique_name}), and the table's TTL removes it
            // with the session.
            let release = Update::builder()
                .table_name(&self.table)
                .set_key(Some(unique_name_key(name)))
                .update_expression("SET released_at = :now, expire_at = :expire")
                .only_if(Condition::of_session(&session.sid))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":expire", n(expire_at))
                .build()?;
            items.push(TransactWriteItem::builder().update(release).build());
        }
        for p in &session.participants {
            if has_routes(session) {
                items.push(self.delete_if_session(
                    route_key(&p.proxy_identifier, &p.identifier),
                    &session.sid,
                )?);
            }
            items.push(self.delete_if_session(
                participation_key(&p.identifier, &p.proxy_identifier),
                &session.sid,
            )?);
        }
        for proxy in proxies_of_session(session) {
            items.push(self.count_number(proxy, -1, now)?);
        }
        Ok(items)
    }

    /// Reopens the closed session `before` as `after` (status in progress, proxies chosen
    /// again): the session item is replaced only while it is still `before` (closed, not
    /// written since), and every claim a create makes is made again — the unique name if it
    /// is still free, each participant's route and participation (I1), the pool counts.
    pub async fn reopen_session(
        &self,
        before: &Session,
        after: &Session,
        now: i64,
    ) -> Result<(), CreateError> {
        let (items, meaning) = self.reopen_items(before, after, now)?;
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(StoreError::Cancelled(codes)) => {
                Err(CreateError::Conflict(conflict_of(&codes, &meaning)))
            }
            Err(e) => Err(CreateError::Store(e)),
        }
    }

    fn reopen_items(
        &self,
        before: &Session,
        after: &Session,
        now: i64,
    ) -> Result<(Vec<TransactWriteItem>, Vec<Option<CreateConflict>>), StoreError> {
        let (mut items, meaning) = self.create_items(after, now)?;
        // Late costs and conference callbacks still write a closed session: any write since
        // it was read moves date_updated or the cost, and then nothing is replaced.
        let unchanged = Condition::new(
            "#status = :closed AND date_updated = :read_updated AND total_cost_milli_yen = :read_cost",
        )
        .name("#status", "status")
        .value(":closed", s(SessionStatus::Closed.as_str()))
        .value(":read_updated", n(before.date_updated))
        .value(":read_cost", n(before.total_cost_milli_yen));
        items[0] = self.put(session_item(after)?, unchanged)?;
        Ok((items, meaning))
    }

    /// Sets the open session's `date_expiry` and `ttl` to `after`'s, while both are still
    /// `before`'s, with the inactivity limit, the due index (`due`) and the routes' copy of
    /// `date_expiry` moved alike.
    pub async fn update_session_times(
        &self,
        before: &Session,
        after: &Session,
        due: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let items = self.times_items(before, after, due, now)?;
        match self.transact(items).await {
            Err(StoreError::Cancelled(_)) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    fn times_items(
        &self,
        before: &Session,
        after: &Session,
        due: Option<i64>,
        now: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut sets = vec!["date_updated = :now".to_owned(), "#ttl = :ttl".to_owned()];
        let mut removes = Vec::new();
        let mut condition = Condition::session_open()
            .and(Condition::new("#ttl = :read_ttl").value(":read_ttl", n(before.ttl)));
        condition = match before.date_expiry {
            Some(old) => condition
                .and(Condition::new("date_expiry = :read_expiry").value(":read_expiry", n(old))),
            None => condition.and(Condition::new("attribute_not_exists(date_expiry)")),
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&before.sid)))
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", n(after.ttl));
        if let Some(expiry) = after.date_expiry {
            sets.push("date_expiry = :expiry".into());
            update = update.expression_attribute_values(":expiry", n(expiry));
        }
        match after.inactive_after() {
            Some(t) => {
                sets.push("inactive_after = :inactive".into());
                update = update.expression_attribute_values(":inactive", n(t));
            }
            None => removes.push("inactive_after"),
        }
        match due {
            Some(due) => {
                sets.push("due_shard = :shard, due_at = :due".into());
                update = update
                    .expression_attribute_values(":shard", s(due_shard(&before.sid)))
                    .expression_attribute_values(":due", n(due));
            }
            None => removes.extend(["due_shard", "due_at"]),
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let update = update
            .update_expression(expression)
            .only_if(condition)
            .build()?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        if after.date_expiry != before.date_expiry || after.ttl != before.ttl {
            items.extend(self.route_times_updates(after)?);
        }
        Ok(items)
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
        let items = self.extend_items(session, seconds, due, now)?;
        match self.transact(items).await {
            Err(StoreError::Cancelled(_)) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    fn extend_items(
        &self,
        session: &Session,
        seconds: i64,
        due: Option<i64>,
        now: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
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
        Ok(items)
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
        self.touch_session_noting(sid, now, check_deadline, cost_milli_yen, None)
    }

    /// [`Store::touch_session`], also noting `live` as the session's live call unless one is
    /// noted already (as `begin_live_call` without `replace`), in the same write.
    pub(super) fn touch_session_noting(
        &self,
        sid: &str,
        now: i64,
        check_deadline: bool,
        cost_milli_yen: u64,
        live: Option<&crate::model::LiveCall>,
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
        let mut sets =
            "SET #status = :in_progress, date_last_interaction = :now, date_updated = :now, \
             inactive_after = :now + #ttl"
                .to_owned();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":cost", n(cost_milli_yen));
        if let Some(live) = live {
            sets.push_str(", #live = if_not_exists(#live, :live)");
            update = update
                .expression_attribute_names("#live", "live_call")
                .expression_attribute_values(":live", super::to_attr(live)?);
        }
        let update = update
            .update_expression(format!("{sets} ADD total_cost_milli_yen :cost"))
            .only_if(condition)
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        assert_item_binds_exactly, condition_of, key_of, offline_store,
    };
    use super::*;
    use crate::model::{LiveCall, sample_session};

    /// A session with everything optional set, so a round trip can lose nothing unseen.
    fn full_session() -> Session {
        Session {
            unique_name: Some("shop-7".into()),
            ttl: 600,
            date_expiry: Some(10_000),
            date_created: 1_000,
            date_last_interaction: Some(1_500),
            call_time_limit: Some(300),
            extension_count: 1,
            total_cost_milli_yen: 12_345,
            max_cost_milli_yen: None,
            current_conference: Some("CF1".into()),
            decider: Some("KP2".into()),
            live_call: Some(LiveCall {
                mode: crate::model::CallMode::Conference,
                limit: 300,
                deadline: Some(2_000),
                warned_for: Some(2_000),
                warning: Some(crate::model::WarningOutcome::Given),
                noticed_for: None,
            }),
            ..sample_session()
        }
    }

    fn text(item: &Item, name: &str) -> String {
        item[name].as_s().unwrap().clone()
    }

    fn number(item: &Item, name: &str) -> i64 {
        item[name].as_n().unwrap().parse().unwrap()
    }

    #[test]
    fn a_session_round_trips_through_its_item() {
        for session in [sample_session(), full_session()] {
            let item = session_item(&session).unwrap();
            assert_eq!(text(&item, "pk"), format!("SESSION#{}", session.sid));
            let back: Session = from_item(item).unwrap();
            assert_eq!(back, session);
        }
    }

    #[test]
    fn a_session_with_a_deadline_is_filed_in_the_due_index_for_it() {
        let session = full_session();
        let item = session_item(&session).unwrap();
        // The earlier of date_expiry (10 000) and the inactivity limit (1 500 + 600).
        assert_eq!(number(&item, "due_at"), 2_100);
        assert_eq!(number(&item, "inactive_after"), 2_100);
        assert_eq!(text(&item, "due_shard"), due_shard(&session.sid));

        let no_deadline = session_item(&sample_session()).unwrap();
        assert!(!no_deadline.contains_key("due_at"));
        assert!(!no_deadline.contains_key("due_shard"));
        assert!(!no_deadline.contains_key("inactive_after"));
    }

    #[test]
    fn creating_writes_each_item_only_if_absent_and_counts_each_proxy_once() {
        let store = offline_store();
        let session = full_session();
        let (items, meaning) = store.create_items(&session, 1_000).unwrap();
        let keys: Vec<(String, String)> = items.iter().map(key_of).collect();
        let proxy = "+815031234567";
        assert_eq!(
            keys,
            [
                (format!("SESSION#{}", session.sid), "SESSION".into()),
                ("UNIQUE#shop-7".into(), "UNIQUE".into()),
                (format!("ROUTE#{proxy}"), "CALLER#+819012345678".into()),
                ("PARTICIPANT#+819012345678".into(), format!("PROXY#{proxy}")),
                (format!("ROUTE#{proxy}"), "CALLER#+818098765432".into()),
                ("PARTICIPANT#+818098765432".into(), format!("PROXY#{proxy}")),
                ("POOL".into(), format!("NUMBER#{proxy}")),
            ]
        );
        assert_eq!(meaning.len(), items.len());
        assert_eq!(
            condition_of(&items[1]),
            "attribute_not_exists(pk) OR attribute_exists(released_at)",
            "a released name can be taken again"
        );
        for (i, item) in items[..6].iter().enumerate() {
            if i != 1 {
                assert_eq!(condition_of(item), "attribute_not_exists(pk)");
            }
            assert_item_binds_exactly(item);
        }
        assert_eq!(condition_of(&items[6]), "attribute_exists(pk)");
        assert_item_binds_exactly(&items[6]);

        // KP1's route leads to KP2, shown KP2's proxy.
        let route: Route = from_item(items[2].put().unwrap().item().clone()).unwrap();
        assert_eq!(
            route,
            Route::of(&session, &session.participants[0], &session.participants[1])
        );
        assert_eq!(route.other_participant_sid, "KP2");
    }

    #[test]
    fn a_cancelled_create_is_explained_by_its_first_failed_condition() {
        let proxy = PhoneNumber::parse("050-3123-4567").unwrap();
        let kp1 = PhoneNumber::parse("090-1234-5678").unwrap();
        let route = CreateConflict::Route {
            proxy: proxy.clone(),
            participant: kp1,
        };
        let meaning = [
            None,
            Some(route.clone()),
            Some(CreateConflict::NumberGone(proxy.clone())),
        ];
        let codes = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            conflict_of(
                &codes(&["None", "ConditionalCheckFailed", "ConditionalCheckFailed"]),
                &meaning
            ),
            route
        );
        assert_eq!(
            conflict_of(
                &codes(&["None", "None", "ConditionalCheckFailed"]),
                &meaning
            ),
            CreateConflict::NumberGone(proxy)
        );
        assert_eq!(
            conflict_of(&codes(&["TransactionConflict", "None", "None"]), &meaning),
            CreateConflict::Contention
        );
    }

    #[test]
    fn closing_releases_the_unique_name_it_holds() {
        let store = offline_store();
        let session = full_session();
        let items = store.close_items(&session, "expired", 50, 90).unwrap();
        let release = items
            .iter()
            .find(|i| key_of(i) == ("UNIQUE#shop-7".into(), "UNIQUE".into()))
            .expect("the unique name is released");
        assert_eq!(condition_of(release), "session_sid = :sid");
        assert!(
            release
                .update()
                .unwrap()
                .update_expression()
                .contains("released_at = :now, expire_at = :expire")
        );
        assert_item_binds_exactly(release);
        let without_name = store
            .close_items(&sample_session(), "expired", 50, 90)
            .unwrap();
        assert!(
            without_name
                .iter()
                .all(|i| !key_of(i).0.starts_with("UNIQUE#"))
        );
    }

    #[test]
    fn closing_releases_only_this_sessions_routes_and_holds_only_while_open() {
        let store = offline_store();
        let session = sample_session();
        let items = store.close_items(&session, "expired", 50, 90).unwrap();
        assert_eq!(condition_of(&items[0]), "#status IN (:open, :in_progress)");
        for item in &items[1..5] {
            assert!(item.delete().is_some());
            assert_eq!(condition_of(item), "session_sid = :sid");
        }
        assert_eq!(
            items.len(),
            6,
            "session, 2 routes, 2 participations, 1 proxy"
        );
        let count = items[5].update().unwrap();
        assert_eq!(count.expression_attribute_values().unwrap()[":d"], n(-1));
        items.iter().for_each(assert_item_binds_exactly);
    }

    #[test]
    fn touching_a_session_checks_its_deadlines_only_when_asked() {
        let store = offline_store();
        let plain = store.touch_session("KC1", 50, false, 7).unwrap();
        assert_eq!(condition_of(&plain), "#status IN (:open, :in_progress)");
        assert_item_binds_exactly(&plain);
        let checked = store.touch_session("KC1", 50, true, 0).unwrap();
        assert_eq!(
            condition_of(&checked),
            "#status IN (:open, :in_progress) \
             AND (attribute_not_exists(date_expiry) OR date_expiry > :now) \
             AND (#ttl = :zero OR attribute_not_exists(inactive_after) OR inactive_after > :now)"
        );
        assert_item_binds_exactly(&checked);
        let late = store.add_cost("KC1", 7).unwrap();
        assert_eq!(condition_of(&late), "attribute_exists(pk)");
        assert_item_binds_exactly(&late);
    }

    #[test]
    fn extending_moves_expiry_and_deadline_and_files_the_session_for_the_given_instant() {
        let store = offline_store();
        let session = full_session();
        let items = store
            .extend_items(&session, 60, Some(1_880), 1_700)
            .unwrap();
        let update = items[0].update().unwrap();
        let values = update.expression_attribute_values().unwrap();
        assert_eq!(values[":old_expiry"], n(10_000));
        assert_eq!(values[":new_expiry"], n(10_060));
        assert_eq!(values[":old_deadline"], n(2_000));
        assert_eq!(values[":new_deadline"], n(2_060));
        assert_eq!(values[":due"], n(1_880), "the caller's instant, as given");
        assert_eq!(values[":shard"], s(due_shard(&session.sid)));
        // Both routes carry the new date_expiry, each only while still this session's.
        assert_eq!(items.len(), 3);
        for route in &items[1..] {
            assert_eq!(condition_of(route), "session_sid = :sid");
            assert_eq!(
                route
                    .update()
                    .unwrap()
                    .expression_attribute_values()
                    .unwrap()[":expiry"],
                n(10_060)
            );
        }
        items.iter().for_each(assert_item_binds_exactly);
    }

    #[test]
    fn extending_without_a_due_instant_leaves_the_due_index_alone() {
        let store = offline_store();
        let session = Session {
            date_expiry: None,
            ..full_session()
        };
        let items = store.extend_items(&session, 60, None, 1_700).unwrap();
        assert_eq!(items.len(), 1, "no date_expiry: the routes keep theirs");
        let update = items[0].update().unwrap();
        assert!(!update.update_expression().contains("due_at"));
        assert!(!update.update_expression().contains("date_expiry"));
        assert_eq!(
            condition_of(&items[0]),
            "#status IN (:open, :in_progress) AND #live.#deadline = :old_deadline"
        );
        assert_item_binds_exactly(&items[0]);
    }
}
