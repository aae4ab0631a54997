//! `GET /v1/sessions`: every session, newest first, one page at a time, through the sparse
//! `sessions-index` (never a Scan).
//!
//! The index's partition key is one constant (`list_pk = SESSIONS`), its sort key
//! `list_sk = {date_created, 12 digits}#{sid}`, and it projects only `status` besides the
//! keys: a session writes the index when it is created or reopened and when its status
//! changes (three or four writes in its life), never on the calls' many updates. One index
//! partition takes about 1000 writes a second, so this holds to a few hundred new sessions a
//! second; past that the key would be sharded (`SESSIONS#n`) and the pages merged
//! (docs/DESIGN.md, "Listing sessions").

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;

use super::{Item, Store, StoreError, s};
use crate::model::Session;

pub const SESSIONS_INDEX: &str = "sessions-index";
pub(super) const LIST_PK: &str = "SESSIONS";

/// The index's sort key of a session: creation time, then SID (unique).
pub(super) fn list_sk(session: &Session) -> String {
    format!("{:012}#{}", session.date_created.max(0), session.sid)
}

/// Where the next page starts: the last listed session's table and index keys, as DynamoDB
/// takes an index Query's `ExclusiveStartKey`. Opaque to the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    sid: String,
    list_sk: String,
}

impl PageToken {
    /// Base64url (no padding) of `{list_sk}`: the SID is the part after `#`.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.list_sk.as_bytes())
    }

    /// `None` for anything this code did not hand out.
    pub fn decode(token: &str) -> Option<PageToken> {
        if token.is_empty() || token.len() > 200 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let list_sk = String::from_utf8(bytes).ok()?;
        let (time, sid) = list_sk.split_once('#')?;
        if time.len() != 12 || !time.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !crate::ids::is_sid(crate::ids::SESSION, sid) {
            return None;
        }
        Some(PageToken {
            sid: sid.to_owned(),
            list_sk,
        })
    }

    fn start_key(&self) -> Item {
        HashMap::from([
            ("pk".to_owned(), s(format!("SESSION#{}", self.sid))),
            ("sk".to_owned(), s("SESSION")),
            ("list_pk".to_owned(), s(LIST_PK)),
            ("list_sk".to_owned(), s(self.list_sk.clone())),
        ])
    }
}

/// One page of sessions, and where the next one starts (none: this was the last).
pub struct SessionPage {
    pub sessions: Vec<Session>,
    pub next: Option<PageToken>,
}

impl Store {
    /// Up to `page_size` sessions, newest first, after `start`, with `status` if given.
    /// A status filter may leave index pages short: the Query goes on until the page is full
    /// or the index ends, and the token points after the last session returned.
    pub async fn list_sessions(
        &self,
        status: Option<&str>,
        page_size: usize,
        start: Option<&PageToken>,
    ) -> Result<SessionPage, StoreError> {
        let mut listed: Vec<(String, String)> = Vec::new(); // (sid, list_sk)
        let mut exclusive = start.map(PageToken::start_key);
        let mut exhausted = false;
        while listed.len() < page_size {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(SESSIONS_INDEX)
                .key_condition_expression("list_pk = :pk")
                .expression_attribute_values(":pk", s(LIST_PK))
                .scan_index_forward(false)
                .limit((page_size - listed.len()) as i32)
                .set_exclusive_start_key(exclusive.take());
            if let Some(status) = status {
                q = q
                    .filter_expression("#status = :status")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(status));
            }
            let out = q.send().await.map_err(StoreError::backend)?;
            for item in out.items.unwrap_or_default() {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                let (Some(pk), Some(sk)) = (text("pk"), text("list_sk")) else {
                    return Err(StoreError::Corrupt(
                        "a sessions-index item without keys".into(),
                    ));
                };
                listed.push((pk.trim_start_matches("SESSION#").to_owned(), sk));
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => exclusive = Some(k),
                _ => {
                    exhausted = true;
                    break;
                }
            }
        }
        let sessions = self
            .sessions_in_order(listed.iter().map(|(sid, _)| sid.as_str()))
            .await?;
        let next = match listed.last() {
            Some((sid, list_sk)) if !exhausted => Some(PageToken {
                sid: sid.clone(),
                list_sk: list_sk.clone(),
            }),
            _ => None,
        };
        Ok(SessionPage { sessions, next })
    }

    /// The sessions with these SIDs, in the order given (one gone meanwhile is left out).
    /// One the batch read handed back unprocessed after its retries is read on its own.
    async fn sessions_in_order<'a>(
        &self,
        sids: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<Session>, StoreError> {
        let sids: Vec<String> = sids.map(str::to_owned).collect();
        let mut found = self.get_sessions(&sids).await?;
        let mut sessions = Vec::with_capacity(sids.len());
        for sid in &sids {
            match found.remove(sid) {
                Some(session) => sessions.push(session),
                None => sessions.extend(self.get_session(sid).await?),
            }
        }
        Ok(sessions)
    }
}

/// The index attributes a session item carries.
pub(super) fn list_attributes(session: &Session) -> [(String, AttributeValue); 2] {
    [
        ("list_pk".to_owned(), s(LIST_PK)),
        ("list_sk".to_owned(), s(list_sk(session))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_round_trips_and_anything_else_is_refused() {
        let session = crate::model::sample_session();
        let t = PageToken {
            sid: session.sid.clone(),
            list_sk: list_sk(&session),
        };
        assert_eq!(PageToken::decode(&t.encode()), Some(t.clone()));
        let start = t.start_key();
        assert_eq!(start["pk"], s(format!("SESSION#{}", session.sid)));
        for bad in [
            "",
            "!!!",
            "eyJhIjoxfQ",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("000000000001#KP0"),
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode("12#KC0123456789abcdef0123456789abcdef"),
        ] {
            assert_eq!(PageToken::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn newer_sessions_sort_after_older_ones() {
        let mut a = crate::model::sample_session();
        let mut b = a.clone();
        a.date_created = 999;
        b.date_created = 1_000;
        assert!(list_sk(&a) < list_sk(&b));
    }
}
