//! The platform's events, from the table's stream to `EVENT_CALLBACK_URL`:
//! - [`publish`] (`publish-events`, on the DynamoDB stream) turns each record into events
//!   (`events::from_change`) and queues them on the FIFO queue, grouped by session;
//! - [`deliver`] (`deliver-events`, on that queue) posts each one, signed, and asks for a
//!   later retry of what the platform did not take.
//!
//! Nothing is lost in between: a record stays in the stream until `publish` succeeded for its
//! batch, and a message stays in the queue until `deliver` acknowledged it, or goes to the
//! dead-letter queue after the queue's `maxReceiveCount` (docs/DESIGN.md, Events).

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde_json::{Value, json};

use crate::app::App;
use crate::callback;
use crate::events::{self, Change, ChangeKind, Event};

/// How long the platform has to answer one event.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQS caps a message's invisibility at 12 hours ("ChangeMessageVisibility").
pub const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// SendMessageBatch takes at most 10 entries.
const BATCH: usize = 10;

/// One DynamoDB-JSON image (`{"status":{"S":"open"},…}`) as plain JSON.
fn plain_image(image: &Value) -> Result<Value, String> {
    let item: serde_dynamo::Item =
        serde_json::from_value(image.clone()).map_err(|e| format!("image: {e}"))?;
    serde_dynamo::from_item(item).map_err(|e| format!("image: {e}"))
}

/// The events of a DynamoDB stream event (Lambda's `{"Records":[…]}`), in record order.
pub fn events_of_stream(event: &Value) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    for record in event["Records"].as_array().into_iter().flatten() {
        let record_id = record["eventID"]
            .as_str()
            .ok_or("a stream record without eventID")?;
        let kind = ChangeKind::parse(record["eventName"].as_str().unwrap_or_default())
            .ok_or_else(|| format!("record {record_id}: unknown eventName"))?;
        let dynamodb = &record["dynamodb"];
        let old = match dynamodb.get("OldImage") {
            Some(image) => Some(plain_image(image)?),
            None => None,
        };
        let new = match dynamodb.get("NewImage") {
            Some(image) => Some(plain_image(image)?),
            None => None,
        };
        // Lambda gives epoch seconds (a number, fractional for some sources).
        let approximate_created = dynamodb["ApproximateCreationDateTime"]
            .as_f64()
            .unwrap_or_default() as i64;
        out.extend(
            events::from_change(&Change {
                record_id,
                kind,
                old: old.as_ref(),
                new: new.as_ref(),
                approximate_created,
            })
            .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

/// `publish-events`: queue the events of one stream batch. Any failure fails the whole
/// batch, which Lambda retries (halved, `BisectBatchOnFunctionError`); events queued by a
/// failed attempt are queued again with the same ids, which the FIFO queue drops within
/// its five-minute de-duplication window and the platform drops by id after it.
pub async fn publish(app: &App, event: &Value) -> Result<Value, String> {
    let events = events_of_stream(event)?;
    if app.config.event_callback_url.is_none() {
        // Events are off: nothing is queued, so nothing waits to be delivered later.
        return Ok(json!({ "published": 0, "off": true }));
    }
    let queue = app
        .config
        .event_queue_url
        .as_deref()
        .ok_or("EVENT_QUEUE_URL is not set")?;
    let sqs = app.sqs.as_ref().ok_or("no SQS client")?;
    for chunk in events.chunks(BATCH) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, e) in chunk.iter().enumerate() {
            let body = serde_json::to_string(e).map_err(|e| e.to_string())?;
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    // Ordered per session; the id makes a re-sent event a duplicate.
                    .message_group_id(&e.session_sid)
                    .message_deduplication_id(&e.id)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        let sent = sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "SendMessageBatch: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })?;
        if !sent.failed().is_empty() {
            // Later events of a session must not overtake these: fail the batch, retry all.
            return Err(format!(
                "SendMessageBatch refused {} event(s): {:?}",
                sent.failed().len(),
                sent.failed()
                    .iter()
                    .map(|f| f.message().unwrap_or(f.code()))
                    .collect::<Vec<_>>()
            ));
        }
    }
    tracing::info!(published = events.len(), "events queued");
    Ok(json!({ "published": events.len() }))
}

/// The delay before the `receive_count`-th retry: `base`, doubled each time, capped by SQS.
pub fn backoff_seconds(base: u64, receive_count: u32) -> u64 {
    let doublings = receive_count.saturating_sub(1).min(20);
    base.saturating_mul(1 << doublings)
        .min(MAX_VISIBILITY_SECONDS)
}

/// `deliver-events`: post each message of an SQS batch to the platform. The answer lists the
/// messages to retry (`ReportBatchItemFailures`); everything else Lambda deletes.
///
/// On a FIFO queue, once a message of a group fails, every later message of that group in
/// the batch is reported failed too, unsent, so the group keeps its order ("Handling errors
/// for an SQS event source in Lambda", FIFO queues).
pub async fn deliver(app: &App, event: &Value) -> Result<Value, String> {
    let mut failed_groups: HashSet<String> = HashSet::new();
    let mut failures = Vec::new();
    for record in event["Records"].as_array().into_iter().flatten() {
        let message_id = record["messageId"].as_str().unwrap_or_default().to_owned();
        let group = record["attributes"]["MessageGroupId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if failed_groups.contains(&group) {
            // Released at once, yet they wait for the failed one: "When you receive a
            // message with a message group ID, no more messages for the same message group
            // ID are returned unless you delete the message or it becomes visible" (Amazon
            // SQS Developer Guide, "Using the message group ID with Amazon SQS FIFO queues").
            // Left in flight, they would hold the group for the queue's whole visibility
            // timeout, whatever the backoff.
            hide_for(app, record, 0).await;
            failures.push(json!({ "itemIdentifier": message_id }));
            continue;
        }
        let body = record["body"].as_str().unwrap_or_default();
        match send(app, body).await {
            Ok(()) => {}
            Err(why) => {
                let receive_count: u32 = record["attributes"]["ApproximateReceiveCount"]
                    .as_str()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                tracing::warn!(
                    message_id,
                    session_sid = group,
                    receive_count,
                    error = why,
                    "event not delivered; will retry"
                );
                let delay = backoff_seconds(app.config.event_retry_base_seconds, receive_count);
                hide_for(app, record, delay).await;
                failed_groups.insert(group);
                failures.push(json!({ "itemIdentifier": message_id }));
            }
        }
    }
    Ok(json!({ "batchItemFailures": failures }))
}

/// Posts one event; Ok only for a 2xx answer in time.
async fn send(app: &App, body: &str) -> Result<(), String> {
    let Some(url) = app.config.event_callback_url.as_deref() else {
        // Turned off after the event was queued: dropped, as documented (README, Events).
        tracing::warn!("EVENT_CALLBACK_URL is not set; queued event dropped");
        return Ok(());
    };
    let event: Event = serde_json::from_str(body).map_err(|e| format!("not an event: {e}"))?;
    let answer = callback::post_json(app, url, body, DELIVERY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status.is_success() {
        tracing::info!(
            event_id = event.id,
            event_type = event.kind,
            "event delivered"
        );
        Ok(())
    } else {
        Err(format!("the platform answered {}", answer.status))
    }
}

/// Exponential backoff through the message's visibility timeout: it comes back after
/// `delay` seconds. If this fails, it still comes back, after the queue's own timeout.
async fn hide_for(app: &App, record: &Value, delay: u64) {
    let (Some(sqs), Some(queue), Some(handle)) = (
        app.sqs.as_ref(),
        app.config.event_queue_url.as_deref(),
        record["receiptHandle"].as_str(),
    ) else {
        return;
    };
    if let Err(e) = sqs
        .change_message_visibility()
        .queue_url(queue)
        .receipt_handle(handle)
        .visibility_timeout(i32::try_from(delay).unwrap_or(i32::MAX))
        .send()
        .await
    {
        tracing::warn!(
            error = %aws_sdk_sqs::error::DisplayErrorContext(e),
            "ChangeMessageVisibility failed; the queue's visibility timeout applies"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_twelve_hours() {
        assert_eq!(backoff_seconds(30, 1), 30);
        assert_eq!(backoff_seconds(30, 2), 60);
        assert_eq!(backoff_seconds(30, 4), 240);
        assert_eq!(backoff_seconds(30, 40), MAX_VISIBILITY_SECONDS);
        assert_eq!(backoff_seconds(0, 3), 0);
    }

    #[test]
    fn a_stream_event_as_lambda_gives_it_becomes_events() {
        let event: Value =
            serde_json::from_str(include_str!("../../events/publish-events.json")).unwrap();
        let events = events_of_stream(&event).unwrap();
        let types: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            types,
            [
                "session.created",
                "participant.added",
                "participant.added",
                "interaction.completed"
            ]
        );
        assert!(
            events
                .iter()
                .all(|e| e.session_sid == events[0].session_sid)
        );
        assert_eq!(events[3].data["duration"], 61);
    }
}
