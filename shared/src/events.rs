//! The events a platform receives at `EVENT_CALLBACK_URL`, derived from the table's changes.
//!
//! Every state change Tsunagu makes is a write to the table, and the table's DynamoDB stream
//! carries each write's old and new image. [`from_change`] turns one such change into the
//! events it means, with no I/O: `publish-events` calls it for each stream record and
//! queues what it returns (docs/DESIGN.md, Events). Ids are derived from the stream record,
//! so a record read twice (a retried batch) gives the same events with the same ids, and the
//! queue's de-duplication and the platform's see them as one.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clock;
use crate::model::{Interaction, Session, SessionStatus, WarningOutcome};

/// Every event type, as the README's table lists them.
pub const TYPES: &[&str] = &[
    "session.created",
    "session.updated",
    "session.closed",
    "participant.added",
    "participant.removed",
    "interaction.started",
    "interaction.completed",
    "call.warning",
    "call.extended",
    "recording.completed",
];

/// What the platform receives: `{"id":"EV…","type":…,"created":…,"session_sid":…,"data":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339, from the state's own timestamps where it has one for this change.
    pub created: String,
    pub session_sid: String,
    pub data: Value,
}

/// What a stream record says happened to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

impl ChangeKind {
    /// The record's `eventName`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "INSERT" => Some(Self::Insert),
            "MODIFY" => Some(Self::Modify),
            "REMOVE" => Some(Self::Remove),
            _ => None,
        }
    }
}

/// One item's change: the stream record's id, and the item's images as plain JSON (the
/// DynamoDB attribute values already unwrapped).
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub record_id: &'a str,
    pub kind: ChangeKind,
    pub old: Option<&'a Value>,
    pub new: Option<&'a Value>,
    /// The record's `ApproximateCreationDateTime`, for events whose state has no time.
    pub approximate_created: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("stream record {record_id}: item has an unexpected shape: {why}")]
pub struct ShapeError {
    pub record_id: String,
    pub why: String,
}

/// `EV` and 32 hex digits of a hash of the record's id, the event's type and its place among
/// the record's events: the same for every read of the same record.
pub fn event_id(record_id: &str, kind: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{record_id}\n{kind}\n{index}").as_bytes());
    format!("EV{}", &hex::encode(digest)[..32])
}

/// The events one change means, in the order the platform should see them.
pub fn from_change(change: &Change) -> Result<Vec<Event>, ShapeError> {
    let image = change.new.or(change.old);
    let sk = image
        .and_then(|i| i["sk"].as_str())
        .unwrap_or_default()
        .to_owned();
    // Names only: the values may hold phone numbers.
    let names = |image: Option<&Value>| {
        image
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    let shape = |why: String| ShapeError {
        record_id: change.record_id.to_owned(),
        why: format!(
            "{sk}: {why} (old: {}; new: {})",
            names(change.old),
            names(change.new)
        ),
    };
    let pending: Vec<Pending> = if change.kind == ChangeKind::Remove {
        // Items leave the table only through its TTL, long after the session closed.
        Vec::new()
    } else if sk == "SESSION" {
        let old = change
            .old
            .map(|v| Session::deserialize(v).map_err(|e| shape(e.to_string())))
            .transpose()?;
        let new = change
            .new
            .map(|v| Session::deserialize(v).map_err(|e| shape(e.to_string())))
            .transpose()?;
        match new {
            Some(new) => session_events(old.as_ref(), &new, change.approximate_created),
            None => Vec::new(),
        }
    } else if sk.starts_with("CALL#") {
        // A recording whose callback came before its call's final status callback starts the
        // item alone, without a `status` (store::store_recording): not a leg yet, so no
        // event until the leg's own write completes it.
        let is_leg = |v: &&Value| v.get("status").is_some();
        let old = change
            .old
            .filter(is_leg)
            .map(|v| Interaction::deserialize(v).map_err(|e| shape(e.to_string())))
            .transpose()?;
        match change.new.filter(is_leg) {
            Some(raw) => {
                let new = Interaction::deserialize(raw).map_err(|e| shape(e.to_string()))?;
                interaction_events(
                    old.as_ref(),
                    change.old.filter(is_leg),
                    &new,
                    raw,
                    change.approximate_created,
                )
            }
            None => Vec::new(),
        }
    } else {
        // Conferences, routes, the pool: nothing the platform is told about.
        Vec::new()
    };
    Ok(pending
        .into_iter()
        .enumerate()
        .map(|(i, p)| Event {
            id: event_id(change.record_id, p.kind, i),
            kind: p.kind.to_owned(),
            created: clock::iso(p.at),
            session_sid: p.session_sid,
            data: p.data,
        })
        .collect())
}

struct Pending {
    kind: &'static str,
    at: i64,
    session_sid: String,
    data: Value,
}

fn session_data(s: &Session) -> Value {
    json!({
        "sid": s.sid,
        "unique_name": s.unique_name,
        "status": s.status.as_str(),
        "closed_reason": s.closed_reason,
        "ttl": s.ttl,
        "date_expiry": s.date_expiry.map(clock::iso),
        "date_created": clock::iso(s.date_created),
        "date_updated": clock::iso(s.date_updated),
    })
}

fn participant_data(session_sid: &str, p: &crate::model::Participant) -> Value {
    json!({
        "sid": p.sid,
        "session_sid": session_sid,
        "identifier": p.identifier.as_str(),
        "proxy_identifier": p.proxy_identifier.as_str(),
        "friendly_name": p.friendly_name,
    })
}

fn session_events(old: Option<&Session>, new: &Session, approx: i64) -> Vec<Pending> {
    let mut out = Vec::new();
    let event = |kind, at, data| Pending {
        kind,
        at,
        session_sid: new.sid.clone(),
        data,
    };
    let Some(old) = old else {
        out.push(event(
            "session.created",
            new.date_created,
            session_data(new),
        ));
        for p in &new.participants {
            out.push(event(
                "participant.added",
                new.date_created,
                participant_data(&new.sid, p),
            ));
        }
        return out;
    };
    let closing = old.status.is_open() && new.status == SessionStatus::Closed;
    let reopened = old.status == SessionStatus::Closed && new.status.is_open();
    if closing {
        let mut data = session_data(new);
        data["closed_reason"] = json!(new.closed_reason.as_deref().unwrap_or("closed"));
        out.push(event("session.closed", new.date_updated, data));
        return out;
    }
    for p in &old.participants {
        if !new.participants.iter().any(|q| q.sid == p.sid) {
            out.push(event(
                "participant.removed",
                new.date_updated,
                participant_data(&new.sid, p),
            ));
        }
    }
    for p in &new.participants {
        if !old.participants.iter().any(|q| q.sid == p.sid) {
            out.push(event(
                "participant.added",
                new.date_updated,
                participant_data(&new.sid, p),
            ));
        }
    }
    let (old_live, new_live) = (old.live_call.as_ref(), new.live_call.as_ref());
    // A warning is recorded once per deadline (I4): a new `warned_for` with `given`.
    if let Some(live) = new_live
        && live.warning == Some(WarningOutcome::Given)
        && live.warned_for.is_some()
        && old_live.and_then(|l| l.warned_for) != live.warned_for
    {
        out.push(event(
            "call.warning",
            approx,
            json!({
                "deadline": live.deadline.map(clock::iso),
                "mode": live.mode.as_str(),
                "extensions_left": new.extension.max_count.saturating_sub(new.extension_count),
            }),
        ));
    }
    // The deadline moves later only by an extension (press 1, or POST …/extend).
    if let (Some(Some(before)), Some(Some(after))) =
        (old_live.map(|l| l.deadline), new_live.map(|l| l.deadline))
        && after > before
    {
        out.push(event(
            "call.extended",
            new.date_updated,
            json!({
                "previous_deadline": clock::iso(before),
                "deadline": clock::iso(after),
                "seconds": after - before,
                "extension_count": new.extension_count,
            }),
        ));
    }
    if reopened || old.date_expiry != new.date_expiry || old.ttl != new.ttl {
        out.push(event(
            "session.updated",
            new.date_updated,
            session_data(new),
        ));
    }
    out
}

/// The recording attributes the recording-status webhook stores on an interaction.
const RECORDING_SID: &str = "recording_sid";

fn interaction_data(i: &Interaction) -> Value {
    json!({
        "sid": i.sid,
        "call_sid": i.call_sid,
        "parent_call_sid": i.parent_call_sid,
        "status": i.status.as_str(),
        "direction": i.twilio_direction.as_str(),
        "from_participant_sid": i.from_participant_sid,
        "to_participant_sid": i.to_participant_sid,
        "date_created": clock::iso(i.date_created),
    })
}

fn interaction_events(
    old: Option<&Interaction>,
    old_raw: Option<&Value>,
    new: &Interaction,
    new_raw: &Value,
    approx: i64,
) -> Vec<Pending> {
    let mut out = Vec::new();
    let event = |kind, at, data| Pending {
        kind,
        at,
        session_sid: new.session_sid.clone(),
        data,
    };
    if old.is_none() {
        out.push(event(
            "interaction.started",
            new.date_created,
            interaction_data(new),
        ));
    }
    let was_final = old.is_some_and(|o| o.status.is_final());
    if new.status.is_final() && !was_final {
        let mut data = interaction_data(new);
        let extra = json!({
            "duration": new.duration,
            "billed_minutes": new.billed_minutes,
            "cost": new.cost(),
            "cost_unit": "JPY",
            "date_ended": new.date_ended.map(clock::iso),
        });
        if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
            data.extend(extra.clone());
        }
        out.push(event(
            "interaction.completed",
            new.date_ended.unwrap_or(new.date_updated),
            data,
        ));
    }
    let had_recording = old_raw.is_some_and(|o| !o[RECORDING_SID].is_null());
    if !new_raw[RECORDING_SID].is_null() && !had_recording {
        out.push(event(
            "recording.completed",
            if old.is_some() {
                approx
            } else {
                new.date_updated
            },
            json!({
                "interaction_sid": new.sid,
                "call_sid": new.call_sid,
                "recording_sid": new_raw[RECORDING_SID],
                "duration": new_raw["recording_duration"],
                "channels": new_raw["recording_channels"],
                "url": new_raw["recording_url"],
            }),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CallMode, CallStatus, LiveCall, sample_session};

    fn item(v: impl Serialize, sk: &str) -> Value {
        let mut v = serde_json::to_value(v).unwrap();
        v["pk"] = json!("SESSION#KC0123456789abcdef0123456789abcdef");
        v["sk"] = json!(sk);
        v
    }

    fn events(kind: ChangeKind, old: Option<Value>, new: Option<Value>) -> Vec<Event> {
        from_change(&Change {
            record_id: "rec-1",
            kind,
            old: old.as_ref(),
            new: new.as_ref(),
            approximate_created: 5_000,
        })
        .unwrap()
    }

    fn types(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    fn session() -> Session {
        let mut s = sample_session();
        s.date_created = 1_000;
        s.date_updated = 1_000;
        s
    }

    fn leg(status: CallStatus) -> Interaction {
        Interaction {
            sid: "KI1".into(),
            session_sid: "KC0123456789abcdef0123456789abcdef".into(),
            call_sid: "CA1".into(),
            parent_call_sid: None,
            direction: crate::pricing::Direction::Outbound,
            twilio_direction: crate::model::TwilioDirection::Inbound,
            from_masked: "090-****-5678".into(),
            to_masked: "080-****-5432".into(),
            from_participant_sid: Some("KP1".into()),
            to_participant_sid: Some("KP2".into()),
            callee_class: crate::phone::NumberClass::Mobile,
            status,
            duration: 0,
            billed_minutes: 0,
            cost_milli_yen: 0,
            date_created: 2_000,
            date_updated: 2_000,
            date_ended: None,
            recording: Default::default(),
        }
    }

    #[test]
    fn session_changes_become_their_events() {
        let s = session();
        let closed = Session {
            status: SessionStatus::Closed,
            closed_reason: Some("expired".into()),
            date_updated: 3_000,
            ..s.clone()
        };
        let reopened = Session {
            status: SessionStatus::InProgress,
            date_updated: 4_000,
            ..closed.clone()
        };
        let later = Session {
            date_expiry: Some(9_000),
            date_updated: 3_500,
            ..s.clone()
        };
        let activity = Session {
            status: SessionStatus::InProgress,
            date_last_interaction: Some(2_000),
            total_cost_milli_yen: 120_000,
            ..s.clone()
        };
        let mut one_left = s.clone();
        one_left.participants.pop();
        let cases: Vec<(Option<&Session>, &Session, Vec<&str>)> = vec![
            (
                None,
                &s,
                vec!["session.created", "participant.added", "participant.added"],
            ),
            (Some(&s), &closed, vec!["session.closed"]),
            (Some(&closed), &reopened, vec!["session.updated"]),
            (Some(&s), &later, vec!["session.updated"]),
            // Activity (a call's cost, the first call moving it in-progress) is not news:
            // the interaction's own events say it.
            (Some(&s), &activity, vec![]),
            (Some(&s), &one_left, vec!["participant.removed"]),
            (Some(&one_left), &s, vec!["participant.added"]),
        ];
        for (old, new, expected) in cases {
            let kind = if old.is_some() {
                ChangeKind::Modify
            } else {
                ChangeKind::Insert
            };
            let got = events(
                kind,
                old.map(|o| item(o, "SESSION")),
                Some(item(new, "SESSION")),
            );
            assert_eq!(types(&got), expected, "{old:?} → {new:?}");
            for e in &got {
                assert_eq!(e.session_sid, s.sid);
            }
        }
        let got = events(
            ChangeKind::Modify,
            Some(item(&s, "SESSION")),
            Some(item(&closed, "SESSION")),
        );
        assert_eq!(got[0].data["closed_reason"], "expired");
        assert_eq!(got[0].created, clock::iso(3_000), "the state's own time");
        let removed = events(
            ChangeKind::Modify,
            Some(item(&s, "SESSION")),
            Some(item(&one_left, "SESSION")),
        );
        assert_eq!(removed[0].data["sid"], "KP2");
        assert_eq!(removed[0].data["identifier"], "+818098765432");
    }

    #[test]
    fn a_warning_and_an_extension_of_the_live_call() {
        let mut s = session();
        s.live_call = Some(LiveCall {
            mode: CallMode::Conference,
            limit: 600,
            deadline: Some(2_600),
            warned_for: None,
            warning: None,
            noticed_for: None,
        });
        let mut warned = s.clone();
        let live = warned.live_call.as_mut().unwrap();
        live.warned_for = Some(2_600);
        live.warning = Some(WarningOutcome::Given);
        let got = events(
            ChangeKind::Modify,
            Some(item(&s, "SESSION")),
            Some(item(&warned, "SESSION")),
        );
        assert_eq!(types(&got), ["call.warning"]);
        assert_eq!(got[0].data["deadline"], clock::iso(2_600));
        assert_eq!(
            got[0].created,
            clock::iso(5_000),
            "no state time: the record's"
        );

        let mut not_possible = s.clone();
        let live = not_possible.live_call.as_mut().unwrap();
        live.warned_for = Some(2_600);
        live.warning = Some(WarningOutcome::NotPossibleBridge);
        assert!(
            events(
                ChangeKind::Modify,
                Some(item(&s, "SESSION")),
                Some(item(&not_possible, "SESSION"))
            )
            .is_empty()
        );

        let mut extended = warned.clone();
        extended.live_call.as_mut().unwrap().deadline = Some(2_900);
        extended.extension_count = 1;
        extended.date_updated = 2_500;
        let got = events(
            ChangeKind::Modify,
            Some(item(&warned, "SESSION")),
            Some(item(&extended, "SESSION")),
        );
        assert_eq!(types(&got), ["call.extended"]);
        assert_eq!(got[0].data["seconds"], 300);
        assert_eq!(got[0].data["extension_count"], 1);
    }

    #[test]
    fn a_recording_stored_before_its_leg_waits_for_the_leg() {
        let sk = "CALL#CA1";
        let partial = json!({
            "pk": "SESSION#KC0123456789abcdef0123456789abcdef", "sk": sk,
            "session_sid": "KC0123456789abcdef0123456789abcdef", "call_sid": "CA1",
            "recording_sid": "RE1", "recording_duration": 30, "recording_channels": 2,
            "recording_url": "https://api.twilio.com/…/RE1", "expire_at": 9_000,
        });
        let got = events(ChangeKind::Insert, None, Some(partial.clone()));
        assert!(got.is_empty(), "not a leg yet: {got:?}");
        let mut done = leg(CallStatus::Completed);
        done.duration = 31;
        done.date_ended = Some(2_031);
        let mut full = item(&done, sk);
        for key in [
            "recording_sid",
            "recording_duration",
            "recording_channels",
            "recording_url",
        ] {
            full[key] = partial[key].clone();
        }
        let got = events(ChangeKind::Modify, Some(partial), Some(full));
        assert_eq!(
            types(&got),
            [
                "interaction.started",
                "interaction.completed",
                "recording.completed"
            ]
        );
        assert_eq!(got[2].data["recording_sid"], "RE1");
    }

    #[test]
    fn interaction_changes_become_their_events() {
        let ringing = leg(CallStatus::Ringing);
        let mut done = leg(CallStatus::Completed);
        done.duration = 61;
        done.billed_minutes = 2;
        done.cost_milli_yen = 31_500;
        done.date_ended = Some(2_061);
        done.date_updated = 2_061;
        let sk = "CALL#CA1";
        let got = events(ChangeKind::Insert, None, Some(item(&ringing, sk)));
        assert_eq!(types(&got), ["interaction.started"]);
        assert_eq!(got[0].data["sid"], "KI1");
        let got = events(
            ChangeKind::Modify,
            Some(item(&ringing, sk)),
            Some(item(&done, sk)),
        );
        assert_eq!(types(&got), ["interaction.completed"]);
        assert_eq!(got[0].data["duration"], 61);
        assert_eq!(got[0].data["billed_minutes"], 2);
        assert_eq!(
            got[0].data["cost"],
            serde_json::to_value(done.cost()).unwrap()
        );
        assert_eq!(got[0].created, clock::iso(2_061));
        // A leg first seen in its final callback both started and completed.
        let got = events(ChangeKind::Insert, None, Some(item(&done, sk)));
        assert_eq!(
            types(&got),
            ["interaction.started", "interaction.completed"]
        );
        // A later callback for a finished leg says nothing new.
        let got = events(
            ChangeKind::Modify,
            Some(item(&done, sk)),
            Some(item(&done, sk)),
        );
        assert!(got.is_empty());

        let mut recorded = item(&done, sk);
        recorded["recording_sid"] = json!("RE1");
        recorded["recording_duration"] = json!(61);
        recorded["recording_channels"] = json!(2);
        recorded["recording_url"] = json!("https://api.twilio.com/…/RE1");
        let got = events(
            ChangeKind::Modify,
            Some(item(&done, sk)),
            Some(recorded.clone()),
        );
        assert_eq!(types(&got), ["recording.completed"]);
        assert_eq!(got[0].data["recording_sid"], "RE1");
        assert_eq!(got[0].data["channels"], 2);
        assert!(
            events(ChangeKind::Modify, Some(recorded.clone()), Some(recorded)).is_empty(),
            "once"
        );
    }

    #[test]
    fn other_items_and_removals_say_nothing() {
        let conf = json!({"pk": "SESSION#KC1", "sk": "CONF#CF1", "legs": []});
        assert!(events(ChangeKind::Insert, None, Some(conf)).is_empty());
        let s = item(session(), "SESSION");
        assert!(events(ChangeKind::Remove, Some(s), None).is_empty());
    }

    #[test]
    fn ids_are_stable_per_record_and_distinct_per_event() {
        let s = item(session(), "SESSION");
        let a = events(ChangeKind::Insert, None, Some(s.clone()));
        let b = events(ChangeKind::Insert, None, Some(s));
        assert_eq!(a, b, "the same record read twice gives the same events");
        let ids: std::collections::HashSet<_> = a.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), a.len());
        for e in &a {
            assert!(crate::ids::is_sid("EV", &e.id), "{}", e.id);
            assert!(TYPES.contains(&e.kind.as_str()));
        }
        assert_ne!(
            event_id("rec-1", "session.created", 0),
            event_id("rec-2", "session.created", 0)
        );
    }

    #[test]
    fn a_bad_item_is_an_error_not_silence() {
        let bad = json!({"pk": "SESSION#KC1", "sk": "SESSION", "status": "weird"});
        assert!(
            from_change(&Change {
                record_id: "r",
                kind: ChangeKind::Insert,
                old: None,
                new: Some(&bad),
                approximate_created: 0,
            })
            .is_err()
        );
    }
}
