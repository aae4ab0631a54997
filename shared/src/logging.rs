//! JSON logs for CloudWatch. Phone numbers are logged through `PhoneNumber::masked()` only,
//! and secrets have redacting `Debug` implementations.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; later calls are no-ops (tests and the local gateway).
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time() // CloudWatch stamps every line itself.
        .try_init();
}
