//! Routes: (proxy, caller) → the open session and the other party, read in one request.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::{Condition, Item, OnlyIf, Store, StoreError, from_item, n, route_key};
use crate::model::{Participant, Session};
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

impl Route {
    /// The route `participant` calls through: to `other`, shown `other`'s own proxy.
    pub fn of(session: &Session, participant: &Participant, other: &Participant) -> Self {
        Self {
            session_sid: session.sid.clone(),
            participant_sid: participant.sid.clone(),
            other_participant_sid: other.sid.clone(),
            other_identifier: other.identifier.clone(),
            other_proxy: other.proxy_identifier.clone(),
            date_expiry: session.date_expiry,
            call_time_limit: session.call_time_limit,
            timed: session.is_timed(),
        }
    }
}

/// The proxy number a participation item names in its sort key.
fn proxy_of_participation(item: &Item) -> Result<PhoneNumber, StoreError> {
    let sk = item
        .get("sk")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or_default();
    let number = sk.trim_start_matches("PROXY#");
    PhoneNumber::parse(number).map_err(|e| StoreError::Corrupt(e.to_string()))
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
        items.iter().map(proxy_of_participation).collect()
    }

    /// The routes carry a copy of `date_expiry` (so routing is one read): these writes move
    /// it with the session's, each only while the route still belongs to this session.
    pub(super) fn route_expiry_updates(
        &self,
        session: &Session,
        expiry: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        if !super::sessions::has_routes(session) {
            return Ok(Vec::new());
        }
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        assert_item_binds_exactly, condition_of, key_of, offline_store,
    };
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::super::{to_item, with_key};
    use super::*;
    use crate::model::sample_session;

    #[test]
    fn a_route_round_trips_through_its_item() {
        let session = Session {
            date_expiry: Some(9_000),
            call_time_limit: Some(300),
            ..sample_session()
        };
        let [kp1, kp2] = &session.participants[..] else {
            panic!("two participants")
        };
        let route = Route::of(&session, kp2, kp1);
        assert_eq!(route.participant_sid, "KP2");
        assert_eq!(route.other_identifier, kp1.identifier);
        assert_eq!(route.other_proxy, kp1.proxy_identifier);
        assert!(
            route.timed,
            "a warning lead and a limit: through a conference"
        );
        let item = with_key(
            to_item(&route).unwrap(),
            route_key(&kp2.proxy_identifier, &kp2.identifier),
        );
        let back: Route = from_item(item).unwrap();
        assert_eq!(back, route);
    }

    #[test]
    fn a_participation_names_its_proxy_in_the_sort_key() {
        let kp1 = PhoneNumber::parse("090-1234-5678").unwrap();
        let proxy = PhoneNumber::parse("050-3123-4567").unwrap();
        let item = super::super::participation_key(&kp1, &proxy);
        assert_eq!(proxy_of_participation(&item).unwrap(), proxy);
        let mut garbled = item;
        garbled.insert("sk".into(), AttributeValue::S("PROXY#not-a-number".into()));
        assert!(matches!(
            proxy_of_participation(&garbled),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn route_expiry_moves_only_on_routes_still_of_this_session() {
        let store = offline_store();
        let session = sample_session();
        let items = store.route_expiry_updates(&session, 9_000).unwrap();
        assert_eq!(items.len(), 2);
        for (item, p) in items.iter().zip(&session.participants) {
            assert_eq!(
                key_of(item),
                (
                    format!("ROUTE#{}", p.proxy_identifier),
                    format!("CALLER#{}", p.identifier)
                )
            );
            assert_eq!(condition_of(item), "session_sid = :sid");
            assert_item_binds_exactly(item);
        }
    }
}
