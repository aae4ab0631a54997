//! The EventBridge schedule's entry point for `expiry-warning`: the event's time, then the
//! domain's sweep.

use crate::app::App;
use crate::domain::expiry;

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
    serde_json::to_value(report).map_err(|e| e.to_string())
}
