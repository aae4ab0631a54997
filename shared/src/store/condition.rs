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
