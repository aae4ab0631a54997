//! The EventBridge schedule's entry point for `expiry-warning`: the event's time, then the
//! domain's sweep.

use crate::app::App;
use crate::domain::expiry;
use crate::telemetry::metrics::name;
use crate::telemetry::{Document, Unit};

/// "Now" is the later of the event's `time` and the clock: a delayed delivery never sweeps
/// for the past, and a test can fire the sweep for any instant by sending an event with
/// that time.
pub async fn on_schedule(
    app: &App,
    event: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let event_time = event["time"].as_str().and_then(crate::clock::parse_iso);
    let now = event_time.map_or(app.now(), |t| t.max(app.now()));
    let report = expiry::sweep(app.ctx(), now)
        .await
        .map_err(|e| e.to_string())?;
    app.metrics().emit(sweep_metrics(&report, now));
    serde_json::to_value(report).map_err(|e| e.to_string())
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
