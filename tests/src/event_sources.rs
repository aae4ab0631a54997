//! Lambda's event source mappings, locally: the table's stream feeding `publish-events`, and
//! the event queue feeding `deliver-events`, each read with the function's own role (its
//! policy in `template.yaml`, enforced by `crate::iam`), and each function invoked through
//! the gateway's Invoke API as Lambda would invoke it.
//!
//! - Stream ("Using AWS Lambda with Amazon DynamoDB"): records in order per shard, in
//!   batches of at most `BatchSize` (100); a failed batch is retried, whole, and the shard
//!   waits (`MaximumRetryAttempts` 10, then the batch is given up, as the template's on-failure
//!   destination records it); only records matching the `FilterCriteria` reach the function.
//! - Queue ("Using Lambda with Amazon SQS"): ReceiveMessage of up to 10 messages with their
//!   system attributes; the function's `batchItemFailures` stay (they come back after their
//!   visibility timeout), every other message is deleted; a failed invocation deletes
//!   nothing. Short polls: the emulator serves one request at a time, and a long poll would
//!   hold it.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::{Value, json};

use crate::iam::{Denials, Policy, SqsGuard, StreamsGuard};

/// The template's FilterCriteria on PublishEventsFunction: `pk` starting with `SESSION#`.
pub const STREAM_FILTER_PREFIX: &str = "SESSION#";
/// The template's `MaximumRetryAttempts` on the stream.
const STREAM_RETRIES: u32 = 10;
/// How often an idle mapping polls again (Lambda polls a stream's shards four times a second).
const POLL_EVERY: Duration = Duration::from_millis(250);

/// A queue made for the stack: its logical id in the template, URL and ARN.
pub type LocalQueue = (String, String, String);

/// Creates every `AWS::SQS::Queue` of the template under `prefix`, with its FIFO-ness,
/// visibility timeout and redrive policy.
pub async fn create_queues(
    aws: &SdkConfig,
    queues: &[crate::template::QueueDef],
    prefix: &str,
) -> Result<Vec<LocalQueue>, String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = aws_sdk_sqs::Client::new(aws);
    let err = |e: String| format!("creating the event queues: {e}");
    let mut made: Vec<LocalQueue> = Vec::new();
    // Dead-letter queues first: a redrive policy names its target's ARN.
    let mut ordered: Vec<&crate::template::QueueDef> = queues.iter().collect();
    ordered.sort_by_key(|q| q.redrive.is_some());
    for q in ordered {
        let name = format!(
            "{prefix}-{}{}",
            q.logical_id,
            if q.fifo { ".fifo" } else { "" }
        );
        let mut req = sqs.create_queue().queue_name(&name);
        if q.fifo {
            req = req.attributes(A::FifoQueue, "true");
        }
        if let Some(v) = q.visibility_timeout {
            req = req.attributes(A::VisibilityTimeout, v.to_string());
        }
        if let Some((target, max)) = &q.redrive {
            let arn = made
                .iter()
                .find(|(id, _, _)| id == target)
                .map(|(_, _, arn)| arn.clone())
                .ok_or_else(|| err(format!("{}: no queue {target}", q.logical_id)))?;
            req = req.attributes(
                A::RedrivePolicy,
                json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string(),
            );
        }
        let url = req
            .send()
            .await
            .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
            .queue_url
            .ok_or_else(|| err("CreateQueue returned no URL".into()))?;
        let arn = crate::iam::sqs_queue_arn(crate::stack::REGION, &url);
        made.push((q.logical_id.clone(), url, arn));
    }
    Ok(made)
}

/// An SQS client held to `function`'s policy.
pub fn guarded_sqs(
    aws: &SdkConfig,
    function: &str,
    policy: Arc<Policy>,
    denials: &Denials,
) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(aws)
            .interceptor(SqsGuard {
                function: function.to_owned(),
                policy,
                region: crate::stack::REGION.to_owned(),
                denials: denials.clone(),
            })
            .build(),
    )
}

/// Invokes `function` through the gateway's Invoke API: its answer, or its error.
async fn invoke(
    http: &reqwest::Client,
    gateway: &str,
    function: &str,
    event: &Value,
) -> Result<Value, String> {
    let response = http
        .post(format!(
            "{gateway}/2015-03-31/functions/{function}/invocations"
        ))
        .timeout(Duration::from_secs(120))
        .json(event)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let failed = response.headers().contains_key("x-amz-function-error");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if failed {
        Err(body.to_string())
    } else {
        Ok(body)
    }
}

/// A stream attribute value in the DynamoDB JSON Lambda gives the function.
fn attribute_json(v: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as V;
    use base64::Engine as _;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match v {
        V::S(s) => json!({ "S": s }),
        V::N(n) => json!({ "N": n }),
        V::Bool(b) => json!({ "BOOL": b }),
        V::Null(b) => json!({ "NULL": b }),
        V::B(b) => json!({ "B": b64(b) }),
        V::Ss(l) => json!({ "SS": l }),
        V::Ns(l) => json!({ "NS": l }),
        V::Bs(l) => json!({ "BS": l.iter().map(b64).collect::<Vec<_>>() }),
        V::L(l) => json!({ "L": l.iter().map(attribute_json).collect::<Vec<_>>() }),
        V::M(m) => json!({ "M": image_json(m) }),
        _ => Value::Null,
    }
}

fn image_json(
    image: &std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
) -> Value {
    Value::Object(
        image
            .iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect(),
    )
}

/// One stream record as Lambda delivers it (`ApproximateCreationDateTime` in epoch seconds).
fn lambda_stream_record(
    r: &aws_sdk_dynamodbstreams::types::Record,
    stream_arn: &str,
) -> Option<Value> {
    let d = r.dynamodb.as_ref()?;
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": d.approximate_creation_date_time.map(|t| t.secs()),
        "Keys": d.keys.as_ref().map(image_json),
        "SequenceNumber": d.sequence_number,
        "SizeBytes": d.size_bytes,
        "StreamViewType": d.stream_view_type.as_ref().map(|v| v.as_str()),
    });
    if let Some(new) = &d.new_image {
        dynamodb["NewImage"] = image_json(new);
    }
    if let Some(old) = &d.old_image {
        dynamodb["OldImage"] = image_json(old);
    }
    Some(json!({
        "eventID": r.event_id,
        "eventName": r.event_name.as_ref().map(|n| n.as_str()),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": crate::stack::REGION,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }))
}

fn matches_filter(record: &Value) -> bool {
    record["dynamodb"]["Keys"]["pk"]["S"]
        .as_str()
        .is_some_and(|pk| pk.starts_with(STREAM_FILTER_PREFIX))
}

/// The stream → `publish-events` mapping, until the task is aborted.
pub fn spawn_stream_mapping(
    aws: &SdkConfig,
    stream_arn: String,
    policy: Arc<Policy>,
    denials: Denials,
    gateway: String,
) -> tokio::task::JoinHandle<()> {
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(
        aws_sdk_dynamodbstreams::config::Builder::from(aws)
            .interceptor(StreamsGuard {
                function: "publish-events".into(),
                policy,
                stream_arn: stream_arn.clone(),
                denials,
            })
            .build(),
    );
    let http = tsunagu::app::http_client();
    tokio::spawn(async move {
        let mut iterators: std::collections::HashMap<String, Option<String>> =
            std::collections::HashMap::new();
        loop {
            if let Err(e) =
                poll_stream(&streams, &stream_arn, &mut iterators, &http, &gateway).await
            {
                eprintln!("local stream mapping: {e}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    })
}

async fn poll_stream(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
    iterators: &mut std::collections::HashMap<String, Option<String>>,
    http: &reqwest::Client,
    gateway: &str,
) -> Result<(), String> {
    use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
    let described = streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .map_err(|e| DisplayErrorContext(e).to_string())?;
    let shards: Vec<String> = described
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| s.shard_id)
        .collect();
    for shard in shards {
        let iterator = match iterators.get(&shard) {
            Some(None) => continue, // a closed shard, read to its end
            Some(Some(it)) => it.clone(),
            None => streams
                .get_shard_iterator()
                .stream_arn(stream_arn)
                .shard_id(&shard)
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| DisplayErrorContext(e).to_string())?
                .shard_iterator
                .ok_or("GetShardIterator returned no iterator")?,
        };
        let page = streams
            .get_records()
            .shard_iterator(&iterator)
            .limit(100)
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        let records: Vec<Value> = page
            .records
            .unwrap_or_default()
            .iter()
            .filter_map(|r| lambda_stream_record(r, stream_arn))
            .filter(matches_filter)
            .collect();
        if !records.is_empty() {
            let event = json!({ "Records": records });
            let mut attempt = 0;
            // The shard waits for its batch: nothing behind it is read meanwhile.
            while let Err(e) = invoke(http, gateway, "publish-events", &event).await {
                attempt += 1;
                if attempt > STREAM_RETRIES {
                    eprintln!(
                        "publish-events failed {attempt} times; batch given up to the \
                         on-failure destination: {e}"
                    );
                    break;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
        iterators.insert(shard, page.next_shard_iterator);
    }
    Ok(())
}

/// The queue → `deliver-events` mapping, until the task is aborted.
pub fn spawn_queue_mapping(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    gateway: String,
) -> tokio::task::JoinHandle<()> {
    let http = tsunagu::app::http_client();
    tokio::spawn(async move {
        loop {
            match poll_queue(&sqs, &queue_url, &http, &gateway).await {
                Ok(0) => tokio::time::sleep(POLL_EVERY).await,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("local queue mapping: {e}");
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        }
    })
}

/// One poll: how many messages it received.
async fn poll_queue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    http: &reqwest::Client,
    gateway: &str,
) -> Result<usize, String> {
    use aws_sdk_sqs::error::DisplayErrorContext;
    use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| DisplayErrorContext(e).to_string())?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let queue_arn = crate::iam::sqs_queue_arn(crate::stack::REGION, queue_url);
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": crate::stack::REGION,
            })
        })
        .collect();
    let answer = invoke(
        http,
        gateway,
        "deliver-events",
        &json!({ "Records": records }),
    )
    .await;
    let Ok(answer) = answer else {
        // A failed invocation: every message comes back after its visibility timeout.
        return Ok(messages.len());
    };
    let failed: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !failed.contains(&m.message_id().unwrap_or_default()))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .ok()
        })
        .collect();
    if !done.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(done))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
    }
    Ok(messages.len())
}
