//! Routes: (proxy, caller) → the open session and the other party. A call is admitted by
//! one conditional write on its route, which proves the session open and hands the route back.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use super::{Condition, Item, OnlyIf, Store, StoreError, from_item, n, route_key, s};
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
    /// The session records its calls: the notice the caller hears before the other is
    /// dialled (the other hears it on answering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_notice: Option<String>,
    /// The other participant hears an announcement on answering.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other_announced: bool,
    /// The session's ttl (seconds of inactivity that close it; 0: none).
    #[serde(default)]
    pub ttl: u64,
    /// This route's copy of when inactivity closes the session (`now + ttl`): written at
    /// create and by every call this route admits. Other activity moves only the session's,
    /// so a copy in the past is checked against the session before the call is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_after: Option<i64>,
    /// The last call this route admitted and when: how `call-status` finds the session of
    /// that call's own leg when no dialled leg has named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_call_sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_call_at: Option<i64>,
}

/// What a route said of its last call before a call was noted on it: what
/// [`Store::forget_call`] puts back when the noted call turns out not to be let through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallNote {
    pub last_call_sid: Option<String>,
    pub last_call_at: Option<i64>,
    pub inactive_after: Option<i64>,
}

/// What the one write on a caller's route found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteCheck {
    /// The route exists (so its session is open: close deletes it in the close transaction),
    /// is before its `date_expiry` and not idle: the call was noted on it. The route as
    /// noted, and its note before.
    Open(Route, CallNote),
    /// No route: no open session for this caller on this number.
    Missing,
    /// The route's `date_expiry` has passed.
    Ended(Route),
    /// The route's copy of the inactivity limit has passed; the session's may not have.
    Idle(Route),
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
            recording_notice: session.recording_notice().map(str::to_owned),
            other_announced: other.announcement().is_some(),
            ttl: session.ttl,
            inactive_after: session.inactive_after(),
            last_call_sid: None,
            last_call_at: None,
        }
    }
}

impl Route {
    /// This route as [`NOTE_CALL`] leaves it.
    fn noted(mut self, call_sid: &str, now: i64) -> Route {
        self.last_call_sid = Some(call_sid.to_owned());
        self.last_call_at = Some(now);
        self.inactive_after = Some(now + self.ttl as i64);
        self
    }
}

/// What admitting a call writes on its route: the call, and the route's inactivity limit
/// restarted (`if_not_exists`: a route written before routes carried `ttl` counts as none).
const NOTE_CALL: &str = "SET last_call_sid = :call, last_call_at = :now, \
     inactive_after = :now + if_not_exists(#ttl, :zero)";

/// The route is live: it exists, its session has not reached `date_expiry`, and it is not
/// idle past its ttl.
fn route_live(now: i64) -> Condition {
    Condition::exists()
        .and(
            Condition::new("attribute_not_exists(date_expiry) OR date_expiry > :now")
                .value(":now", n(now)),
        )
        .and(
            Condition::new(
                "attribute_not_exists(#ttl) OR #ttl = :zero \
                 OR attribute_not_exists(inactive_after) OR inactive_after > :now",
            )
            .name("#ttl", "ttl")
            .value(":zero", n(0))
            .value(":now", n(now)),
        )
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

    /// Admits a call on the route (proxy, caller) in one request: a conditional `UpdateItem`
    /// that holds only while the route is live ([`route_live`]) and returns the route as it
    /// was (`ReturnValues=ALL_OLD`: the note it replaced can be put back, and the new one is
    /// known), or, when the condition fails, also as it was
    /// (`ReturnValuesOnConditionCheckFailure=ALL_OLD`, DynamoDB API reference, UpdateItem), so
    /// a refusal needs no second read. Close deletes the route in its transaction, so a
    /// close ordered before this write makes it fail: a close racing the call wins.
    pub async fn admit_route(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        call_sid: &str,
        now: i64,
    ) -> Result<RouteCheck, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(route_key(proxy, caller)))
            .update_expression(NOTE_CALL)
            .only_if(route_live(now))
            .expression_attribute_values(":call", s(call_sid))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(out) => {
                let item = out
                    .attributes
                    .ok_or_else(|| StoreError::Corrupt("the route came back empty".into()))?;
                let before: Route = from_item(item)?;
                let prior = CallNote {
                    last_call_sid: before.last_call_sid.clone(),
                    last_call_at: before.last_call_at,
                    inactive_after: before.inactive_after,
                };
                Ok(RouteCheck::Open(before.noted(call_sid, now), prior))
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item.clone().filter(|i| !i.is_empty()) {
                        None => Ok(RouteCheck::Missing),
                        Some(item) => {
                            let route: Route = from_item(item)?;
                            if route.date_expiry.is_some_and(|t| t <= now) {
                                Ok(RouteCheck::Ended(route))
                            } else {
                                Ok(RouteCheck::Idle(route))
                            }
                        }
                    }
                }
                _ => Err(StoreError::backend(e)),
            },
        }
    }

    /// Puts back the note a call replaced on its route (`prior`, from [`RouteCheck::Open`])
    /// when the call was not let through after all (the platform's intercept refused it): a
    /// refused call is no activity, and no callback of it may find the session through the
    /// route. Only while the route still holds this call's note; `Ok(false)` otherwise.
    pub async fn forget_call(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        call_sid: &str,
        prior: &CallNote,
    ) -> Result<bool, StoreError> {
        let mut sets = Vec::new();
        let mut removes = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(route_key(proxy, caller)));
        let fields = [
            (
                "last_call_sid",
                ":prior_sid",
                prior.last_call_sid.clone().map(s),
            ),
            ("last_call_at", ":prior_at", prior.last_call_at.map(n)),
            (
                "inactive_after",
                ":prior_inactive",
                prior.inactive_after.map(n),
            ),
        ];
        for (name, placeholder, value) in fields {
            match value {
                Some(v) => {
                    sets.push(format!("{name} = {placeholder}"));
                    update = update.expression_attribute_values(placeholder, v);
                }
                None => removes.push(name),
            }
        }
        let mut expression = String::new();
        if !sets.is_empty() {
            expression.push_str(&format!("SET {}", sets.join(", ")));
        }
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let r = update
            .update_expression(expression.trim())
            .only_if(Condition::new("last_call_sid = :call").value(":call", s(call_sid)))
            .send()
            .await;
        super::written(r)
    }

    /// The write that notes an admitted call on its route, as one item of a transaction
    /// (a call admitted after the session was read), only while the route is this session's.
    pub(super) fn note_call_on_route(
        &self,
        proxy: &PhoneNumber,
        caller: &PhoneNumber,
        session_sid: &str,
        call_sid: &str,
        now: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(route_key(proxy, caller)))
            .update_expression(NOTE_CALL)
            .only_if(Condition::of_session(session_sid))
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":call", s(call_sid))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":zero", n(0))
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
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
    /// The routes' copies of a session's end and inactivity after an update of its
    /// `date_expiry` or `ttl`: admission reads them from the route alone (one request), so
    /// they move with the session, in its transaction.
    pub(super) fn route_times_updates(
        &self,
        after: &Session,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        if !super::sessions::has_routes(after) {
            return Ok(Vec::new());
        }
        after
            .participants
            .iter()
            .map(|p| {
                let mut sets = vec!["#ttl = :ttl"];
                let mut removes = Vec::new();
                let mut route = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(route_key(&p.proxy_identifier, &p.identifier)))
                    .only_if(Condition::of_session(&after.sid))
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":ttl", n(after.ttl));
                match after.date_expiry {
                    Some(expiry) => {
                        sets.push("date_expiry = :expiry");
                        route = route.expression_attribute_values(":expiry", n(expiry));
                    }
                    None => removes.push("date_expiry"),
                }
                match after.inactive_after() {
                    Some(t) => {
                        sets.push("inactive_after = :inactive");
                        route = route.expression_attribute_values(":inactive", n(t));
                    }
                    None => removes.push("inactive_after"),
                }
                let mut expression = format!("SET {}", sets.join(", "));
                if !removes.is_empty() {
                    expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
                }
                let route = route.update_expression(expression).build()?;
                Ok(TransactWriteItem::builder().update(route).build())
            })
            .collect()
    }

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
