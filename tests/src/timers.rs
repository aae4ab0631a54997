//! EventBridge Scheduler's part that the emulator leaves out: firing. moto serves the
//! Scheduler API (groups, `at(…)` schedules, `ActionAfterCompletion`) but never runs a
//! schedule, so the local stack does, on its own clock — the simulator's, or the wall clock
//! when Twilio is elsewhere:
//! - a one-time schedule `at(yyyy-mm-ddThh:mm:ss)` runs once its instant, read in its
//!   `ScheduleExpressionTimezone` (UTC here), has come, with no flexible window;
//! - it invokes its target with the target's `Input` as the event;
//! - with `ActionAfterCompletion: DELETE` it is deleted once it has run
//!   (EventBridge Scheduler User Guide, "Schedule types on EventBridge Scheduler", one-time
//!   schedules; API Reference, `CreateSchedule`: `ActionAfterCompletion`).
//!
//! The schedules are listed again only when a function changed one (an interceptor on the
//! functions' clients says so), so a tick with nothing to do costs no request; a schedule
//! is read once more just before it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_scheduler::Client;
use tokio::sync::Mutex;

/// Marks the schedules as changed whenever a function's Scheduler client sends a request.
#[derive(Clone, Debug, Default)]
pub struct Changed(pub Arc<AtomicBool>);

impl Intercept for Changed {
    fn name(&self) -> &'static str {
        "LocalSchedulesChanged"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// One schedule as the firer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub name: String,
    /// Seconds since the epoch.
    pub at: i64,
    pub function: String,
    pub input: String,
    pub delete_after: bool,
}

/// `at(2026-11-26T01:02:03)` in UTC → seconds since the epoch.
pub fn parse_at(expression: &str) -> Option<i64> {
    let inner = expression.strip_prefix("at(")?.strip_suffix(')')?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(inner, fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

pub struct Firer {
    client: Client,
    group: String,
    /// The gateway's Invoke API base (`{url}/2015-03-31/functions`).
    invoke_base: String,
    http: reqwest::Client,
    changed: Changed,
    known: Mutex<Vec<Due>>,
}

impl Firer {
    pub fn new(client: Client, group: String, gateway_url: &str, changed: Changed) -> Self {
        changed.0.store(true, Ordering::SeqCst);
        Self {
            client,
            group,
            invoke_base: format!("{gateway_url}/2015-03-31/functions"),
            http: tsunagu::app::http_client(),
            changed,
            known: Mutex::new(Vec::new()),
        }
    }

    /// The group's schedules, read from the emulator.
    pub async fn list(&self) -> Result<Vec<Due>, String> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_schedules()
                .group_name(&self.group)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws_sdk_scheduler::error::DisplayErrorContext(e).to_string())?;
            for summary in page.schedules() {
                let Some(name) = summary.name() else { continue };
                let got = match self
                    .client
                    .get_schedule()
                    .group_name(&self.group)
                    .name(name)
                    .send()
                    .await
                {
                    Ok(got) => got,
                    // Deleted between the list and the read.
                    Err(_) => continue,
                };
                let (Some(at), Some(target)) =
                    (got.schedule_expression().and_then(parse_at), got.target())
                else {
                    continue;
                };
                out.push(Due {
                    name: name.to_owned(),
                    at,
                    function: target
                        .arn()
                        .rsplit(':')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    input: target.input().unwrap_or("{}").to_owned(),
                    delete_after: got.action_after_completion()
                        == Some(&aws_sdk_scheduler::types::ActionAfterCompletion::Delete),
                });
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Runs every schedule due at `now` (seconds since the epoch), earliest first.
    pub async fn tick(&self, now: i64) {
        let mut known = self.known.lock().await;
        if self.changed.0.swap(false, Ordering::SeqCst) {
            match self.list().await {
                Ok(list) => *known = list,
                Err(e) => {
                    eprintln!("local scheduler: could not list schedules: {e}");
                    self.changed.0.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
        let mut due: Vec<Due> = known.iter().filter(|d| d.at <= now).cloned().collect();
        due.sort_by_key(|d| d.at);
        known.retain(|d| d.at > now);
        drop(known);
        for schedule in due {
            // Read once more before running it: deleted or moved behind the stack's back
            // (a test losing a schedule on purpose), it runs as it is now, if at all.
            let current = self
                .client
                .get_schedule()
                .group_name(&self.group)
                .name(&schedule.name)
                .send()
                .await;
            let Ok(current) = current else { continue };
            if current.schedule_expression().and_then(parse_at) != Some(schedule.at) {
                self.changed.0.store(true, Ordering::SeqCst);
                continue;
            }
            let url = format!("{}/{}/invocations", self.invoke_base, schedule.function);
            if let Err(e) = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(schedule.input.clone())
                .send()
                .await
            {
                eprintln!(
                    "local scheduler: invoking {} failed: {e}",
                    schedule.function
                );
            }
            if schedule.delete_after {
                // Gone already (the step removed its call's timers) is fine.
                let _ = self
                    .client
                    .delete_schedule()
                    .group_name(&self.group)
                    .name(&schedule.name)
                    .send()
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_expressions_are_read_in_utc() {
        assert_eq!(parse_at("at(2026-11-26T01:02:03)"), Some(1_795_654_923));
        assert_eq!(parse_at("rate(1 minute)"), None);
        assert_eq!(parse_at("at(2026-11-26 01:02:03)"), None);
    }
}
