//! The due index: when the expiry sweep must look at a session next.

use super::{Condition, Item, OnlyIf, Store, StoreError, n, s, session_key, written};

pub const DUE_INDEX: &str = "due-index";
/// Due sessions spread over a few partitions so the index never has one hot key.
pub const DUE_SHARDS: u32 = 8;

/// The due-index partition a session is filed under.
pub fn due_shard(sid: &str) -> String {
    // A stable spread by the SID's last hex digits; SIDs are random.
    let h = sid.bytes().rev().take(4).fold(0u32, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    shard_key(h % DUE_SHARDS)
}

fn shard_key(shard: u32) -> String {
    format!("DUE#{shard}")
}

/// Where the next page of a due-index Query starts. DynamoDB's last evaluated key, kept
/// opaque: the sweep can only hand it back.
#[derive(Debug, Clone, PartialEq)]
pub struct DueCursor(Item);

impl DueCursor {
    /// The cursor after a page, `None` when it was the last one (no key, or an empty one).
    fn after(last_evaluated_key: Option<Item>) -> Option<Self> {
        last_evaluated_key.filter(|k| !k.is_empty()).map(Self)
    }
}

/// A session the due index returned, and the instant it was filed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSession {
    pub sid: String,
    pub due_at: i64,
}

/// The SID of a session item, as the index returns it.
fn session_sid_of(item: &Item) -> Option<String> {
    item.get("pk")?
        .as_s()
        .ok()?
        .strip_prefix("SESSION#")
        .map(str::to_owned)
}

/// The session and its `due_at` (the index's sort key, so in every projection).
fn due_session_of(item: &Item) -> Option<DueSession> {
    let due_at = item.get("due_at")?.as_n().ok()?.parse().ok()?;
    Some(DueSession {
        sid: session_sid_of(item)?,
        due_at,
    })
}

impl Store {
    /// Files the session in the due index for `due` (or takes it out with `None`).
    pub async fn set_due(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .only_if(Condition::session_open());
        update = match due {
            Some(t) => update
                .update_expression("SET due_shard = :shard, due_at = :due")
                .expression_attribute_values(":shard", s(due_shard(sid)))
                .expression_attribute_values(":due", n(t)),
            None => update.update_expression("REMOVE due_shard, due_at"),
        };
        written(update.send().await).map(|_| ())
    }

    /// One page of sessions due at or before `now` in one shard of the due index.
    pub async fn due_page(
        &self,
        shard: u32,
        now: i64,
        start: Option<DueCursor>,
    ) -> Result<(Vec<DueSession>, Option<DueCursor>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("due_shard = :shard AND due_at <= :now")
            .expression_attribute_values(":shard", s(shard_key(shard)))
            .expression_attribute_values(":now", n(now))
            .set_exclusive_start_key(start.map(|c| c.0))
            .send()
            .await
            .map_err(StoreError::backend)?;
        let sids = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(due_session_of)
            .collect();
        Ok((sids, DueCursor::after(out.last_evaluated_key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_has_one_shard_among_the_few() {
        let sids: Vec<String> = (0..64).map(|i| format!("KC{i:032x}")).collect();
        let shards: std::collections::BTreeSet<String> =
            sids.iter().map(|sid| due_shard(sid)).collect();
        // Sessions already filed depend on the spread: it must never change.
        assert_eq!(due_shard("KC0123456789abcdef0123456789abcdef"), "DUE#6");
        let expected: std::collections::BTreeSet<String> = (0..DUE_SHARDS).map(shard_key).collect();
        assert_eq!(shards, expected, "every shard used, and no other");
    }

    #[test]
    fn the_cursor_hands_back_the_key_it_was_given() {
        let key = super::super::session_key("KC1")
            .into_iter()
            .chain([
                ("due_shard".to_owned(), s("DUE#3")),
                ("due_at".to_owned(), n(100)),
            ])
            .collect::<Item>();
        let cursor = DueCursor::after(Some(key.clone())).expect("a next page");
        assert_eq!(cursor.0, key);
        assert_eq!(DueCursor::after(None), None);
        assert_eq!(
            DueCursor::after(Some(Item::new())),
            None,
            "an empty key: no more pages"
        );
    }

    #[test]
    fn the_index_yields_session_sids() {
        assert_eq!(
            session_sid_of(&super::super::session_key("KC1")).as_deref(),
            Some("KC1")
        );
        assert_eq!(session_sid_of(&super::super::call_ref_key("CA1")), None);
        assert_eq!(session_sid_of(&Item::new()), None);
        let filed: Item = super::super::session_key("KC1")
            .into_iter()
            .chain([("due_at".to_owned(), n(100))])
            .collect();
        assert_eq!(
            due_session_of(&filed),
            Some(DueSession {
                sid: "KC1".into(),
                due_at: 100
            })
        );
        assert_eq!(due_session_of(&super::super::session_key("KC1")), None);
    }
}
