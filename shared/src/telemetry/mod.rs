//! What an operator sees of a function: its logs (`logs`, flat JSON with the Powertools
//! keys) and its metrics (`metrics`, CloudWatch Embedded Metric Format). Traces come from
//! Lambda itself (`Tracing: Active` in template.yaml); the trace id each invocation carries
//! is logged as `xray_trace_id`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::Clock;

pub mod logs;
pub mod metrics;

pub use metrics::{Document, MemorySink, Metrics, MetricsSink, StdoutSink, Unit};

/// A function's telemetry, built once per container: its name, its metrics, and whether
/// its next invocation is the container's first.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: Metrics,
    cold: Arc<AtomicBool>,
}

impl Telemetry {
    pub fn new(function_name: &str, sink: Arc<dyn MetricsSink>, clock: Arc<dyn Clock>) -> Self {
        Self {
            metrics: Metrics::new(sink, function_name, clock),
            cold: Arc::new(AtomicBool::new(true)),
        }
    }

    /// On Lambda: the function's name from `AWS_LAMBDA_FUNCTION_NAME`, metrics on stdout.
    pub fn from_env(clock: Arc<dyn Clock>) -> Self {
        let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "tsunagu".into());
        Self::new(&name, Arc::new(StdoutSink), clock)
    }

    pub fn function_name(&self) -> &str {
        self.metrics.function_name()
    }

    /// The span one invocation runs in: its logs carry the function's name, the request id
    /// and trace id Lambda gave it (`lambda_runtime::Context`), and `cold_start`, true for
    /// the container's first invocation only.
    pub fn invocation(&self, request_id: &str, xray_trace_id: Option<&str>) -> tracing::Span {
        let cold = self.cold.swap(false, Ordering::SeqCst);
        invocation_span(self.function_name(), request_id, xray_trace_id, cold)
    }

    /// The span for an invocation described by Lambda's context.
    pub fn invocation_of(&self, context: &lambda_runtime::Context) -> tracing::Span {
        self.invocation(&context.request_id, context.xray_trace_id.as_deref())
    }
}

/// An ERROR-level span, so that it is recorded whatever the log level: a WARN line must
/// still say which request it belongs to. (A span's level only decides whether it is
/// enabled; the lines inside keep their own levels.)
pub fn invocation_span(
    function_name: &str,
    request_id: &str,
    xray_trace_id: Option<&str>,
    cold_start: bool,
) -> tracing::Span {
    tracing::error_span!(
        "invocation",
        function_name = function_name,
        function_request_id = request_id,
        xray_trace_id = xray_trace_id,
        cold_start = cold_start,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn only_the_first_invocation_is_a_cold_start() {
        let t = Telemetry::new("f", Arc::new(MemorySink::default()), Arc::new(SystemClock));
        let copy = t.clone();
        assert!(t.cold.load(Ordering::SeqCst));
        let _first = t.invocation("r1", None);
        assert!(
            !copy.cold.load(Ordering::SeqCst),
            "shared by the container's clones"
        );
        let _second = copy.invocation("r2", None);
        assert!(!t.cold.load(Ordering::SeqCst));
    }
}
