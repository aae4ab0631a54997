//! Routes: (proxy, caller) → the open session and the other party, read in one request.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::{Condition, OnlyIf, Store, StoreError, from_item, n, route_key};
use crate::model::Session;
use crate::phone::PhoneNumber;

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

impl Store {
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

    /// The routes carry a copy of `date_expiry` (so routing is one read): these writes move
    /// it with the session's, each only while the route still belongs to this session.
    pub(super) fn route_expiry_updates(
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
                    .only_if(Condition::of_session(&session.sid))
                    .expression_attribute_values(":expiry", n(expiry))
                    .build()?;
                Ok(TransactWriteItem::builder().update(route).build())
            })
            .collect()
    }
}
