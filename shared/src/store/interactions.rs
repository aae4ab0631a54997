//! Interactions: one item per call leg, moved forward by Twilio's callbacks.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::{
    Condition, OnlyIf, SessionRef, Store, StoreError, TapInsert, call_ref_key, from_item,
    interaction_key, n, s, session_ref, to_attr, to_item, with_key,
};
use crate::model::Interaction;

/// How a call leg's callback changed the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The interaction moved forward; the session's activity was updated too.
    Updated,
    /// The interaction moved forward but the session had already closed.
    SessionClosed,
    /// A duplicate or late callback; nothing changed.
    Stale,
}

impl Store {
    /// Logs the start of an inbound leg and counts it as session activity, in one
    /// transaction that holds only while the session is open and not past its ttl — so a
    /// call racing a close is refused rather than connected into a closed session.
    /// `Ok(false)`: the session is closed or inactive. A repeated webhook for the same
    /// CallSid is accepted without a second log entry.
    pub async fn start_inbound_leg(
        &self,
        leg: &Interaction,
        now: i64,
        retention: i64,
    ) -> Result<bool, StoreError> {
        let items = vec![
            self.touch_session(&leg.session_sid, now, true, 0)?,
            self.put(
                with_key(
                    to_item(leg)?,
                    interaction_key(&leg.session_sid, &leg.call_sid),
                )
                .tap_insert("status_rank", n(leg.status.rank()))
                .tap_insert("expire_at", n(now + retention)),
                Condition::absent(),
            )?,
            self.put(
                session_ref(&leg.session_sid, call_ref_key(&leg.call_sid))?
                    .tap_insert("expire_at", n(now + retention)),
                Condition::absent().or(Condition::of_session(&leg.session_sid)),
            )?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e) if e.failed_at(0) => Ok(false),
            // The same CallSid again: Twilio retried the webhook. Already logged.
            Err(e) if e.failed_at(1) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Applies a status callback to a leg's interaction (creating it on first sight) and the
    /// session's activity, in one request. Late and repeated callbacks change nothing.
    pub async fn record_leg(
        &self,
        leg: &Interaction,
        now: i64,
        retention: i64,
    ) -> Result<Recorded, StoreError> {
        // A leg's cost is added to the session's total by the one write that finishes the leg:
        // the upsert's condition lets a final status through only once.
        let cost = if leg.status.is_final() {
            leg.cost_milli_yen
        } else {
            0
        };
        let upsert = self.upsert_leg(leg, now, retention)?;
        match self
            .transact(vec![
                upsert,
                self.touch_session(&leg.session_sid, now, false, cost)?,
            ])
            .await
        {
            Ok(()) => Ok(Recorded::Updated),
            Err(e) if e.failed_at(0) => Ok(Recorded::Stale),
            Err(e) if e.failed_at(1) => {
                // The session has closed (or is gone): still log the leg, for its cost.
                match self
                    .transact(vec![
                        self.upsert_leg(leg, now, retention)?,
                        self.add_cost(&leg.session_sid, cost)?,
                    ])
                    .await
                {
                    Ok(()) => Ok(Recorded::SessionClosed),
                    Err(e) if e.failed_at(0) => Ok(Recorded::Stale),
                    Err(e) if e.failed_at(1) => Err(StoreError::ConditionFailed),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn upsert_leg(
        &self,
        leg: &Interaction,
        now: i64,
        retention: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        // Fields that identify the leg are written once; progress fields move forward only.
        let mut values: HashMap<String, AttributeValue> = HashMap::new();
        let mut sets = Vec::new();
        let first_only = [
            ("sid", s(leg.sid.clone())),
            ("session_sid", s(leg.session_sid.clone())),
            ("call_sid", s(leg.call_sid.clone())),
            ("direction", to_attr(&leg.direction)?),
            ("twilio_direction", s(leg.twilio_direction.clone())),
            ("from_masked", s(leg.from_masked.clone())),
            ("to_masked", s(leg.to_masked.clone())),
            ("callee_class", to_attr(&leg.callee_class)?),
            ("date_created", n(leg.date_created)),
        ];
        for (name, value) in first_only {
            sets.push(format!("{name} = if_not_exists({name}, :{name})"));
            values.insert(format!(":{name}"), value);
        }
        let mut optional = vec![];
        if let Some(p) = &leg.parent_call_sid {
            optional.push(("parent_call_sid", s(p.clone())));
        }
        if let Some(p) = &leg.from_participant_sid {
            optional.push(("from_participant_sid", s(p.clone())));
        }
        if let Some(p) = &leg.to_participant_sid {
            optional.push(("to_participant_sid", s(p.clone())));
        }
        for (name, value) in optional {
            sets.push(format!("{name} = if_not_exists({name}, :{name})"));
            values.insert(format!(":{name}"), value);
        }
        let progress = [
            ("#status", to_attr(&leg.status)?),
            ("status_rank", n(leg.status.rank())),
            ("#duration", n(leg.duration)),
            ("billed_minutes", n(leg.billed_minutes)),
            ("cost_milli_yen", n(leg.cost_milli_yen)),
            ("date_updated", n(now)),
            ("expire_at", n(now + retention)),
        ];
        for (name, value) in progress {
            let placeholder = format!(":{}", name.trim_start_matches('#'));
            sets.push(format!("{name} = {placeholder}"));
            values.insert(placeholder, value);
        }
        if let Some(ended) = leg.date_ended {
            sets.push("date_ended = :date_ended".into());
            values.insert(":date_ended".into(), n(ended));
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(interaction_key(&leg.session_sid, &leg.call_sid)))
            .update_expression(format!("SET {}", sets.join(", ")))
            .only_if(
                Condition::new("attribute_not_exists(status_rank) OR status_rank < :status_rank")
                    .value(":status_rank", n(leg.status.rank())),
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#duration", "duration");
        // Added one by one: a `set_` would replace the condition's values.
        let update = values
            .into_iter()
            .fold(update, |u, (k, v)| u.expression_attribute_values(k, v))
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    pub async fn get_interaction(
        &self,
        session_sid: &str,
        call_sid: &str,
    ) -> Result<Option<Interaction>, StoreError> {
        self.get(interaction_key(session_sid, call_sid))
            .await?
            .map(from_item)
            .transpose()
    }

    /// A session's call legs, oldest first.
    pub async fn list_interactions(
        &self,
        session_sid: &str,
    ) -> Result<Vec<Interaction>, StoreError> {
        let mut legs: Vec<Interaction> = self
            .query_all(format!("SESSION#{session_sid}"), "CALL#")
            .await?
            .into_iter()
            .map(from_item)
            .collect::<Result<_, _>>()?;
        // Oldest first; a caller's leg before the leg it dialled.
        legs.sort_by_key(|l| {
            (
                l.date_created,
                l.parent_call_sid.is_some(),
                l.call_sid.clone(),
            )
        });
        Ok(legs)
    }

    pub async fn session_of_call(&self, call_sid: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(call_ref_key(call_sid))
            .await?
            .map(from_item::<SessionRef>)
            .transpose()?
            .map(|r| r.session_sid))
    }
}
