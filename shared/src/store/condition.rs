//! Condition expressions, each carrying the attribute names and values it refers to, so a
//! condition used by several writes is written once and always bound the same way.
//! DynamoDB refuses a request whose expressions leave a placeholder unbound or bind one
//! they don't use; a `Condition` binds exactly what its expression uses.

use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::builders::{DeleteBuilder, PutBuilder, UpdateBuilder};

use super::{n, s};
use crate::model::SessionStatus;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Condition {
    expression: String,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Condition {
    pub(super) fn new(expression: impl Into<String>) -> Self {
        Self {
            expression: expression.into(),
            names: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Binds `#placeholder` to the attribute `name`.
    pub(super) fn name(mut self, placeholder: &'static str, name: &'static str) -> Self {
        self.names.push((placeholder, name));
        self
    }

    /// Binds `:placeholder` to `value`.
    pub(super) fn value(mut self, placeholder: &'static str, value: AttributeValue) -> Self {
        self.values.push((placeholder, value));
        self
    }

    /// Both must hold. An operand with an OR outside parentheses is parenthesised (AND
    /// binds tighter than OR).
    pub(super) fn and(self, other: Condition) -> Self {
        let expression = format!(
            "{} AND {}",
            group_if(&self.expression, " OR "),
            group_if(&other.expression, " OR ")
        );
        self.merge(other, expression)
    }

    /// Either holds. An operand with an AND outside parentheses is parenthesised, not
    /// because precedence needs it but so the expression reads as it is evaluated.
    pub(super) fn or(self, other: Condition) -> Self {
        let expression = format!(
            "{} OR {}",
            group_if(&self.expression, " AND "),
            group_if(&other.expression, " AND ")
        );
        self.merge(other, expression)
    }

    fn merge(mut self, other: Condition, expression: String) -> Self {
        // One request has one value per placeholder: the parts must agree on shared ones.
        debug_assert!(
            other
                .values
                .iter()
                .all(|(p, v)| self.values.iter().all(|(q, w)| p != q || v == w)),
            "a placeholder bound to two values in {expression}"
        );
        self.expression = expression;
        self.names.extend(other.names);
        self.values.extend(other.values);
        self
    }

    // ---- the conditions used by more than one write ------------------------------------

    /// The item does not exist yet: a write that creates, never overwrites.
    pub(super) fn absent() -> Self {
        Self::new("attribute_not_exists(pk)")
    }

    /// A unique name no session holds: never written, or released when its session closed.
    pub(super) fn unique_name_free() -> Self {
        Self::new("attribute_not_exists(pk) OR attribute_exists(released_at)")
    }

    /// The item exists: a write that updates, never creates.
    pub(super) fn exists() -> Self {
        Self::new("attribute_exists(pk)")
    }

    /// The session is open (open or in progress): it routes calls and may still change.
    pub(super) fn session_open() -> Self {
        Self::new("#status IN (:open, :in_progress)")
            .name("#status", "status")
            .value(":open", s(SessionStatus::Open.as_str()))
            .value(":in_progress", s(SessionStatus::InProgress.as_str()))
    }

    /// The item (a route, a participation, a call ref) belongs to session `sid`.
    pub(super) fn of_session(sid: &str) -> Self {
        Self::new("session_sid = :sid").value(":sid", s(sid))
    }

    /// The live call's deadline is still `deadline`, bound as `placeholder`.
    pub(super) fn live_deadline_is(placeholder: &'static str, deadline: i64) -> Self {
        Self::new(format!("#live.#deadline = {placeholder}"))
            .name("#live", "live_call")
            .name("#deadline", "deadline")
            .value(placeholder, n(deadline))
    }

    /// The live call is the one noted with `mode` and `limit`, and not yet connected.
    pub(super) fn live_call_unconnected(mode: crate::model::CallMode, limit: u64) -> Self {
        Self::new(
            "attribute_exists(#live) AND attribute_not_exists(#live.#deadline) \
             AND #live.#mode = :mode AND #live.#limit = :limit",
        )
        .name("#live", "live_call")
        .name("#deadline", "deadline")
        .name("#mode", "mode")
        .name("#limit", "limit")
        .value(":mode", s(mode.as_str()))
        .value(":limit", n(limit))
    }

    /// The conference has not ended: its callbacks never bring it back.
    pub(super) fn conference_not_ended() -> Self {
        Self::new("attribute_not_exists(ended_at)")
    }

    /// An idempotency record still being processed.
    pub(super) fn claim_in_progress() -> Self {
        Self::new("#status = :in_progress")
            .name("#status", "status")
            .value(":in_progress", s(super::idempotency::IN_PROGRESS))
    }
}

/// `expression` in parentheses when `operator` appears in it outside any.
fn group_if(expression: &str, operator: &str) -> String {
    let mut depth = 0i32;
    let top_level = expression.char_indices().any(|(i, c)| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        depth == 0 && expression[i..].starts_with(operator)
    });
    if top_level {
        format!("({expression})")
    } else {
        expression.to_owned()
    }
}

/// Sets a condition on a request, with its names and values.
pub(super) trait OnlyIf: Sized {
    fn only_if(self, condition: Condition) -> Self;
}

macro_rules! only_if_for {
    ($($builder:ty),*) => {$(
        impl OnlyIf for $builder {
            fn only_if(self, condition: Condition) -> Self {
                let mut b = self.condition_expression(condition.expression);
                for (placeholder, name) in condition.names {
                    b = b.expression_attribute_names(placeholder, name);
                }
                for (placeholder, value) in condition.values {
                    b = b.expression_attribute_values(placeholder, value);
                }
                b
            }
        }
    )*};
}

only_if_for!(
    UpdateItemFluentBuilder,
    PutItemFluentBuilder,
    DeleteItemFluentBuilder,
    UpdateBuilder,
    PutBuilder,
    DeleteBuilder
);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::types::Update;

    use super::super::test_support::{assert_binds_exactly, placeholders};
    use super::*;

    fn assert_self_contained(c: &Condition) {
        let names: HashMap<String, String> = c
            .names
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let values: HashMap<String, AttributeValue> = c
            .values
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_binds_exactly(&[&c.expression], Some(&names), Some(&values));
    }

    #[test]
    fn placeholders_are_read_whole() {
        let found = placeholders("#live.#deadline = :from AND x < :max_1", ':');
        assert_eq!(found.into_iter().collect::<Vec<_>>(), [":from", ":max_1"]);
        let found = placeholders("#live.#deadline = :from", '#');
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["#deadline", "#live"]
        );
    }

    #[test]
    fn every_shared_condition_binds_exactly_what_it_uses() {
        for c in [
            Condition::absent(),
            Condition::exists(),
            Condition::session_open(),
            Condition::of_session("KC1"),
            Condition::live_deadline_is(":from", 100),
            Condition::conference_not_ended(),
            Condition::claim_in_progress(),
        ] {
            assert_self_contained(&c);
        }
    }

    #[test]
    fn the_open_condition_admits_exactly_the_statuses_that_route_calls() {
        let c = Condition::session_open();
        assert_eq!(c.expression, "#status IN (:open, :in_progress)");
        assert_eq!(c.names, [("#status", "status")]);
        let admitted: Vec<&str> = c
            .values
            .iter()
            .map(|(_, v)| v.as_s().unwrap().as_str())
            .collect();
        for status in [
            SessionStatus::Open,
            SessionStatus::InProgress,
            SessionStatus::Closed,
        ] {
            assert_eq!(
                admitted.contains(&status.as_str()),
                status.is_open(),
                "{status:?}"
            );
        }
    }

    #[test]
    fn and_groups_an_or_and_or_groups_an_and() {
        let open_and_active = Condition::session_open()
            .and(
                Condition::new("attribute_not_exists(date_expiry) OR date_expiry > :now")
                    .value(":now", n(5)),
            )
            .and(
                Condition::new("#ttl = :zero OR inactive_after > :now")
                    .name("#ttl", "ttl")
                    .value(":zero", n(0)),
            );
        assert_eq!(
            open_and_active.expression,
            "#status IN (:open, :in_progress) AND (attribute_not_exists(date_expiry) OR date_expiry > :now) \
             AND (#ttl = :zero OR inactive_after > :now)"
        );
        assert_self_contained(&open_and_active);

        let either = Condition::absent()
            .or(Condition::new("expire_at < :now").value(":now", n(5)))
            .or(Condition::claim_in_progress().and(Condition::new("in_progress_until < :now")));
        assert_eq!(
            either.expression,
            "attribute_not_exists(pk) OR expire_at < :now \
             OR (#status = :in_progress AND in_progress_until < :now)"
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a placeholder bound to two values")]
    fn parts_binding_one_placeholder_differently_are_refused() {
        let _ = Condition::live_deadline_is(":d", 100)
            .and(Condition::new("#live.#warned_for <> :d").value(":d", n(200)));
    }

    #[test]
    fn an_operator_inside_parentheses_needs_no_more() {
        assert_eq!(group_if("a OR b", " OR "), "(a OR b)");
        assert_eq!(group_if("(a OR b)", " OR "), "(a OR b)");
        assert_eq!(
            group_if("x IN (:a, :b) AND (a OR b)", " OR "),
            "x IN (:a, :b) AND (a OR b)"
        );
        assert_eq!(group_if("a AND b", " OR "), "a AND b");
    }

    #[test]
    fn only_if_sets_the_expression_with_its_names_and_values() {
        let update = Update::builder()
            .table_name("t")
            .key("pk", AttributeValue::S("SESSION#KC1".into()))
            .update_expression("SET date_updated = :now")
            .expression_attribute_values(":now", n(5))
            .only_if(Condition::session_open())
            .build()
            .unwrap();
        assert_eq!(
            update.condition_expression(),
            Some("#status IN (:open, :in_progress)")
        );
        let values = update.expression_attribute_values().unwrap();
        assert_eq!(values[":now"], n(5), "the request's own values stay");
        assert_eq!(values[":open"], s("open"));
        assert_eq!(values[":in_progress"], s("in-progress"));
        assert_eq!(
            update.expression_attribute_names().unwrap()["#status"],
            "status"
        );
    }
}
