//! The single DynamoDB table (docs/DESIGN.md, Data model). Every write is conditional;
//! nothing here scans.
//!
//! | item          | pk                     | sk                | what for                                  |
//! |---------------|------------------------|-------------------|-------------------------------------------|
//! | session       | `SESSION#{sid}`        | `SESSION`         | the session and its participants          |
//! | interaction   | `SESSION#{sid}`        | `CALL#{CallSid}`  | one call leg, listed with the session     |
//! | conference    | `SESSION#{sid}`        | `CONF#{CF sid}`   | a conference and its legs' CallSids       |
//! | unique name   | `UNIQUE#{name}`        | `UNIQUE`          | `unique_name` is unique                   |
//! | route         | `ROUTE#{proxy}`        | `CALLER#{number}` | (proxy, caller) → open session (I1)       |
//! | participation | `PARTICIPANT#{number}` | `PROXY#{proxy}`   | which proxies a number already uses       |
//! | number        | `POOL`                 | `NUMBER#{proxy}`  | the proxy number pool                     |
//! | call ref      | `CALL#{CallSid}`       | `CALL`            | CallSid → session, for the caller's leg   |
//! | idempotency   | `IDEMPOTENCY#{key}`    | `IDEMPOTENCY`     | `Idempotency-Key` records                 |
//!
//! Open sessions carry `due_shard`/`due_at` for the sparse `due-index` (the expiry sweep's
//! Query); closed ones lose them and gain `expire_at`, the table's TTL attribute.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::model::{Interaction, ProxyNumber, Session, SessionStatus};
use crate::phone::PhoneNumber;

pub const DUE_INDEX: &str = "due-index";
/// Due sessions spread over a few partitions so the index never has one hot key.
pub const DUE_SHARDS: u32 = 8;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the condition on the write did not hold")]
    ConditionFailed,
    /// A transaction was cancelled; one reason code per item, in order ("None" for items
    /// that were fine, "ConditionalCheckFailed", "TransactionConflict", …).
    #[error("transaction cancelled: {0:?}")]
    Cancelled(Vec<String>),
    #[error("DynamoDB request failed: {0}")]
    Backend(String),
    #[error("item in the table has an unexpected shape: {0}")]
    Corrupt(String),
}

impl StoreError {
    fn backend<E, R>(e: SdkError<E, R>) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        Self::Backend(DisplayErrorContext(e).to_string())
    }

    /// True when the transaction failed only because item `i`'s condition did not hold.
    pub fn failed_at(&self, i: usize) -> bool {
        matches!(self, Self::Cancelled(codes) if codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed"))
    }

    /// Whether retrying the same request could succeed (contention, not a business rule).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Cancelled(codes) if codes.iter().any(|c| c == "TransactionConflict"))
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn session_key(sid: &str) -> Item {
    key(format!("SESSION#{sid}"), "SESSION")
}

fn route_key(proxy: &PhoneNumber, caller: &PhoneNumber) -> Item {
    key(format!("ROUTE#{proxy}"), &format!("CALLER#{caller}"))
}

fn participation_key(caller: &PhoneNumber, proxy: &PhoneNumber) -> Item {
    key(format!("PARTICIPANT#{caller}"), &format!("PROXY#{proxy}"))
}

fn number_key(number: &PhoneNumber) -> Item {
    key("POOL".into(), &format!("NUMBER#{number}"))
}

fn call_ref_key(call_sid: &str) -> Item {
    key(format!("CALL#{call_sid}"), "CALL")
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn with_key(mut item: Item, k: Item) -> Item {
    item.extend(k);
    item
}

pub fn due_shard(sid: &str) -> String {
    // A stable spread by the SID's last hex digits; SIDs are random.
    let h = sid.bytes().rev().take(4).fold(0u32, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    format!("DUE#{}", h % DUE_SHARDS)
}

/// What a route tells `inbound-call` in one read: where to send the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub session_sid: String,
    pub participant_sid: String,
    pub other_participant_sid: String,
    pub other_identifier: PhoneNumber,
    /// The caller ID the other party sees: their own proxy number, which leads back here.
    pub other_proxy: PhoneNumber,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_expiry: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_time_limit: Option<u64>,
    /// Calls run through a conference so the end-of-call warning can be spoken.
    #[serde(default)]
    pub timed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionRef {
    session_sid: String,
}

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

/// The state of an idempotency record after trying to claim a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key and must complete it.
    New,
    /// A request with this key is being processed right now.
    InProgress { request_hash: String },
    /// A request with this key finished; replay its response.
    Completed {
        request_hash: String,
        status: u16,
        body: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyItem {
    status: String,
    request_hash: String,
    #[serde(default)]
    response_status: Option<u16>,
    #[serde(default)]
    response_body: Option<String>,
    /// Checked in code: DynamoDB's TTL deletion can lag by up to 48 hours.
    expire_at: i64,
    in_progress_until: i64,
}

/// A handle on the table; cheap to clone, built once per container.
#[derive(Clone)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::backend)?;
        Ok(out.item)
    }

    async fn query_all(&self, pk: String, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(sk_prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::backend)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c),
                ) = e.as_service_error()
                {
                    let codes = c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_owned())
                        .collect();
                    return Err(StoreError::Cancelled(codes));
                }
                Err(StoreError::backend(e))
            }
        }
    }

    fn put(&self, item: Item, condition: &str) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete_if_session(&self, key: Item, sid: &str) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("session_sid = :sid")
            .expression_attribute_values(":sid", s(sid))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn count_number(
        &self,
        number: &PhoneNumber,
        delta: i64,
        now: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(number_key(number)))
            .update_expression("ADD in_use :d SET date_updated = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":d", n(delta))
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    // ---- sessions -------------------------------------------------------------------

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
        items.push(self.put(session_item, "attribute_not_exists(pk)")?);
        meaning.push(None);

        if let Some(name) = &session.unique_name {
            let item = with_key(
                to_item(&SessionRef {
                    session_sid: session.sid.clone(),
                })?,
                key(format!("UNIQUE#{name}"), "UNIQUE"),
            );
            items.push(self.put(item, "attribute_not_exists(pk)")?);
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
                "attribute_not_exists(pk)",
            )?);
            meaning.push(Some(conflict.clone()));
            items.push(self.put(
                with_key(
                    to_item(&SessionRef {
                        session_sid: session.sid.clone(),
                    })?,
                    participation_key(&p.identifier, &p.proxy_identifier),
                ),
                "attribute_not_exists(pk)",
            )?);
            meaning.push(Some(conflict));
        }

        let mut proxies: Vec<&PhoneNumber> = session
            .participants
            .iter()
            .map(|p| &p.proxy_identifier)
            .collect();
        proxies.sort();
        proxies.dedup();
        for proxy in proxies {
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
            .get(key(format!("UNIQUE#{name}"), "UNIQUE"))
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
            .condition_expression("#status IN (:open, :in_progress)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":closed", s(SessionStatus::Closed.as_str()))
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expire", n(expire_at))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
        let mut proxies: Vec<&PhoneNumber> = session
            .participants
            .iter()
            .map(|p| &p.proxy_identifier)
            .collect();
        proxies.sort();
        proxies.dedup();
        for proxy in proxies {
            items.push(self.count_number(proxy, -1, now)?);
        }
        match self.transact(items).await {
            Err(e) if e.failed_at(0) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    // ---- routing --------------------------------------------------------------------

    pub async fn get_route(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
    ) -> Result<Option<Route>, StoreError> {
        self.get(route_key(proxy, caller))
            .await?
            .map(from_item)
            .transpose()
    }

    /// The proxy numbers on which `participant` is already in an open session.
    pub async fn proxies_of(
        &self,
        participant: &PhoneNumber,
    ) -> Result<Vec<PhoneNumber>, StoreError> {
        let items = self
            .query_all(format!("PARTICIPANT#{participant}"), "PROXY#")
            .await?;
        items
            .into_iter()
            .map(|item| {
                let sk = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let number = sk.trim_start_matches("PROXY#");
                PhoneNumber::parse(number).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    // ---- the number pool ----------------------------------------------------------

    /// Adds a number; `Ok(false)` when it is already in the pool.
    pub async fn add_number(&self, number: &ProxyNumber) -> Result<bool, StoreError> {
        let item = with_key(to_item(number)?, number_key(&number.phone_number));
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        written(r)
    }

    pub async fn get_number(
        &self,
        number: &PhoneNumber,
    ) -> Result<Option<ProxyNumber>, StoreError> {
        self.get(number_key(number))
            .await?
            .map(from_item)
            .transpose()
    }

    /// The whole pool, by number. One partition, paged; pools are hundreds of numbers.
    pub async fn list_numbers(&self) -> Result<Vec<ProxyNumber>, StoreError> {
        self.query_all("POOL".into(), "NUMBER#")
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// Removes a number that no open session uses; `ConditionFailed` when it is in use or gone.
    pub async fn delete_number(&self, number: &PhoneNumber) -> Result<(), StoreError> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(number_key(number)))
            .condition_expression("attribute_exists(pk) AND in_use <= :zero")
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        must_write(r)
    }

    // ---- interactions ---------------------------------------------------------------

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
                "attribute_not_exists(pk)",
            )?,
            self.put(
                with_key(
                    to_item(&SessionRef {
                        session_sid: leg.session_sid.clone(),
                    })?,
                    call_ref_key(&leg.call_sid),
                )
                .tap_insert("expire_at", n(now + retention)),
                "attribute_not_exists(pk) OR session_sid = :sid",
            )
            .map(|mut item| {
                if let Some(put) = item.put.as_mut() {
                    put.expression_attribute_values
                        .get_or_insert_with(HashMap::new)
                        .insert(":sid".into(), s(leg.session_sid.clone()));
                }
                item
            })?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e) if e.failed_at(0) => Ok(false),
            // The same CallSid again: Twilio retried the webhook. Already logged.
            Err(e) if e.failed_at(1) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Marks session activity: last interaction, ttl restart, open → in-progress. With
    /// `check_deadline`, also requires the session not to be past `date_expiry` or its
    /// inactivity limit (`inactive_after`, kept as `now + ttl` by every touch).
    fn touch_session(
        &self,
        sid: &str,
        now: i64,
        check_deadline: bool,
        cost_milli_yen: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let condition = if check_deadline {
            "#status IN (:open, :in_progress) \
             AND (attribute_not_exists(date_expiry) OR date_expiry > :now) \
             AND (#ttl = :zero OR attribute_not_exists(inactive_after) OR inactive_after > :now)"
        } else {
            "#status IN (:open, :in_progress)"
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression(
                "SET #status = :in_progress, date_last_interaction = :now, date_updated = :now, \
                 inactive_after = :now + #ttl ADD total_cost_milli_yen :cost",
            )
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":cost", n(cost_milli_yen));
        if check_deadline {
            update = update.expression_attribute_values(":zero", n(0));
        }
        let update = update
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
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

    /// Adds a late leg's cost to a session that has closed (and must exist).
    fn add_cost(&self, sid: &str, cost_milli_yen: u64) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .update_expression("ADD total_cost_milli_yen :cost")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":cost", n(cost_milli_yen))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
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
            .condition_expression("attribute_not_exists(status_rank) OR status_rank < :status_rank")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#duration", "duration")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
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

    // ---- calls placed by Tsunagu ---------------------------------------------------

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
            .condition_expression(
                "#status IN (:open, :in_progress) AND (attribute_not_exists(call_lock) OR call_lock < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()))
            .expression_attribute_values(":now", n(now))
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
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        written(r).map(|_| ())
    }

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
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(conference_key(session_sid, conference_sid)))
            .condition_expression("attribute_not_exists(ended_at)")
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
        let update = update
            .update_expression(expression)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let session = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(session_sid)))
            .update_expression("SET current_conference = :cf")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":cf", s(conference_sid))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self
            .transact(vec![
                TransactWriteItem::builder().update(update).build(),
                TransactWriteItem::builder().update(session).build(),
            ])
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.failed_at(0) || e.failed_at(1) => Ok(false),
            Err(e) => Err(e),
        }
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
            .condition_expression("attribute_not_exists(ended_at)")
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
            .condition_expression("current_conference = :cf")
            .expression_attribute_values(":cf", s(conference_sid))
            .send()
            .await;
        written(cleared).map(|_| ())
    }

    pub async fn get_conference(
        &self,
        session_sid: &str,
        conference_sid: &str,
    ) -> Result<Option<ConferenceRecord>, StoreError> {
        let Some(item) = self
            .get(conference_key(session_sid, conference_sid))
            .await?
        else {
            return Ok(None);
        };
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
        Ok(Some(ConferenceRecord {
            conference_sid: conference_sid.to_owned(),
            room: text("room").unwrap_or_default(),
            ended_at: number("ended_at"),
            ended_reason: text("ended_reason"),
            legs,
        }))
    }

    // ---- calls under a time limit ------------------------------------------------------

    /// Files the session in the due index for `due` (or takes it out with `None`).
    pub async fn set_due(&self, sid: &str, due: Option<i64>) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(sid)))
            .condition_expression("#status IN (:open, :in_progress)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()));
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
        start: Option<Item>,
    ) -> Result<(Vec<String>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("due_shard = :shard AND due_at <= :now")
            .expression_attribute_values(":shard", s(format!("DUE#{shard}")))
            .expression_attribute_values(":now", n(now))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(StoreError::backend)?;
        let sids = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                item.get("pk")?
                    .as_s()
                    .ok()?
                    .strip_prefix("SESSION#")
                    .map(str::to_owned)
            })
            .collect();
        Ok((sids, out.last_evaluated_key.filter(|k| !k.is_empty())))
    }

    /// Notes the call a session is about to have (mode and length), before it connects.
    pub async fn begin_live_call(
        &self,
        sid: &str,
        mode: &str,
        limit: u64,
        replace: bool,
    ) -> Result<(), StoreError> {
        let live = to_attr(&crate::model::LiveCall {
            mode: mode.to_owned(),
            limit,
            deadline: None,
            warned_for: None,
            warning: None,
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
            .condition_expression("#status IN (:open, :in_progress)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()))
            .expression_attribute_values(":live", live)
            .send()
            .await;
        must_write(r)
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
            .condition_expression(
                "#status IN (:open, :in_progress) AND attribute_exists(#live) AND attribute_not_exists(#live.#deadline)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_names("#deadline", "deadline")
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()))
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
            .condition_expression("attribute_exists(pk)")
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
            .condition_expression(
                "#status IN (:open, :in_progress) AND #live.#deadline = :deadline \
                 AND (attribute_not_exists(#live.#warned_for) OR #live.#warned_for <> :deadline)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_names("#deadline", "deadline")
            .expression_attribute_names("#warned_for", "warned_for")
            .expression_attribute_names("#warning", "warning")
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()))
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
        let new_expiry = session.date_expiry.filter(|e| *e < to).map(|_| to);
        let mut expression =
            "SET #live.#deadline = :to, extension_count = extension_count + :one, \
             date_updated = :now, due_shard = :shard, due_at = :due"
                .to_owned();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.sid)))
            .condition_expression(
                "#status IN (:open, :in_progress) AND #live.#deadline = :from AND extension_count < :max",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#live", "live_call")
            .expression_attribute_names("#deadline", "deadline")
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()))
            .expression_attribute_values(":from", n(from))
            .expression_attribute_values(":to", n(to))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max_count))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":shard", s(due_shard(&session.sid)))
            .expression_attribute_values(":due", n(due));
        if let Some(expiry) = new_expiry {
            expression.push_str(", date_expiry = :expiry");
            update = update.expression_attribute_values(":expiry", n(expiry));
        }
        let mut items = vec![
            TransactWriteItem::builder()
                .update(
                    update
                        .update_expression(expression)
                        .build()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )
                .build(),
        ];
        if let Some(expiry) = new_expiry {
            items.extend(self.route_expiry_updates(session, expiry)?);
        }
        match self.transact(items).await {
            Err(StoreError::Cancelled(_)) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    /// The routes carry a copy of `date_expiry` (so routing is one read): these writes move
    /// it with the session's, each only while the route still belongs to this session.
    fn route_expiry_updates(
        &self,
        session: &Session,
        expiry: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        session
            .participants
            .iter()
            .map(|p| {
                let route = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(route_key(&p.proxy_identifier, &p.identifier)))
                    .update_expression("SET date_expiry = :expiry")
                    .condition_expression("session_sid = :sid")
                    .expression_attribute_values(":expiry", n(expiry))
                    .expression_attribute_values(":sid", s(session.sid.clone()))
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(TransactWriteItem::builder().update(route).build())
            })
            .collect()
    }

    /// Moves `date_expiry` and the live call's deadline by `seconds` (whichever exist), on
    /// the session and its routes, while both are still what `session` says.
    pub async fn extend_session(
        &self,
        session: &Session,
        seconds: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut sets = vec!["date_updated = :now".to_owned()];
        let mut conditions = vec!["#status IN (:open, :in_progress)".to_owned()];
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.sid)))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":open", s(SessionStatus::Open.as_str()))
            .expression_attribute_values(":in_progress", s(SessionStatus::InProgress.as_str()))
            .expression_attribute_values(":now", n(now));
        let new_expiry = session.date_expiry.map(|e| e + seconds);
        if let (Some(old), Some(new)) = (session.date_expiry, new_expiry) {
            sets.push("date_expiry = :new_expiry".into());
            conditions.push("date_expiry = :old_expiry".into());
            update = update
                .expression_attribute_values(":new_expiry", n(new))
                .expression_attribute_values(":old_expiry", n(old));
        }
        let deadline = session.live_call.as_ref().and_then(|l| l.deadline);
        if let Some(old) = deadline {
            sets.push("#live.#deadline = :new_deadline".into());
            conditions.push("#live.#deadline = :old_deadline".into());
            update = update
                .expression_attribute_names("#live", "live_call")
                .expression_attribute_names("#deadline", "deadline")
                .expression_attribute_values(":new_deadline", n(old + seconds))
                .expression_attribute_values(":old_deadline", n(old));
        }
        let mut moved = session.clone();
        moved.date_expiry = new_expiry;
        if let Some(live) = moved.live_call.as_mut() {
            live.deadline = deadline.map(|d| d + seconds);
        }
        if let Some(due) = crate::expiry::next_due(&moved, false, now) {
            sets.push("due_shard = :shard, due_at = :due".into());
            update = update
                .expression_attribute_values(":shard", s(due_shard(&session.sid)))
                .expression_attribute_values(":due", n(due));
        }
        let update = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        if let Some(expiry) = new_expiry {
            items.extend(self.route_expiry_updates(session, expiry)?);
        }
        match self.transact(items).await {
            Err(StoreError::Cancelled(_)) => Err(StoreError::ConditionFailed),
            other => other,
        }
    }

    // ---- idempotency ----------------------------------------------------------------

    /// Claims `key` for a request whose body hashes to `request_hash`, with one conditional
    /// put: it succeeds when no live record exists (absent, expired, or an abandoned
    /// in-progress claim); otherwise the existing record is returned.
    pub async fn claim_idempotency_key(
        &self,
        key_: &str,
        request_hash: &str,
        now: i64,
        keep_for: i64,
        in_progress_for: i64,
    ) -> Result<Claim, StoreError> {
        let item = with_key(
            to_item(&IdempotencyItem {
                status: "IN_PROGRESS".into(),
                request_hash: request_hash.to_owned(),
                response_status: None,
                response_body: None,
                expire_at: now + keep_for,
                in_progress_until: now + in_progress_for,
            })?,
            key(format!("IDEMPOTENCY#{key_}"), "IDEMPOTENCY"),
        );
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR expire_at < :now OR (#status = :in_progress AND in_progress_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Claim::New),
            Err(e) if is_condition_failure(&e) => {
                let existing: IdempotencyItem = self
                    .get(key(format!("IDEMPOTENCY#{key_}"), "IDEMPOTENCY"))
                    .await?
                    .map(from_item)
                    .transpose()?
                    .ok_or(StoreError::ConditionFailed)?;
                Ok(
                    match (
                        existing.status.as_str(),
                        existing.response_status,
                        existing.response_body,
                    ) {
                        ("COMPLETED", Some(status), Some(body)) => Claim::Completed {
                            request_hash: existing.request_hash,
                            status,
                            body,
                        },
                        _ => Claim::InProgress {
                            request_hash: existing.request_hash,
                        },
                    },
                )
            }
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    pub async fn complete_idempotency_key(
        &self,
        key_: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("IDEMPOTENCY#{key_}"), "IDEMPOTENCY")))
            .update_expression(
                "SET #status = :done, response_status = :code, response_body = :body",
            )
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", s("COMPLETED"))
            .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
            .expression_attribute_values(":code", n(status))
            .expression_attribute_values(":body", s(body))
            .send()
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    /// Lets a failed request's key be used again (its failure must not be replayed).
    pub async fn release_idempotency_key(&self, key_: &str) -> Result<(), StoreError> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("IDEMPOTENCY#{key_}"), "IDEMPOTENCY")))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
            .send()
            .await;
        written(r).map(|_| ())
    }
}

const LEG_PREFIX: &str = "leg_";

fn conference_key(session_sid: &str, conference_sid: &str) -> Item {
    key(
        format!("SESSION#{session_sid}"),
        &format!("CONF#{conference_sid}"),
    )
}

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

fn interaction_key(session_sid: &str, call_sid: &str) -> Item {
    key(
        format!("SESSION#{session_sid}"),
        &format!("CALL#{call_sid}"),
    )
}

fn to_attr<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

trait TapInsert {
    fn tap_insert(self, name: &str, value: AttributeValue) -> Self;
}

impl TapInsert for Item {
    fn tap_insert(mut self, name: &str, value: AttributeValue) -> Self {
        self.insert(name.to_owned(), value);
        self
    }
}

/// A conditional write's outcome: `Ok(true)` when it was written, `Ok(false)` when its
/// condition did not hold, an error for anything else.
fn written<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(StoreError::backend(e)),
    }
}

/// A conditional write that must happen: `ConditionFailed` when its condition did not hold.
fn must_write<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<(), StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if written(result)? {
        Ok(())
    } else {
        Err(StoreError::ConditionFailed)
    }
}

fn is_condition_failure<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("session conflicts with existing state: {0:?}")]
    Conflict(CreateConflict),
    #[error(transparent)]
    Store(#[from] StoreError),
}
