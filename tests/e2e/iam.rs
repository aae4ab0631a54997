//! IAM as AWS enforces it: each function's requests are held to its own `Policies` in the
//! template (tests/src/iam.rs). A permission missing from the template fails here, naming the
//! function, the action and the resource, instead of failing on AWS with users on the line.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tsunagu_tests::iam::{Denial, dynamodb_table_arn};
use tsunagu_tests::simulator::PhoneScript;
use tsunagu_tests::stack::{Options, REGION, Stack};
use tsunagu_tests::template;

/// A answers the V-call, B talks for a minute: every function of a bridge call runs.
async fn bridge_call(stack: &Stack) {
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201, "{s}");
    let sim = stack.sim();
    sim.set_phone(
        &e164(A),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(80)),
    );
    sim.set_phone(
        &e164(B),
        PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(60)),
    );
    let sid = s["sid"].as_str().unwrap();
    let (status, placed) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/calls"),
            Some(json!({"mode": "bridge"})),
        )
        .await;
    assert_eq!(status, 202, "{placed}");
    stack.finish_calls().await;
}

/// The repository's template with one action removed from one function's policy.
fn template_without(function_logical_id: &str, action: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(template::default_path()).unwrap();
    let header = format!("  {function_logical_id}:");
    let granted = format!("- {action}");
    let mut in_function = false;
    let mut removed = 0;
    let mut edited = String::new();
    for line in text.lines() {
        // A resource starts at two spaces of indentation; its properties are deeper.
        if line.starts_with("  ") && !line.starts_with("   ") && !line.trim().starts_with('#') {
            in_function = line == header;
        }
        if in_function && line.trim() == granted {
            removed += 1;
            continue;
        }
        edited.push_str(line);
        edited.push('\n');
    }
    assert_eq!(removed, 1, "{function_logical_id} grants {action} today");
    let path = std::env::temp_dir().join(format!(
        "tsunagu-template-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, edited).unwrap();
    path
}

#[tokio::test]
async fn the_real_template_grants_every_request_of_a_bridge_v_call() {
    let stack = stack().await;
    bridge_call(&stack).await;
    assert_eq!(stack.take_denials(), Vec::<Denial>::new());
    let b_leg = stack
        .sim()
        .calls()
        .into_iter()
        .find(|c| c.direction == "outbound-dial")
        .expect("B was dialled");
    assert_eq!(b_leg.duration_secs, 60);
}

#[tokio::test]
async fn a_permission_missing_from_the_template_fails_naming_function_action_and_resource() {
    let path = template_without("BridgeTwimlFunction", "dynamodb:UpdateItem");
    let stack = stack_with(Options {
        template: Some(path.clone()),
        ..Options::default()
    })
    .await;
    bridge_call(&stack).await;
    let _ = std::fs::remove_file(&path);

    let denials = stack.take_denials();
    let expected = Denial {
        function: "bridge-twiml".into(),
        action: "dynamodb:UpdateItem".into(),
        resource: dynamodb_table_arn(REGION, tsunagu_tests::iam::ACCOUNT, &stack.table),
    };
    assert!(denials.contains(&expected), "{denials:?}");
    let message = expected.to_string();
    for part in ["bridge-twiml", "dynamodb:UpdateItem", stack.table.as_str()] {
        assert!(message.contains(part), "{message}");
    }
    // As on AWS: the webhook fails, A hears an apology instead of B, and B is never dialled.
    let sim = stack.sim();
    assert!(
        sim.calls().iter().all(|c| c.direction != "outbound-dial"),
        "B must not be dialled"
    );
    assert!(
        sim.heard_by(&e164(A))
            .iter()
            .any(|h| h.contains("申し訳ございません")),
        "A hears why: {:?}",
        sim.heard_by(&e164(A))
    );
}

/// A conference V-call of ten minutes at most, A and B talking for two.
async fn conference_call(stack: &Stack) -> String {
    let session = json!({
        "call_time_limit": 600,
        "participants": [{"identifier": A}, {"identifier": B}]
    });
    let talk = || PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(120));
    let s = conference_v_call(stack, session, talk(), talk()).await;
    stack.sim().advance(Duration::from_secs(30)).await;
    s["sid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn setting_a_timer_needs_pass_role_on_the_timers_role_and_its_lack_does_not_break_the_call() {
    let path = template_without("ConferenceStatusFunction", "iam:PassRole");
    let stack = stack_with(Options {
        template: Some(path.clone()),
        ..Options::default()
    })
    .await;
    let sid = conference_call(&stack).await;
    let _ = std::fs::remove_file(&path);
    let denials = stack.take_denials();
    let expected = Denial {
        function: "conference-status".into(),
        action: "iam:PassRole".into(),
        resource: tsunagu_tests::iam::call_timers_role_arn(&stack.table),
    };
    assert!(denials.contains(&expected), "{denials:?}");
    // No schedule was made; the call goes on and its clock runs (the sweep keeps time).
    let listed = aws_sdk_scheduler::Client::new(&stack.aws)
        .list_schedules()
        .group_name(&stack.schedule_group)
        .send()
        .await
        .unwrap();
    assert!(listed.schedules().is_empty(), "{listed:?}");
    let session = stack.app.store.get_session(&sid).await.unwrap().unwrap();
    assert!(session.live_call.and_then(|l| l.deadline).is_some());
    assert_eq!(
        stack.sim().conferences().pop().unwrap().participants.len(),
        2
    );
    stack.finish_calls().await;
    let _ = stack.take_denials();
}

#[tokio::test]
async fn deleting_a_sessions_timers_needs_delete_schedule_on_the_group() {
    let path = template_without("CloseSessionFunction", "scheduler:DeleteSchedule");
    let stack = stack_with(Options {
        template: Some(path.clone()),
        ..Options::default()
    })
    .await;
    let sid = conference_call(&stack).await;
    let _ = std::fs::remove_file(&path);
    let (status, _) = stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    assert_eq!(status, 200, "the close itself succeeds");
    let denials = stack.take_denials();
    let expected = Denial {
        function: "close-session".into(),
        action: "scheduler:DeleteSchedule".into(),
        resource: format!(
            "arn:aws:scheduler:{REGION}:{}:schedule/{}/{sid}-end",
            tsunagu_tests::iam::ACCOUNT,
            stack.schedule_group
        ),
    };
    assert!(denials.contains(&expected), "{denials:?}");
    stack.finish_calls().await;
    let _ = stack.take_denials();
}
