//! The proxy number pool.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};

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

    /// Sets a pool number's `is_reserved`; `None` when it is not in the pool.
    pub async fn set_number_reserved(
        &self,
        number: &PhoneNumber,
        is_reserved: bool,
        now: i64,
    ) -> Result<Option<ProxyNumber>, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(number_key(number)))
            .update_expression("SET is_reserved = :reserved, date_updated = :now")
            .only_if(Condition::exists())
            .expression_attribute_values(":reserved", AttributeValue::Bool(is_reserved))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match r {
            Ok(out) => out.attributes.map(from_item).transpose(),
            Err(e) if super::is_condition_failure(&e) => Ok(None),
            Err(e) => Err(StoreError::backend(e)),
        }
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_item_binds_exactly, condition_of, offline_store};
    use super::*;

    #[test]
    fn a_number_round_trips_through_its_item() {
        let number = ProxyNumber {
            phone_number: PhoneNumber::parse("050-3123-4567").unwrap(),
            is_reserved: true,
            in_use: 3,
            date_created: 10,
            date_updated: 20,
        };
        let item = with_key(to_item(&number).unwrap(), number_key(&number.phone_number));
        assert_eq!(item["sk"].as_s().unwrap(), "NUMBER#+815031234567");
        let back: ProxyNumber = from_item(item).unwrap();
        assert_eq!(back, number);
    }

    #[test]
    fn a_use_count_changes_only_on_a_number_still_in_the_pool() {
        let store = offline_store();
        let number = PhoneNumber::parse("050-3123-4567").unwrap();
        let item = store.count_number(&number, -1, 50).unwrap();
        assert_eq!(condition_of(&item), "attribute_exists(pk)");
        let update = item.update().unwrap();
        assert_eq!(
            update.update_expression(),
            "ADD in_use :d SET date_updated = :now"
        );
        assert_eq!(update.expression_attribute_values().unwrap()[":d"], n(-1));
        assert_item_binds_exactly(&item);
    }
}
