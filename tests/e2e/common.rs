//! Shared by the end-to-end tests: starting a stack and reading the table directly.

use aws_sdk_dynamodb::types::AttributeValue;
use tsunagu_tests::stack::{Options, Stack};

pub const A: &str = "090-1234-5678";
pub const B: &str = "080-9876-5432";
pub const P1: &str = "050-3123-4567";
pub const P2: &str = "050-3123-4568";

pub async fn stack() -> Stack {
    stack_with(Options::default()).await
}

pub async fn stack_with(options: Options) -> Stack {
    Stack::start(options)
        .await
        .unwrap_or_else(|e| panic!("local stack: {e}"))
}

/// A stack whose events go to `receiver` (`EVENT_CALLBACK_URL`), with `extra` configuration.
pub async fn stack_sending_to(
    receiver: &tsunagu_tests::receiver::Receiver,
    extra: &[(&str, &str)],
) -> Stack {
    let mut env = vec![("EVENT_CALLBACK_URL".to_owned(), receiver.url.clone())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    stack_with(Options {
        env,
        ..Options::default()
    })
    .await
}

pub fn e164(n: &str) -> String {
    tsunagu::phone::PhoneNumber::parse(n).unwrap().to_string()
}

/// Every item whose pk starts with `prefix`. Tests may Scan; the product never does.
pub async fn items(
    stack: &Stack,
    prefix: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let client = aws_sdk_dynamodb::Client::new(&stack.aws);
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(&stack.table)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(":p", AttributeValue::S(prefix.into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return out,
        }
    }
}

pub async fn item_count(stack: &Stack) -> usize {
    items(stack, "").await.len()
}

pub fn session_body(a: &str, b: &str) -> serde_json::Value {
    serde_json::json!({"participants": [{"identifier": a}, {"identifier": b}]})
}

/// An open session of `a` and `b` on `proxy`, created `now`, with the API's defaults; tests
/// change the fields they are about. For writing straight to the store.
pub fn session_fixture(now: i64, a: &str, b: &str, proxy: &str) -> tsunagu::model::Session {
    use tsunagu::model::{Extension, Participant, Session, SessionStatus};
    use tsunagu::phone::PhoneNumber;
    let participant = |identifier: &str| Participant {
        sid: tsunagu::ids::new_sid(tsunagu::ids::PARTICIPANT),
        identifier: PhoneNumber::parse(identifier).unwrap(),
        proxy_identifier: PhoneNumber::parse(proxy).unwrap(),
        friendly_name: None,
        announcement: None,
        announcement_url: None,
    };
    Session {
        sid: tsunagu::ids::new_sid(tsunagu::ids::SESSION),
        unique_name: None,
        status: SessionStatus::Open,
        closed_reason: None,
        mode: "voice-only".into(),
        ttl: 0,
        date_expiry: None,
        date_created: now,
        date_updated: now,
        date_last_interaction: None,
        call_time_limit: None,
        warning_lead: 180,
        extension: Extension {
            seconds: 300,
            max_count: 1,
        },
        extension_count: 0,
        participants: vec![participant(a), participant(b)],
        total_cost_milli_yen: 0,
        max_cost_milli_yen: None,
        current_conference: None,
        decider: None,
        live_call: None,
        record: false,
        recording_announcement: None,
        date_reopened: None,
    }
}

/// A session's SID, from its JSON.
pub fn sid(s: &serde_json::Value) -> String {
    s["sid"].as_str().unwrap().to_owned()
}

/// Adds P1 to the pool, creates `session` and rings A and B (scripted `a`, `b`) into its
/// room: a conference V-call. Returns the session as created.
pub async fn conference_v_call(
    stack: &Stack,
    session: serde_json::Value,
    a: tsunagu_tests::simulator::PhoneScript,
    b: tsunagu_tests::simulator::PhoneScript,
) -> serde_json::Value {
    stack.add_proxy_number(P1).await;
    let (status, s) = stack.api("POST", "/v1/sessions", Some(session)).await;
    assert_eq!(status, 201, "{s}");
    stack.sim().set_phone(&e164(A), a);
    stack.sim().set_phone(&e164(B), b);
    let (status, placed) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{}/calls", sid(&s)),
            Some(serde_json::json!({"mode": "conference"})),
        )
        .await;
    assert_eq!(status, 202, "{placed}");
    s
}
