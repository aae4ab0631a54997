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
//! Query); closed ones lose them and gain `expire_at`, the table's TTL attribute. Every
//! session carries `list_pk`/`list_sk` for `sessions-index` (`GET /v1/sessions`, `listing`).

mod condition;
mod conferences;
mod due;
mod idempotency;
mod interactions;
mod listing;
mod live_call;
mod participants;
mod pool;
mod routing;
mod sessions;
#[cfg(test)]
mod test_support;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::model::Session;
use crate::phone::PhoneNumber;

use condition::{Condition, OnlyIf};

pub use conferences::ConferenceRecord;
pub use due::{DUE_INDEX, DUE_SHARDS, DueCursor, DueSession, due_shard};
pub use idempotency::Claim;
pub use interactions::{Recorded, RecordingInfo};
pub use listing::{PageToken, SESSIONS_INDEX, SessionPage};
pub use routing::{CallNote, Route, RouteCheck};
pub use sessions::{CreateConflict, CreateError};

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
    /// The SDK refused to build a request (a required field missing): a bug here, not data.
    #[error("DynamoDB request could not be built: {0}")]
    Request(String),
}

impl From<BuildError> for StoreError {
    fn from(e: BuildError) -> Self {
        Self::Request(e.to_string())
    }
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
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

// ---- keys (the table in the module docs) ---------------------------------------------

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn session_key(sid: &str) -> Item {
    key(format!("SESSION#{sid}"), "SESSION")
}

fn interaction_key(session_sid: &str, call_sid: &str) -> Item {
    key(
        format!("SESSION#{session_sid}"),
        &format!("CALL#{call_sid}"),
    )
}

fn conference_key(session_sid: &str, conference_sid: &str) -> Item {
    key(
        format!("SESSION#{session_sid}"),
        &format!("CONF#{conference_sid}"),
    )
}

fn unique_name_key(name: &str) -> Item {
    key(format!("UNIQUE#{name}"), "UNIQUE")
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

fn idempotency_key(key_: &str) -> Item {
    key(format!("IDEMPOTENCY#{key_}"), "IDEMPOTENCY")
}

// ---- items ↔ values ------------------------------------------------------------------

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_attr<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn with_key(mut item: Item, k: Item) -> Item {
    item.extend(k);
    item
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

/// The items that only point at a session: unique name, participation, call ref.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionRef {
    pub session_sid: String,
    /// For a call reference: when the call was first seen (absent on older items and on
    /// unique names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<i64>,
}

/// A `SessionRef` item under `k`.
fn session_ref(session_sid: &str, k: Item) -> Result<Item, StoreError> {
    Ok(with_key(
        to_item(&SessionRef {
            session_sid: session_sid.to_owned(),
            date_created: None,
        })?,
        k,
    ))
}

/// The session's proxy numbers, each once (both participants may share one).
fn proxies_of_session(session: &Session) -> Vec<&PhoneNumber> {
    let mut proxies: Vec<&PhoneNumber> = session
        .participants
        .iter()
        .map(|p| &p.proxy_identifier)
        .collect();
    proxies.sort();
    proxies.dedup();
    proxies
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
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
            .map_err(transact_error)
    }

    fn put(&self, item: Item, condition: Condition) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .only_if(condition)
            .build()?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete_if_session(&self, key: Item, sid: &str) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .only_if(Condition::of_session(sid))
            .build()?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

// ---- outcomes of conditional writes -------------------------------------------------

/// A cancelled transaction becomes `Cancelled` with its per-item reasons, in order.
fn transact_error<R>(e: SdkError<TransactWriteItemsError, R>) -> StoreError
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error() {
        return StoreError::Cancelled(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        );
    }
    StoreError::backend(e)
}

/// A conditional write's outcome: `Ok(true)` when it was written, `Ok(false)` when its
/// condition did not hold, an error for anything else.
fn written<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
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
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
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
    E: ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, TransactionCanceledException,
    };

    use super::test_support::{assert_item_binds_exactly, condition_of, key_of, offline_store};
    use super::*;

    fn pk_sk(k: Item) -> (String, String) {
        let text = |name: &str| k[name].as_s().unwrap().clone();
        assert_eq!(k.len(), 2, "a key is pk and sk only");
        (text("pk"), text("sk"))
    }

    fn pair(pk: &str, sk: &str) -> (String, String) {
        (pk.to_owned(), sk.to_owned())
    }

    #[test]
    fn keys_follow_the_table_in_the_module_docs() {
        let proxy = PhoneNumber::parse("050-3123-4567").unwrap();
        let caller = PhoneNumber::parse("090-1234-5678").unwrap();
        assert_eq!(pk_sk(session_key("KC1")), pair("SESSION#KC1", "SESSION"));
        assert_eq!(
            pk_sk(interaction_key("KC1", "CA1")),
            pair("SESSION#KC1", "CALL#CA1")
        );
        assert_eq!(
            pk_sk(conference_key("KC1", "CF1")),
            pair("SESSION#KC1", "CONF#CF1")
        );
        assert_eq!(
            pk_sk(unique_name_key("shop-7")),
            pair("UNIQUE#shop-7", "UNIQUE")
        );
        assert_eq!(
            pk_sk(route_key(&proxy, &caller)),
            pair("ROUTE#+815031234567", "CALLER#+819012345678")
        );
        assert_eq!(
            pk_sk(participation_key(&caller, &proxy)),
            pair("PARTICIPANT#+819012345678", "PROXY#+815031234567")
        );
        assert_eq!(
            pk_sk(number_key(&proxy)),
            pair("POOL", "NUMBER#+815031234567")
        );
        assert_eq!(pk_sk(call_ref_key("CA1")), pair("CALL#CA1", "CALL"));
        assert_eq!(
            pk_sk(idempotency_key("k-1")),
            pair("IDEMPOTENCY#k-1", "IDEMPOTENCY")
        );
    }

    #[test]
    fn a_session_ref_item_points_at_its_session_under_its_own_key() {
        let item = session_ref("KC1", call_ref_key("CA1")).unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), "CALL#CA1");
        let back: SessionRef = from_item(item).unwrap();
        assert_eq!(back.session_sid, "KC1");
    }

    #[test]
    fn a_session_on_one_shared_proxy_counts_that_number_once() {
        let mut session = crate::model::sample_session();
        assert_eq!(proxies_of_session(&session).len(), 1);
        session.participants[1].proxy_identifier = PhoneNumber::parse("050-3123-0000").unwrap();
        let proxies = proxies_of_session(&session);
        assert_eq!(proxies.len(), 2);
        assert!(
            proxies[0] < proxies[1],
            "sorted, so transactions list them alike"
        );
    }

    #[test]
    fn an_unreadable_item_is_corrupt() {
        let mut item = session_key("KC1");
        item.insert("session_sid".into(), n(7));
        assert!(matches!(
            from_item::<SessionRef>(item),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_request_the_sdk_cannot_build_is_a_request_error_not_corrupt_data() {
        fn build() -> Result<Put, StoreError> {
            Ok(Put::builder().build()?) // no table, no item
        }
        let e = build().unwrap_err();
        assert!(matches!(e, StoreError::Request(_)), "{e:?}");
        assert!(e.to_string().contains("could not be built"), "{e}");
    }

    #[test]
    fn failed_at_names_only_a_failed_condition_at_that_position() {
        let e = StoreError::Cancelled(vec![
            "None".into(),
            "ConditionalCheckFailed".into(),
            "TransactionConflict".into(),
        ]);
        assert!(!e.failed_at(0));
        assert!(e.failed_at(1));
        assert!(!e.failed_at(2), "contention is not a failed condition");
        assert!(!e.failed_at(3));
        assert!(!StoreError::ConditionFailed.failed_at(0));
    }

    fn cancelled(codes: &[Option<&str>]) -> SdkError<TransactWriteItemsError, ()> {
        let reasons = codes
            .iter()
            .map(|c| {
                CancellationReason::builder()
                    .set_code(c.map(str::to_owned))
                    .build()
            })
            .collect();
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .set_cancellation_reasons(Some(reasons))
                    .build(),
            ),
            (),
        )
    }

    #[test]
    fn a_cancelled_transaction_keeps_each_items_reason_in_order() {
        let e = transact_error(cancelled(&[
            None,
            Some("ConditionalCheckFailed"),
            Some("TransactionConflict"),
        ]));
        assert!(
            matches!(&e, StoreError::Cancelled(codes)
                if codes == &["None", "ConditionalCheckFailed", "TransactionConflict"]),
            "{e:?}"
        );
        let other = transact_error::<()>(SdkError::service_error(
            TransactWriteItemsError::generic(
                ErrorMetadata::builder().code("InternalServerError").build(),
            ),
            (),
        ));
        assert!(matches!(other, StoreError::Backend(_)), "{other:?}");
        let timeout = transact_error::<()>(SdkError::timeout_error("slow"));
        assert!(matches!(timeout, StoreError::Backend(_)), "{timeout:?}");
    }

    fn update_error(code: &str) -> SdkError<UpdateItemError, ()> {
        let meta = ErrorMetadata::builder().code(code).build();
        let e = if code == "ConditionalCheckFailedException" {
            // As the SDK parses it: the typed variant, carrying the code in its metadata.
            UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .meta(meta)
                    .build(),
            )
        } else {
            UpdateItemError::generic(meta)
        };
        SdkError::service_error(e, ())
    }

    #[test]
    fn a_condition_that_did_not_hold_is_an_answer_other_failures_are_errors() {
        type Outcome = Result<(), SdkError<UpdateItemError, ()>>;
        let ok: Outcome = Ok(());
        assert!(written(ok).unwrap());
        let failed: Outcome = Err(update_error("ConditionalCheckFailedException"));
        assert!(!written(failed).unwrap());
        let throttled: Outcome = Err(update_error("ProvisionedThroughputExceededException"));
        assert!(matches!(written(throttled), Err(StoreError::Backend(_))));
        assert!(matches!(
            written(Err::<(), _>(
                SdkError::<UpdateItemError, ()>::timeout_error("slow")
            )),
            Err(StoreError::Backend(_))
        ));
        let failed: Outcome = Err(update_error("ConditionalCheckFailedException"));
        assert!(matches!(
            must_write(failed),
            Err(StoreError::ConditionFailed)
        ));
        let ok: Outcome = Ok(());
        assert!(must_write(ok).is_ok());
    }

    #[test]
    fn puts_and_deletes_in_transactions_carry_their_condition() {
        let store = offline_store();
        let put = store
            .put(
                session_ref("KC1", call_ref_key("CA1")).unwrap(),
                Condition::absent(),
            )
            .unwrap();
        assert_eq!(condition_of(&put), "attribute_not_exists(pk)");
        assert_item_binds_exactly(&put);
        let delete = store.delete_if_session(call_ref_key("CA1"), "KC1").unwrap();
        assert_eq!(key_of(&delete), ("CALL#CA1".into(), "CALL".into()));
        assert_eq!(condition_of(&delete), "session_sid = :sid");
        assert_eq!(
            delete
                .delete()
                .unwrap()
                .expression_attribute_values()
                .unwrap()[":sid"],
            s("KC1")
        );
        assert_item_binds_exactly(&delete);
    }
}
