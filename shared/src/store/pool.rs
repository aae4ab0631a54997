//! The proxy number pool.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::{
    Condition, OnlyIf, Store, StoreError, from_item, must_write, n, number_key, to_item, with_key,
    written,
};
use crate::model::ProxyNumber;
use crate::phone::PhoneNumber;

impl Store {
    pub(super) fn count_number(
        &self,
        number: &PhoneNumber,
        delta: i64,
        now: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(number_key(number)))
            .update_expression("ADD in_use :d SET date_updated = :now")
            .only_if(Condition::exists())
            .expression_attribute_values(":d", n(delta))
            .expression_attribute_values(":now", n(now))
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Adds a number; `Ok(false)` when it is already in the pool.
    pub async fn add_number(&self, number: &ProxyNumber) -> Result<bool, StoreError> {
        let item = with_key(to_item(number)?, number_key(&number.phone_number));
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .only_if(Condition::absent())
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
            .only_if(
                Condition::exists().and(Condition::new("in_use <= :zero").value(":zero", n(0))),
            )
            .send()
            .await;
        must_write(r)
    }
}
