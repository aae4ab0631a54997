//! The live calls' exact timers on Amazon EventBridge Scheduler: one one-time schedule per
//! session and step, named after both, so that setting it again moves it and a closed
//! session can delete it without listing anything.
//!
//! Each is `at(yyyy-mm-ddThh:mm:ss)` in UTC with no flexible window, deleted by Scheduler
//! once it has run (`ActionAfterCompletion: DELETE`), and invokes the timers' target (the
//! `expiry-warning` function) with `{"timer": {"session", "kind", "deadline"}}` as its input
//! (EventBridge Scheduler User Guide, "Schedule types": one-time schedules; API Reference,
//! `CreateSchedule`, `UpdateSchedule`, `DeleteSchedule`).

use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, Target,
};
use time::macros::format_description;

use crate::domain::ports::{TimerError, TimerKind};

/// A schedule group and what its schedules invoke.
#[derive(Clone)]
pub struct Schedules {
    client: Client,
    group: String,
    role_arn: Option<String>,
    target_arn: Option<String>,
}

/// The schedule's name: 1 to 64 of `[0-9a-zA-Z-_.]`, unique in its group (a session SID is
/// 34 characters).
pub fn schedule_name(session_sid: &str, kind: TimerKind) -> String {
    format!("{session_sid}-{}", kind.as_str())
}

/// The schedule expression of a one-time schedule at `at` (seconds since the epoch, UTC).
pub fn at_expression(at: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(at).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    format!("at({})", t.format(fmt).unwrap_or_default())
}

/// What the target receives when a timer fires.
pub fn timer_input(session_sid: &str, kind: TimerKind, deadline: i64) -> serde_json::Value {
    serde_json::json!({
        "timer": { "session": session_sid, "kind": kind, "deadline": deadline }
    })
}

fn failed(what: &str, e: impl std::fmt::Display) -> TimerError {
    TimerError(format!("{what}: {e}"))
}

impl Schedules {
    pub fn new(
        client: Client,
        group: String,
        role_arn: Option<String>,
        target_arn: Option<String>,
    ) -> Self {
        Self {
            client,
            group,
            role_arn,
            target_arn,
        }
    }

    /// Creates the schedule or, when it exists, moves it.
    pub async fn put(
        &self,
        session_sid: &str,
        kind: TimerKind,
        at: i64,
        deadline: i64,
    ) -> Result<(), TimerError> {
        let (Some(role), Some(target)) = (&self.role_arn, &self.target_arn) else {
            return Err(TimerError(
                "SCHEDULE_ROLE_ARN and SCHEDULE_TARGET_ARN are needed to set timers".into(),
            ));
        };
        let name = schedule_name(session_sid, kind);
        let target = Target::builder()
            .arn(target)
            .role_arn(role)
            .input(timer_input(session_sid, kind, deadline).to_string())
            // A step delivered more than a minute late is the sweep's to do.
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(60)
                    .maximum_retry_attempts(2)
                    .build(),
            )
            .build()
            .map_err(|e| failed("target", e))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| failed("window", e))?;
        let expression = at_expression(at);
        let created = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.group)
            .schedule_expression(&expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window.clone())
            .target(target.clone())
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conflict_exception()) =>
            {
                self.client
                    .update_schedule()
                    .name(&name)
                    .group_name(&self.group)
                    .schedule_expression(&expression)
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(window)
                    .target(target)
                    .action_after_completion(ActionAfterCompletion::Delete)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        failed(
                            "UpdateSchedule",
                            aws_sdk_scheduler::error::DisplayErrorContext(e),
                        )
                    })
            }
            Err(e) => Err(failed(
                "CreateSchedule",
                aws_sdk_scheduler::error::DisplayErrorContext(e),
            )),
        }
    }

    /// Deletes the schedule; one already gone (it ran, or was never set) is not an error.
    pub async fn delete(&self, session_sid: &str, kind: TimerKind) -> Result<(), TimerError> {
        match self
            .client
            .delete_schedule()
            .name(schedule_name(session_sid, kind))
            .group_name(&self.group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(failed(
                "DeleteSchedule",
                aws_sdk_scheduler::error::DisplayErrorContext(e),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_expressions_and_inputs() {
        assert_eq!(
            schedule_name("KC0123456789abcdef0123456789abcdef", TimerKind::Notice),
            "KC0123456789abcdef0123456789abcdef-notice"
        );
        // 2026-11-26T01:02:03Z
        assert_eq!(at_expression(1_795_654_923), "at(2026-11-26T01:02:03)");
        assert_eq!(
            timer_input("KC1", TimerKind::End, 7),
            serde_json::json!({"timer": {"session": "KC1", "kind": "end", "deadline": 7}})
        );
    }
}
