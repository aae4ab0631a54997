//! Interactions: one item per call leg, moved forward by Twilio's callbacks.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::{
    Condition, Item, OnlyIf, SessionRef, Store, StoreError, TapInsert, call_ref_key, from_item,
    interaction_key, n, s, session_ref, to_attr, to_item, with_key, written,
};
use crate::model::{Interaction, LiveCall, TwilioDirection};
use crate::phone::PhoneNumber;

/// A finished recording, as its status callback describes it (Tsunagu keeps these, never
/// the media: the audio stays in the Twilio account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    /// `RE…`.
    pub sid: String,
    /// Seconds.
    pub duration: u64,
    /// 2 for a dual-channel Dial recording, 1 for a conference's.
    pub channels: u32,
    /// The recording's media URL in the Twilio account.
    pub url: String,
}

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

/// A leg's item as first logged: the leg, its progress rank (what callbacks compare) and
/// when the table may forget it.
fn interaction_item(leg: &Interaction, now: i64, retention: i64) -> Result<Item, StoreError> {
    Ok(with_key(
        to_item(leg)?,
        interaction_key(&leg.session_sid, &leg.call_sid),
    )
    .tap_insert("status_rank", n(leg.status.rank()))
    .tap_insert("expire_at", n(now + retention)))
}

/// Oldest first; a caller's leg before the leg it dialled.
fn oldest_first(legs: &mut [Interaction]) {
    // Legs of one call often start in the same second: the caller's inbound leg first, then
    // the legs it led to, so the order is stable across reads.
    legs.sort_by_key(|l| {
        (
            l.date_created,
            l.twilio_direction != crate::model::TwilioDirection::Inbound,
            l.parent_call_sid.is_some(),
            l.call_sid.clone(),
        )
    });
}

impl Store {
    /// Logs the start of an inbound leg and counts it as session activity, in one
    /// transaction that holds only while the session is open and not past its ttl — so a
    /// call racing a close is refused rather than connected into a closed session — and
    /// notes the call on its route (proxy, caller), restarting the route's copy of the ttl.
    /// Used where a call needs more than its route: a timed call, which also notes its
    /// `live` call here (unless one is noted), or a route whose copy of the ttl had run out
    /// while the session's had not.
    /// `Ok(false)`: the session is closed or inactive. A repeated webhook for the same
    /// CallSid is accepted without a second log entry.
    pub async fn start_inbound_leg(
        &self,
        leg: &Interaction,
        route: (&PhoneNumber, &PhoneNumber),
        live: Option<&LiveCall>,
        now: i64,
        retention: i64,
    ) -> Result<bool, StoreError> {
        let items = self.start_inbound_leg_items(leg, route, live, now, retention)?;
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e) if e.failed_at(0) || e.failed_at(3) => Ok(false),
            // The same CallSid again: Twilio retried the webhook. Already logged.
            Err(e) if e.failed_at(1) => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn start_inbound_leg_items(
        &self,
        leg: &Interaction,
        (proxy, caller): (&PhoneNumber, &PhoneNumber),
        live: Option<&LiveCall>,
        now: i64,
        retention: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        Ok(vec![
            self.touch_session_noting(&leg.session_sid, now, true, 0, live)?,
            self.put(interaction_item(leg, now, retention)?, Condition::absent())?,
            self.put(
                session_ref(&leg.session_sid, call_ref_key(&leg.call_sid))?
                    .tap_insert("expire_at", n(now + retention)),
                Condition::absent().or(Condition::of_session(&leg.session_sid)),
            )?,
            self.note_call_on_route(proxy, caller, &leg.session_sid, &leg.call_sid, now)?,
        ])
    }

    /// The call reference of a dialled leg's parent (the caller's own leg, which Twilio's
    /// callbacks do not name the session of), written with the dialled leg's callbacks:
    /// created on the first, with when it was first seen (the caller's leg's start, as near
    /// as Tsunagu knows it), and only ever for this session.
    fn parent_ref(
        &self,
        session_sid: &str,
        parent_call_sid: &str,
        now: i64,
        retention: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(call_ref_key(parent_call_sid)))
            .update_expression(
                "SET session_sid = :sid, date_created = if_not_exists(date_created, :now), \
                 expire_at = :expire",
            )
            .only_if(Condition::absent().or(Condition::of_session(session_sid)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expire", n(now + retention))
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The items that log a leg's callback: the leg, the session's activity (or, once it
    /// has closed, only its cost), and for a leg a caller's `<Dial>` rang, its parent's call
    /// reference.
    fn record_items(
        &self,
        leg: &Interaction,
        session_open: bool,
        cost: u64,
        now: i64,
        retention: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = vec![
            self.upsert_leg(leg, now, retention)?,
            if session_open {
                self.touch_session(&leg.session_sid, now, false, cost)?
            } else {
                self.add_cost(&leg.session_sid, cost)?
            },
        ];
        if let (TwilioDirection::OutboundDial, Some(parent)) =
            (leg.twilio_direction, &leg.parent_call_sid)
        {
            items.push(self.parent_ref(&leg.session_sid, parent, now, retention)?);
        }
        Ok(items)
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
        match self
            .transact(self.record_items(leg, true, cost, now, retention)?)
            .await
        {
            Ok(()) => Ok(Recorded::Updated),
            Err(e) if e.failed_at(0) => Ok(Recorded::Stale),
            Err(e) if e.failed_at(1) => {
                // The session has closed (or is gone): still log the leg, for its cost.
                match self
                    .transact(self.record_items(leg, false, cost, now, retention)?)
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
            (
                "twilio_direction",
                s(leg.twilio_direction.as_str().to_owned()),
            ),
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
            .filter(is_leg)
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
            .filter(is_leg)
            .map(from_item)
            .collect::<Result<_, _>>()?;
        oldest_first(&mut legs);
        Ok(legs)
    }

    /// Stores a finished recording on its call's interaction, once: the first callback for
    /// the leg writes it, a repeated one (Twilio retrying) finds it there and changes
    /// nothing (`Ok(false)`). Twilio does not order a recording's callback after its call's
    /// final status callback, and a plain masked call's caller leg is first written by that
    /// final callback: a recording that comes first starts the item with the recording
    /// alone (no `status`: not yet a leg, which listings and events pass over), and the
    /// leg's own callback completes it (`upsert_leg` writes into an item without a rank).
    pub async fn store_recording(
        &self,
        session_sid: &str,
        call_sid: &str,
        recording: &RecordingInfo,
        expire_at: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(interaction_key(session_sid, call_sid)))
            .update_expression(
                "SET recording_sid = :sid, recording_duration = :duration, \
                 recording_channels = :channels, recording_url = :url, \
                 session_sid = if_not_exists(session_sid, :session), \
                 call_sid = if_not_exists(call_sid, :call), \
                 expire_at = if_not_exists(expire_at, :expire)",
            )
            .only_if(Condition::new("attribute_not_exists(recording_sid)"))
            .expression_attribute_values(":sid", s(recording.sid.clone()))
            .expression_attribute_values(":duration", n(recording.duration))
            .expression_attribute_values(":channels", n(recording.channels))
            .expression_attribute_values(":url", s(recording.url.clone()))
            .expression_attribute_values(":session", s(session_sid.to_owned()))
            .expression_attribute_values(":call", s(call_sid.to_owned()))
            .expression_attribute_values(":expire", n(expire_at))
            .send()
            .await;
        written(result)
    }

    /// The recording stored on a call's interaction, if any.
    pub async fn get_recording(
        &self,
        session_sid: &str,
        call_sid: &str,
    ) -> Result<Option<RecordingInfo>, StoreError> {
        let Some(item) = self.get(interaction_key(session_sid, call_sid)).await? else {
            return Ok(None);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Ok(text("recording_sid").map(|sid| RecordingInfo {
            sid,
            duration: number("recording_duration").unwrap_or(0),
            channels: number("recording_channels").unwrap_or(1) as u32,
            url: text("recording_url").unwrap_or_default(),
        }))
    }

    pub async fn session_of_call(&self, call_sid: &str) -> Result<Option<String>, StoreError> {
        Ok(self.call_ref(call_sid).await?.map(|r| r.session_sid))
    }

    /// The call reference of a call whose callbacks do not name its session: the session
    /// and, when known, when the call was first seen.
    pub async fn call_ref(&self, call_sid: &str) -> Result<Option<SessionRef>, StoreError> {
        self.get(call_ref_key(call_sid))
            .await?
            .map(from_item::<SessionRef>)
            .transpose()
    }
}

/// Whether an interaction item is a leg yet: a recording whose callback came before its
/// call's final status callback starts the item alone ([`Store::store_recording`]).
fn is_leg(item: &super::Item) -> bool {
    item.contains_key("status")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_item_binds_exactly, condition_of, offline_store};
    use super::*;
    use crate::model::{CallStatus, TwilioDirection};
    use crate::phone::NumberClass;
    use crate::pricing::Direction;

    fn leg(call_sid: &str, status: CallStatus) -> Interaction {
        Interaction {
            sid: "KI1".into(),
            session_sid: "KC1".into(),
            call_sid: call_sid.into(),
            parent_call_sid: Some("CA0".into()),
            direction: Direction::Outbound,
            twilio_direction: TwilioDirection::OutboundDial,
            from_masked: "+8150****4567".into(),
            to_masked: "+8180****5432".into(),
            from_participant_sid: Some("KP1".into()),
            to_participant_sid: Some("KP2".into()),
            callee_class: NumberClass::Mobile,
            status,
            duration: 61,
            billed_minutes: 2,
            cost_milli_yen: 32_400,
            date_created: 100,
            date_updated: 200,
            date_ended: Some(200),
            recording: Default::default(),
        }
    }

    #[test]
    fn a_logged_leg_round_trips_through_its_item() {
        let leg = leg("CA1", CallStatus::Ringing);
        let item = interaction_item(&leg, 200, 86_400).unwrap();
        assert_eq!(item["sk"].as_s().unwrap(), "CALL#CA1");
        assert_eq!(item["status_rank"], n(CallStatus::Ringing.rank()));
        assert_eq!(item["expire_at"], n(86_600));
        let back: Interaction = from_item(item).unwrap();
        assert_eq!(back, leg);
    }

    #[test]
    fn a_stored_recording_is_read_back_with_its_leg() {
        let leg = leg("CA1", CallStatus::Completed);
        let mut item = interaction_item(&leg, 200, 86_400).unwrap();
        item.insert("recording_sid".into(), s("RE1"));
        item.insert("recording_duration".into(), n(58));
        item.insert("recording_channels".into(), n(2));
        item.insert("recording_url".into(), s("https://api.twilio.com/RE1"));
        let back: Interaction = from_item(item).unwrap();
        assert_eq!(
            back.recording,
            crate::model::RecordingRef {
                recording_sid: Some("RE1".into()),
                recording_duration: Some(58),
                recording_channels: Some(2),
                recording_url: Some("https://api.twilio.com/RE1".into()),
            }
        );
        assert!(is_leg(&interaction_item(&leg, 200, 86_400).unwrap()));
    }

    /// The attributes a first upsert leaves on a new item: each `SET` clause's attribute
    /// and the value bound to its placeholder (`if_not_exists` takes it on a new item).
    fn first_write(update: &aws_sdk_dynamodb::types::Update) -> Item {
        let names = update.expression_attribute_names().unwrap();
        let values = update.expression_attribute_values().unwrap();
        let sets = update.update_expression().strip_prefix("SET ").unwrap();
        let mut clauses: Vec<String> = Vec::new();
        for part in sets.split(", ") {
            match clauses.last_mut() {
                Some(open) if open.matches('(').count() > open.matches(')').count() => {
                    open.push_str(", ");
                    open.push_str(part);
                }
                _ => clauses.push(part.to_owned()),
            }
        }
        let mut item = update.key().clone();
        for clause in clauses {
            let (lhs, rhs) = clause.split_once(" = ").unwrap();
            let attribute = names.get(lhs).cloned().unwrap_or_else(|| lhs.to_owned());
            let placeholder = &rhs[rhs.rfind(':').unwrap()..].trim_end_matches(')');
            item.insert(attribute, values[*placeholder].clone());
        }
        item
    }

    #[test]
    fn a_leg_first_seen_in_a_callback_is_written_whole() {
        let store = offline_store();
        for leg in [
            leg("CA1", CallStatus::Completed),
            Interaction {
                parent_call_sid: None,
                from_participant_sid: None,
                to_participant_sid: None,
                date_ended: None,
                ..leg("CA2", CallStatus::InProgress)
            },
        ] {
            let upsert = store.upsert_leg(&leg, 200, 86_400).unwrap();
            assert_item_binds_exactly(&upsert);
            let back: Interaction = from_item(first_write(upsert.update().unwrap())).unwrap();
            assert_eq!(back, leg);
        }
    }

    #[test]
    fn a_callback_moves_a_leg_forward_only() {
        let store = offline_store();
        let upsert = store
            .upsert_leg(&leg("CA1", CallStatus::Ringing), 200, 86_400)
            .unwrap();
        assert_eq!(
            condition_of(&upsert),
            "attribute_not_exists(status_rank) OR status_rank < :status_rank"
        );
        let values = upsert
            .update()
            .unwrap()
            .expression_attribute_values()
            .unwrap();
        assert_eq!(values[":status_rank"], n(CallStatus::Ringing.rank()));
    }

    #[test]
    fn an_inbound_leg_is_logged_once_and_its_call_ref_stays_with_its_session() {
        let store = offline_store();
        let (proxy, caller) = (
            PhoneNumber::parse("050-3123-4567").unwrap(),
            PhoneNumber::parse("090-1234-5678").unwrap(),
        );
        let items = store
            .start_inbound_leg_items(
                &leg("CA1", CallStatus::Ringing),
                (&proxy, &caller),
                None,
                200,
                86_400,
            )
            .unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(
            condition_of(&items[3]),
            "session_sid = :sid",
            "the call is noted on the route, while it is this session's"
        );
        assert!(
            condition_of(&items[0]).contains("date_expiry > :now"),
            "deadlines checked"
        );
        assert_eq!(condition_of(&items[1]), "attribute_not_exists(pk)");
        assert_eq!(
            condition_of(&items[2]),
            "attribute_not_exists(pk) OR session_sid = :sid"
        );
        let call_ref = items[2].put().unwrap();
        assert_eq!(
            call_ref.expression_attribute_values().unwrap()[":sid"],
            s("KC1")
        );
        assert_eq!(call_ref.item()["session_sid"], s("KC1"));
        assert_eq!(call_ref.item()["expire_at"], n(86_600));
        items.iter().for_each(assert_item_binds_exactly);
    }

    #[test]
    fn a_timed_call_notes_its_live_call_in_the_write_that_logs_the_callers_leg() {
        let store = offline_store();
        let (proxy, caller) = (
            PhoneNumber::parse("050-3123-4567").unwrap(),
            PhoneNumber::parse("090-1234-5678").unwrap(),
        );
        let live = LiveCall {
            mode: crate::model::CallMode::Conference,
            limit: 600,
            deadline: None,
            warned_for: None,
            warning: None,
            noticed_for: None,
        };
        let items = store
            .start_inbound_leg_items(
                &leg("CA1", CallStatus::InProgress),
                (&proxy, &caller),
                Some(&live),
                200,
                86_400,
            )
            .unwrap();
        assert_eq!(
            items.len(),
            4,
            "no fifth request: the session's own write notes it"
        );
        let session = items[0].update().unwrap();
        assert!(
            session
                .update_expression()
                .contains("#live = if_not_exists(#live, :live)"),
            "{}",
            session.update_expression()
        );
        assert!(condition_of(&items[0]).contains("date_expiry > :now"));
        items.iter().for_each(assert_item_binds_exactly);
    }

    #[test]
    fn a_dialled_legs_callback_writes_its_callers_call_reference_in_the_same_request() {
        let store = offline_store();
        let items = store
            .record_items(&leg("CA1", CallStatus::Ringing), true, 0, 200, 86_400)
            .unwrap();
        assert_eq!(items.len(), 3);
        let parent = items[2].update().unwrap();
        assert_eq!(parent.key()["pk"], s("CALL#CA0"));
        assert_eq!(
            condition_of(&items[2]),
            "attribute_not_exists(pk) OR session_sid = :sid"
        );
        assert!(
            parent
                .update_expression()
                .contains("date_created = if_not_exists(date_created, :now)")
        );
        items.iter().for_each(assert_item_binds_exactly);
        // A leg Tsunagu placed itself has no caller to refer to.
        let placed = Interaction {
            twilio_direction: TwilioDirection::OutboundApi,
            parent_call_sid: None,
            ..leg("CA2", CallStatus::Ringing)
        };
        assert_eq!(
            store
                .record_items(&placed, true, 0, 200, 86_400)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn legs_list_oldest_first_a_callers_leg_before_the_leg_it_dialled() {
        let parent = Interaction {
            parent_call_sid: None,
            ..leg("CA9", CallStatus::Completed)
        };
        let child = leg("CA1", CallStatus::Completed);
        let later = Interaction {
            date_created: 300,
            parent_call_sid: None,
            ..leg("CA0", CallStatus::Completed)
        };
        let mut legs = vec![later.clone(), child.clone(), parent.clone()];
        oldest_first(&mut legs);
        let order: Vec<&str> = legs.iter().map(|l| l.call_sid.as_str()).collect();
        assert_eq!(order, ["CA9", "CA1", "CA0"]);
    }
}
