//! Conferences a session's calls meet in, as Twilio's callbacks describe them.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::{
    Condition, Item, OnlyIf, Store, StoreError, conference_key, is_condition_failure, n, s,
    session_key, written,
};

const LEG_PREFIX: &str = "leg_";

/// A conference the session's calls met in, as its callbacks described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceRecord {
    pub conference_sid: String,
    pub room: String,
    pub ended_at: Option<i64>,
    pub ended_reason: Option<String>,
    /// Participant SID (the conference participant label) → that leg's CallSid.
    pub legs: std::collections::BTreeMap<String, String>,
}

impl Store {
    /// Records a conference's start or a participant joining: the ConferenceSid on the
    /// session and, per participant label, the leg's CallSid. Twilio's callbacks come twice
    /// and out of order: every write here is idempotent, and a conference that has ended is
    /// never brought back. `Ok(false)` when the callback was stale.
    pub async fn record_conference(
        &self,
        session_sid: &str,
        conference_sid: &str,
        room: &str,
        leg: Option<(&str, &str)>,
        now: i64,
        retention: i64,
    ) -> Result<bool, StoreError> {
        let items =
            self.record_conference_items(session_sid, conference_sid, room, leg, now, retention)?;
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e) if e.failed_at(0) || e.failed_at(1) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn record_conference_items(
        &self,
        session_sid: &str,
        conference_sid: &str,
        room: &str,
        leg: Option<(&str, &str)>,
        now: i64,
        retention: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(conference_key(session_sid, conference_sid)))
            .only_if(Condition::conference_not_ended())
            .expression_attribute_values(":cf", s(conference_sid))
            .expression_attribute_values(":session", s(session_sid))
            .expression_attribute_values(":room", s(room))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expire", n(now + retention));
        let mut expression = "SET conference_sid = :cf, session_sid = :session, room = :room, \
             date_created = if_not_exists(date_created, :now), expire_at = :expire"
            .to_owned();
        if let Some((label, call_sid)) = leg {
            expression.push_str(", #leg = :call");
            update = update
                .expression_attribute_names("#leg", format!("{LEG_PREFIX}{label}"))
                .expression_attribute_values(":call", s(call_sid));
        }
        let update = update.update_expression(expression).build()?;
        let session = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(session_sid)))
            .update_expression("SET current_conference = :cf")
            .only_if(Condition::exists())
            .expression_attribute_values(":cf", s(conference_sid))
            .build()?;
        Ok(vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().update(session).build(),
        ])
    }

    /// Marks a conference ended (once) and clears it from the session if it is current.
    pub async fn end_conference(
        &self,
        session_sid: &str,
        conference_sid: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let ended = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(conference_key(session_sid, conference_sid)))
            .update_expression("SET ended_at = :now, ended_reason = :reason, conference_sid = :cf, session_sid = :session")
            .only_if(Condition::conference_not_ended())
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":cf", s(conference_sid))
            .expression_attribute_values(":session", s(session_sid))
            .send()
            .await;
        match ended {
            Ok(_) => {}
            Err(e) if is_condition_failure(&e) => {}
            Err(e) => return Err(StoreError::backend(e)),
        }
        let cleared = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(session_sid)))
            .update_expression("REMOVE current_conference")
            .only_if(Condition::new("current_conference = :cf").value(":cf", s(conference_sid)))
            .send()
            .await;
        written(cleared).map(|_| ())
    }

    pub async fn get_conference(
        &self,
        session_sid: &str,
        conference_sid: &str,
    ) -> Result<Option<ConferenceRecord>, StoreError> {
        Ok(self
            .get(conference_key(session_sid, conference_sid))
            .await?
            .map(|item| ConferenceRecord::from_item(conference_sid, &item)))
    }
}

impl ConferenceRecord {
    /// Read by hand, not by serde: the legs are one attribute each, `leg_{label}`, so that
    /// a participant joining is one SET that never overwrites another's.
    fn from_item(conference_sid: &str, item: &Item) -> Self {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
        };
        let legs = item
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix(LEG_PREFIX)?.to_owned(),
                    v.as_s().ok()?.clone(),
                ))
            })
            .collect();
        ConferenceRecord {
            conference_sid: conference_sid.to_owned(),
            room: text("room").unwrap_or_default(),
            ended_at: number("ended_at"),
            ended_reason: text("ended_reason"),
            legs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_item_binds_exactly, condition_of, offline_store};
    use super::*;

    #[test]
    fn a_leg_recorded_under_its_label_is_read_back_under_it() {
        let store = offline_store();
        let items = store
            .record_conference_items("KC1", "CF1", "room-KC1", Some(("KP1", "CA1")), 100, 60)
            .unwrap();
        let update = items[0].update().unwrap();
        assert_eq!(condition_of(&items[0]), "attribute_not_exists(ended_at)");
        let attribute = &update.expression_attribute_names().unwrap()["#leg"];
        let values = update.expression_attribute_values().unwrap();
        assert_eq!(values[":call"], s("CA1"));
        assert_eq!(condition_of(&items[1]), "attribute_exists(pk)");
        items.iter().for_each(assert_item_binds_exactly);

        // The item as those SETs leave it, once the conference has ended too.
        let mut item = conference_key("KC1", "CF1");
        item.insert("conference_sid".into(), s("CF1"));
        item.insert("room".into(), values[":room"].clone());
        item.insert(attribute.clone(), values[":call"].clone());
        item.insert("leg_KP2".into(), s("CA2"));
        item.insert("ended_at".into(), n(160));
        item.insert("ended_reason".into(), s("completed"));
        assert_eq!(
            ConferenceRecord::from_item("CF1", &item),
            ConferenceRecord {
                conference_sid: "CF1".into(),
                room: "room-KC1".into(),
                ended_at: Some(160),
                ended_reason: Some("completed".into()),
                legs: [("KP1".into(), "CA1".into()), ("KP2".into(), "CA2".into())].into(),
            }
        );
    }

    #[test]
    fn a_conference_without_legs_or_end_reads_as_such() {
        let store = offline_store();
        let items = store
            .record_conference_items("KC1", "CF1", "room-KC1", None, 100, 60)
            .unwrap();
        assert!(
            items[0]
                .update()
                .unwrap()
                .expression_attribute_names()
                .is_none_or(|names| !names.contains_key("#leg"))
        );
        items.iter().for_each(assert_item_binds_exactly);
        let mut item = conference_key("KC1", "CF1");
        item.insert("room".into(), s("room-KC1"));
        let record = ConferenceRecord::from_item("CF1", &item);
        assert!(record.legs.is_empty());
        assert_eq!((record.ended_at, record.ended_reason), (None, None));
    }
}
