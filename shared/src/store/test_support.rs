//! For the store's unit tests: a store that never reaches the network, and a check that a
//! request binds exactly the placeholders its expressions use — DynamoDB refuses both an
//! unbound placeholder and an unused binding, and only at request time.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};

use super::{Item, Store};

/// Building requests needs a client; nothing here sends one.
pub(super) fn offline_store() -> Store {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("ap-northeast-1"))
        .build();
    Store::new(aws_sdk_dynamodb::Client::from_conf(config), "table")
}

/// The `#name` or `:value` placeholders in `expression`.
pub(super) fn placeholders(expression: &str, sigil: char) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = expression;
    while let Some(i) = rest.find(sigil) {
        let tail = &rest[i + 1..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        found.insert(format!("{sigil}{}", &tail[..end]));
        rest = &tail[end..];
    }
    found
}

/// Asserts that the names and values bound are exactly those the expressions use.
pub(super) fn assert_binds_exactly(
    expressions: &[&str],
    names: Option<&HashMap<String, String>>,
    values: Option<&HashMap<String, AttributeValue>>,
) {
    let used = |sigil| -> BTreeSet<String> {
        expressions
            .iter()
            .flat_map(|e| placeholders(e, sigil))
            .collect()
    };
    let bound_names: BTreeSet<String> = names
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    let bound_values: BTreeSet<String> = values
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(bound_names, used('#'), "names of {expressions:?}");
    assert_eq!(bound_values, used(':'), "values of {expressions:?}");
}

/// The same check for one item of a transaction, whatever its kind.
pub(super) fn assert_item_binds_exactly(item: &TransactWriteItem) {
    if let Some(u) = item.update() {
        let mut expressions = vec![u.update_expression()];
        expressions.extend(u.condition_expression());
        assert_binds_exactly(
            &expressions,
            u.expression_attribute_names(),
            u.expression_attribute_values(),
        );
    } else if let Some(p) = item.put() {
        assert_binds_exactly(
            &p.condition_expression().into_iter().collect::<Vec<_>>(),
            p.expression_attribute_names(),
            p.expression_attribute_values(),
        );
    } else if let Some(d) = item.delete() {
        assert_binds_exactly(
            &d.condition_expression().into_iter().collect::<Vec<_>>(),
            d.expression_attribute_names(),
            d.expression_attribute_values(),
        );
    } else {
        panic!("not a put, update or delete: {item:?}");
    }
}

/// The condition of one item of a transaction.
pub(super) fn condition_of(item: &TransactWriteItem) -> &str {
    item.update()
        .and_then(|u| u.condition_expression())
        .or_else(|| item.put().and_then(|p| p.condition_expression()))
        .or_else(|| item.delete().and_then(|d| d.condition_expression()))
        .unwrap_or_default()
}

/// The key an item of a transaction writes.
pub(super) fn key_of(item: &TransactWriteItem) -> (String, String) {
    let k: &Item = item
        .update()
        .map(|u| u.key())
        .or_else(|| item.delete().map(|d| d.key()))
        .or_else(|| item.put().map(|p| p.item()))
        .expect("a put, update or delete");
    let text = |name: &str| k[name].as_s().unwrap().clone();
    (text("pk"), text("sk"))
}
