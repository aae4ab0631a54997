//! The session's calls: the lease on placing them, and the live call under a time limit
//! (its deadline, warning and extensions).

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::{
    Condition, OnlyIf, Store, StoreError, due_shard, must_write, n, s, session_key, to_attr,
    written,
};
use crate::model::{CallMode, LiveCall, Session};

impl Store {
    /// Takes a short lease on the session's outgoing calls, so two V字発信 requests that
    /// arrive together cannot both ring the participants. `Ok(false)`: someone holds it, or
    /// the session is not open.
    pub async fn lock_calls(&self, sid: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression("SET call_lock = :until")
            .only_if(
                Condition::session_open().and(
                    Condition::new("attribute_not_exists(call_lock) OR call_lock < :now")
                        .value(":now", n(now)),
                ),
            )
            .expression_attribute_values(":until", n(until))
            .send()
            .await;
        written(r)
    }

    pub async fn unlock_calls(&self, sid: &str) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression("REMOVE call_lock")
            .only_if(Condition::exists())
            .send()
            .await;
        written(r).map(|_| ())
    }

    /// Notes the call a session is about to have (mode and length), before it connects.
    pub async fn begin_live_call(
        &self,
        sid: &str,
        mode: CallMode,
        limit: u64,
        replace: bool,
    ) -> Result<(), StoreError> {
        let live = to_attr(&LiveCall {
            mode,
            limit,
            deadline: None,
            warned_for: None,
            warning: None,
            noticed_for: None,
        })?;
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression(if replace {
                "SET #live = :live"
            } else {
                "SET #live = if_not_exists(#live, :live)"
            })
            .only_if(Condition::session_open())
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_values(":live", live)
            .send()
            .await;
        must_write(r)
    }

    /// Forgets a live call noted by [`Store::begin_live_call`] whose calls could not be
    /// placed: only while it is still that call (`mode`, `limit`) and not connected (no
    /// deadline), so a call that did connect, or one noted since, is left alone.
    /// `Ok(false)` when it was not there to forget.
    pub async fn abandon_live_call(
        &self,
        sid: &str,
        mode: CallMode,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression("REMOVE #live")
            .only_if(Condition::live_call_unconnected(mode, limit))
            .send()
            .await;
        written(r)
    }

    /// Both parties are connected: the live call's deadline starts to count, and the sweep
    /// is woken for the warning. Repeated callbacks keep the first deadline.
    pub async fn connect_live_call(
        &self,
        sid: &str,
        deadline: i64,
        due: i64,
    ) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression("SET #live.#deadline = :deadline, due_shard = :shard, due_at = :due")
            .only_if(
                Condition::session_open().and(
                    Condition::new(
                        "attribute_exists(#live) AND attribute_not_exists(#live.#deadline)",
                    )
                    .name("#live", "live_call")
                    .name("#deadline", "deadline"),
                ),
            )
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_names("#deadline", "deadline")
            .expression_attribute_values(":deadline", n(deadline))
            .expression_attribute_values(":shard", s(due_shard(sid)))
            .expression_attribute_values(":due", n(due))
            .send()
            .await;
        written(r)
    }

    /// The live call is over: forget it, and file the session for its own deadline.
    pub async fn clear_live_call(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .only_if(Condition::exists())
            .expression_attribute_names("#live", "live_call");
        update = match due {
            Some(t) => update
                .update_expression("REMOVE #live SET due_shard = :shard, due_at = :due")
                .expression_attribute_values(":shard", s(due_shard(sid)))
                .expression_attribute_values(":due", n(t)),
            None => update.update_expression("REMOVE #live, due_shard, due_at"),
        };
        written(update.send().await).map(|_| ())
    }

    /// Claims the short notice before `deadline`: `true` once, and only while that is still
    /// the live call's deadline (a timer delivered twice, or set for a moved deadline, finds
    /// nothing to do).
    pub async fn claim_notice(&self, sid: &str, deadline: i64) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression("SET #live.#noticed_for = :deadline")
            .only_if(
                Condition::session_open()
                    .and(Condition::live_deadline_is(":deadline", deadline))
                    .and(
                        Condition::new(
                            "attribute_not_exists(#live.#noticed_for) OR #live.#noticed_for <> :deadline",
                        )
                        .name("#live", "live_call")
                        .name("#noticed_for", "noticed_for")
                        .value(":deadline", n(deadline)),
                    ),
            )
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_names("#noticed_for", "noticed_for")
            .expression_attribute_values(":deadline", n(deadline))
            .send()
            .await;
        written(r)
    }

    /// Claims the warning for `deadline` (I4): only one sweep, however many overlap, gets
    /// `true`, and only while that is still the live call's deadline.
    pub async fn claim_warning(
        &self,
        sid: &str,
        deadline: i64,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression("SET #live.#warned_for = :deadline, #live.#warning = :outcome")
            .only_if(
                Condition::session_open()
                    .and(Condition::live_deadline_is(":deadline", deadline))
                    .and(
                        Condition::new(
                            "attribute_not_exists(#live.#warned_for) OR #live.#warned_for <> :deadline",
                        )
                        .name("#live", "live_call")
                        .name("#warned_for", "warned_for")
                        .value(":deadline", n(deadline)),
                    ),
            )
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_names("#warned_for", "warned_for")
            .expression_attribute_names("#warning", "warning")
            .expression_attribute_values(":deadline", n(deadline))
            .expression_attribute_values(":outcome", s(outcome))
            .send()
            .await;
        written(r)
    }

    /// Moves the live call's deadline from `from` to `to` and counts the extension, only
    /// while the session is open, the deadline is still `from` and extensions remain. When
    /// the session's own `date_expiry` would cut the call short, it moves too — on the
    /// routes as well, in the same transaction. `ConditionFailed` when any of that no longer
    /// holds (a concurrent close wins).
    pub async fn extend_live_call(
        &self,
        session: &Session,
        from: i64,
        to: i64,
        due: i64,
        max_count: u32,
        now: i64,
    ) -> Result<(), StoreError> {
        let items = self.extend_live_call_items(session, from, to, due, max_count, now)?;
        match self.transact(items).await {
            Err(StoreError::Cancelled(_)) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    fn extend_live_call_items(
        &self,
        session: &Session,
        from: i64,
        to: i64,
        due: i64,
        max_count: u32,
        now: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let new_expiry = session.date_expiry.filter(|e| *e < to).map(|_| to);
        let mut expression =
            "SET #live.#deadline = :to, extension_count = extension_count + :one, \
             date_updated = :now, due_shard = :shard, due_at = :due"
                .to_owned();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.sid)))
            .only_if(
                Condition::session_open()
                    .and(Condition::live_deadline_is(":from", from))
                    .and(Condition::new("extension_count < :max").value(":max", n(max_count))),
            )
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_names("#deadline", "deadline")
            .expression_attribute_values(":to", n(to))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":shard", s(due_shard(&session.sid)))
            .expression_attribute_values(":due", n(due));
        if let Some(expiry) = new_expiry {
            expression.push_str(", date_expiry = :expiry");
            update = update.expression_attribute_values(":expiry", n(expiry));
        }
        let mut items = vec![
            TransactWriteItem::builder()
                .update(update.update_expression(expression).build()?)
                .build(),
        ];
        if let Some(expiry) = new_expiry {
            items.extend(self.route_expiry_updates(session, expiry)?);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_item_binds_exactly, condition_of, offline_store};
    use super::*;
    use crate::model::sample_session;

    #[test]
    fn an_extension_holds_while_open_at_that_deadline_with_extensions_left() {
        let store = offline_store();
        let session = sample_session();
        let items = store
            .extend_live_call_items(&session, 1_000, 1_300, 1_120, 1, 900)
            .unwrap();
        assert_eq!(items.len(), 1, "no date_expiry: the routes are not touched");
        assert_eq!(
            condition_of(&items[0]),
            "#status IN (:open, :in_progress) AND #live.#deadline = :from AND extension_count < :max"
        );
        let values = items[0]
            .update()
            .unwrap()
            .expression_attribute_values()
            .unwrap();
        assert_eq!((&values[":from"], &values[":to"]), (&n(1_000), &n(1_300)));
        assert_eq!(values[":max"], n(1));
        assert_item_binds_exactly(&items[0]);
    }

    #[test]
    fn date_expiry_moves_with_the_call_only_when_it_would_cut_it_short() {
        let store = offline_store();
        let cut_short = Session {
            date_expiry: Some(1_200),
            ..sample_session()
        };
        let items = store
            .extend_live_call_items(&cut_short, 1_000, 1_300, 1_120, 1, 900)
            .unwrap();
        let update = items[0].update().unwrap();
        assert!(update.update_expression().contains("date_expiry = :expiry"));
        assert_eq!(
            update.expression_attribute_values().unwrap()[":expiry"],
            n(1_300)
        );
        assert_eq!(items.len(), 3, "and both routes' copies");
        items.iter().for_each(assert_item_binds_exactly);

        let later = Session {
            date_expiry: Some(5_000),
            ..sample_session()
        };
        let items = store
            .extend_live_call_items(&later, 1_000, 1_300, 1_120, 1, 900)
            .unwrap();
        assert_eq!(items.len(), 1);
        assert!(
            !items[0]
                .update()
                .unwrap()
                .update_expression()
                .contains("date_expiry")
        );
        assert_item_binds_exactly(&items[0]);
    }
}
