//! `Idempotency-Key` records for the API.

use serde::{Deserialize, Serialize};

use super::{
    Condition, OnlyIf, Store, StoreError, from_item, idempotency_key, is_condition_failure, n, s,
    to_item, with_key, written,
};

pub(super) const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

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

impl From<IdempotencyItem> for Claim {
    /// What a record that could not be claimed holds: a response to replay, or a request
    /// still being processed.
    fn from(existing: IdempotencyItem) -> Self {
        match (
            existing.status.as_str(),
            existing.response_status,
            existing.response_body,
        ) {
            (COMPLETED, Some(status), Some(body)) => Claim::Completed {
                request_hash: existing.request_hash,
                status,
                body,
            },
            _ => Claim::InProgress {
                request_hash: existing.request_hash,
            },
        }
    }
}

/// A key may be claimed when no live record holds it: none, an expired one (TTL deletion
/// lags), or a claim whose request was abandoned.
fn claimable(now: i64) -> Condition {
    Condition::absent()
        .or(Condition::new("expire_at < :now").value(":now", n(now)))
        .or(Condition::claim_in_progress()
            .and(Condition::new("in_progress_until < :now").value(":now", n(now))))
}

impl Store {
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
                status: IN_PROGRESS.into(),
                request_hash: request_hash.to_owned(),
                response_status: None,
                response_body: None,
                expire_at: now + keep_for,
                in_progress_until: now + in_progress_for,
            })?,
            idempotency_key(key_),
        );
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .only_if(claimable(now))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Claim::New),
            Err(e) if is_condition_failure(&e) => {
                let existing: IdempotencyItem = self
                    .get(idempotency_key(key_))
                    .await?
                    .map(from_item)
                    .transpose()?
                    .ok_or(StoreError::ConditionFailed)?;
                Ok(existing.into())
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
            .set_key(Some(idempotency_key(key_)))
            .update_expression(
                "SET #status = :done, response_status = :code, response_body = :body",
            )
            .only_if(Condition::claim_in_progress())
            .expression_attribute_values(":done", s(COMPLETED))
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
            .set_key(Some(idempotency_key(key_)))
            .only_if(Condition::claim_in_progress())
            .send()
            .await;
        written(r).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str, response: Option<(u16, &str)>) -> IdempotencyItem {
        IdempotencyItem {
            status: status.into(),
            request_hash: "h1".into(),
            response_status: response.map(|r| r.0),
            response_body: response.map(|r| r.1.to_owned()),
            expire_at: 1_000,
            in_progress_until: 100,
        }
    }

    #[test]
    fn a_record_round_trips_through_its_item() {
        let item = with_key(
            to_item(&record(COMPLETED, Some((201, "{}")))).unwrap(),
            idempotency_key("k1"),
        );
        assert_eq!(item["pk"].as_s().unwrap(), "IDEMPOTENCY#k1");
        let back: IdempotencyItem = from_item(item).unwrap();
        assert_eq!(
            Claim::from(back),
            Claim::from(record(COMPLETED, Some((201, "{}"))))
        );
    }

    #[test]
    fn only_a_completed_record_with_its_response_is_replayed() {
        assert_eq!(
            Claim::from(record(COMPLETED, Some((201, "{\"sid\":\"KC1\"}")))),
            Claim::Completed {
                request_hash: "h1".into(),
                status: 201,
                body: "{\"sid\":\"KC1\"}".into(),
            }
        );
        let in_progress = Claim::InProgress {
            request_hash: "h1".into(),
        };
        assert_eq!(Claim::from(record(IN_PROGRESS, None)), in_progress);
        assert_eq!(Claim::from(record(COMPLETED, None)), in_progress);
    }

    #[test]
    fn a_key_is_claimable_when_absent_expired_or_abandoned() {
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name("t")
            .set_item(Some(idempotency_key("k1")))
            .only_if(claimable(50))
            .build()
            .unwrap();
        assert_eq!(
            put.condition_expression(),
            Some(
                "attribute_not_exists(pk) OR expire_at < :now \
                 OR (#status = :in_progress AND in_progress_until < :now)"
            )
        );
        let values = put.expression_attribute_values().unwrap();
        assert_eq!(values[":now"], n(50));
        assert_eq!(values[":in_progress"], s(IN_PROGRESS));
        super::super::test_support::assert_binds_exactly(
            &[put.condition_expression().unwrap()],
            put.expression_attribute_names(),
            Some(values),
        );
    }
}
