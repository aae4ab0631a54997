//! `expiry-warning`'s entry point, for two kinds of event: the minute sweep's EventBridge
//! event (its time, then the domain's sweep), and a live call's timer firing (an EventBridge
//! Scheduler one-time schedule whose input is `{"timer": {"session", "kind", "deadline"}}`,
//! see `scheduler`), which does that one step if it is still due.

use crate::app::App;
use crate::domain::expiry;
use crate::domain::ports::TimerKind;
use crate::telemetry::metrics::name;
use crate::telemetry::{Document, Unit};

/// "Now" is the later of the event's `time` and the clock: a delayed delivery never sweeps
/// for the past, and a test can fire the sweep for any instant by sending an event with
/// that time.
pub async fn on_schedule(
    app: &App,
    event: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    if let Some(timer) = event.get("timer") {
        return on_timer(app, timer).await;
    }
    let event_time = event["time"].as_str().and_then(crate::clock::parse_iso);
    let now = event_time.map_or(app.now(), |t| t.max(app.now()));
    let report = expiry::sweep(app.ctx(), now)
        .await
        .map_err(|e| e.to_string())?;
    app.metrics().emit(sweep_metrics(&report, now));
    serde_json::to_value(report).map_err(|e| e.to_string())
}

#[derive(serde::Deserialize)]
struct Timer {
    session: String,
    kind: TimerKind,
    deadline: i64,
}

/// A timer fired: the step it was set for, if `deadline` is still the live call's. Input
/// that is not a timer's is refused as an error (Scheduler would retry it, to no avail).
async fn on_timer(app: &App, timer: &serde_json::Value) -> Result<serde_json::Value, String> {
    let timer: Timer =
        serde_json::from_value(timer.clone()).map_err(|e| format!("not a timer's input: {e}"))?;
    if !crate::ids::is_sid(crate::ids::SESSION, &timer.session) {
        return Err("not a timer's input: session is not a session SID".into());
    }
    let now = app.now();
    let fired = expiry::fire(app.ctx(), &timer.session, timer.kind, timer.deadline, now)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(session = %timer.session, kind = timer.kind.as_str(), deadline = timer.deadline, late = now - timer.deadline, fired = ?fired, "timer fired");
    Ok(serde_json::json!({ "timer": timer.kind, "fired": fired }))
}

/// One sweep's metrics, every minute even when nothing was due, so that `SweepLag`'s alarm
/// always has data: the lag is 0 when no session was waiting.
pub fn sweep_metrics(report: &expiry::SweepReport, now: i64) -> Document {
    let lag = report.oldest_due.map_or(0, |due| (now - due).max(0));
    Document::new()
        .metric(name::SWEEP_LAG, Unit::Seconds, lag as f64)
        .metric(name::WARNINGS, Unit::Count, report.warned as f64)
        .metric(
            name::WARNINGS_NOT_POSSIBLE,
            Unit::Count,
            report.no_warning_possible as f64,
        )
        .property("due", report.due)
        .property("calls_ended", report.calls_ended)
        .property("closed", report.closed)
        .property("failed", report.failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_now_minus_the_oldest_due_instant() {
        let report = expiry::SweepReport {
            due: 2,
            warned: 1,
            oldest_due: Some(1_000),
            ..Default::default()
        };
        let doc = sweep_metrics(&report, 1_095).to_json(0, "f");
        assert_eq!(doc["SweepLag"], 95.0);
        assert_eq!(doc["Warnings"], 1.0);
        assert_eq!(doc["due"], 2);
        let idle = sweep_metrics(&expiry::SweepReport::default(), 1_095).to_json(0, "f");
        assert_eq!(idle["SweepLag"], 0.0, "nothing due, no lag");
    }
}
