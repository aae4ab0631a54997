//! Metrics as CloudWatch Embedded Metric Format (EMF) documents: one JSON object per line on
//! stdout, which Lambda ships to CloudWatch Logs, where CloudWatch extracts the metrics.
//!
//! The document's shape follows the EMF specification
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>):
//! a root `_aws` member with `Timestamp` (milliseconds since the epoch) and
//! `CloudWatchMetrics`, an array of directives, each naming a `Namespace`, its `Dimensions`
//! (an array of dimension sets, each an array of keys of top-level string members) and its
//! `Metrics` (`Name` and `Unit`, whose value is the top-level member of the same name).
//! Other top-level members are kept as log fields, searchable in Logs Insights.
//!
//! Dimensions stay few and low-cardinality (`service`, and an outcome or an error class
//! where one is named): every distinct combination is a metric CloudWatch bills for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::clock::Clock;

/// Every metric's namespace.
pub const NAMESPACE: &str = "Tsunagu";
/// The `service` dimension and log key.
pub const SERVICE: &str = "tsunagu";

/// The metrics Tsunagu emits (README, "Operating it").
pub mod name {
    /// Calls that ended, by `outcome` (their final status): an inbound call to a proxy
    /// number, or a leg the platform placed itself (V字発信). A dialled leg is not a call.
    pub const CALLS: &str = "Calls";
    /// Call legs that ended, every kind.
    pub const LEGS: &str = "Legs";
    /// Minutes Twilio bills for the legs that ended (each leg rounded up to the minute).
    pub const BILLED_MINUTES: &str = "BilledMinutes";
    /// What those legs cost, in yen (`pricing`).
    pub const COST_YEN: &str = "CostYen";
    /// Spoken warnings the sweep gave before a call's deadline.
    pub const WARNINGS: &str = "Warnings";
    /// Calls the sweep could not warn (a bridge call, or the deciding party not in the room).
    pub const WARNINGS_NOT_POSSIBLE: &str = "WarningsNotPossible";
    /// Extensions taken by pressing 1.
    pub const EXTENSIONS: &str = "Extensions";
    /// Error answers from Twilio's REST API (every attempt), by `status_class` and by `code`.
    pub const TWILIO_ERRORS: &str = "TwilioErrors";
    /// Webhook requests refused for a missing or wrong `X-Twilio-Signature`.
    pub const SIGNATURE_FAILURES: &str = "WebhookSignatureFailures";
    /// The sweep's lag: its "now" minus the `due_at` of the oldest session it handled (0
    /// when none was due).
    pub const SWEEP_LAG: &str = "SweepLag";
}

/// CloudWatch's units (the EMF specification lists the values `Unit` may take).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::None => "None",
        }
    }
}

/// Where EMF documents go: stdout on Lambda; a memory a test can read on the local stack.
pub trait MetricsSink: Send + Sync {
    fn write(&self, document: &Value);
}

/// One line on stdout per document, as Lambda expects (it ships each line as a log event).
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutSink;

impl MetricsSink for StdoutSink {
    fn write(&self, document: &Value) {
        use std::io::Write;
        // One write per line, so that lines from concurrent tasks never interleave.
        let line = format!("{document}\n");
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// Keeps every document: the local stack's sink, so tests read what would reach CloudWatch.
#[derive(Debug, Default, Clone)]
pub struct MemorySink(Arc<Mutex<Vec<Value>>>);

impl MemorySink {
    pub fn documents(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sum of one metric's values over every document that carries it.
    pub fn sum(&self, metric: &str) -> f64 {
        self.documents()
            .iter()
            .filter(|d| declares(d, metric))
            .filter_map(|d| d[metric].as_f64())
            .sum()
    }

    /// The sum of one metric's values over the documents whose `dimension` is `value`.
    pub fn sum_where(&self, metric: &str, dimension: &str, value: &str) -> f64 {
        self.documents()
            .iter()
            .filter(|d| declares(d, metric) && d[dimension] == value)
            .filter_map(|d| d[metric].as_f64())
            .sum()
    }
}

impl MetricsSink for MemorySink {
    fn write(&self, document: &Value) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(document.clone());
    }
}

/// Whether an EMF document declares `metric` in one of its directives.
pub fn declares(document: &Value, metric: &str) -> bool {
    document["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["Metrics"].as_array().into_iter().flatten())
        .any(|m| m["Name"] == metric)
}

/// One metric to put in a document: its value and the dimension sets it is recorded under,
/// each set given as its dimensions beyond `service`.
#[derive(Debug, Clone)]
struct Entry {
    name: &'static str,
    unit: Unit,
    value: f64,
    sets: Vec<Vec<&'static str>>,
}

/// An EMF document being built: metrics recorded together, at one instant.
#[derive(Debug, Clone, Default)]
pub struct Document {
    entries: Vec<Entry>,
    dimensions: BTreeMap<&'static str, String>,
    properties: Map<String, Value>,
}

impl Document {
    pub fn new() -> Self {
        Self::default()
    }

    /// A metric recorded under `service` alone.
    pub fn metric(self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.metric_by(name, unit, value, &[&[]])
    }

    /// A metric recorded under each of `sets`, each `service` plus the dimensions named
    /// (their values given with [`Document::dimension`]).
    pub fn metric_by(
        mut self,
        name: &'static str,
        unit: Unit,
        value: f64,
        sets: &[&[&'static str]],
    ) -> Self {
        self.entries.push(Entry {
            name,
            unit,
            value,
            sets: sets.iter().map(|s| s.to_vec()).collect(),
        });
        self
    }

    /// A dimension's value (a string, as EMF requires of dimension members).
    pub fn dimension(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.insert(key, value.into());
        self
    }

    /// A top-level field that is not a dimension: searchable in Logs Insights, free of cost.
    pub fn property(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(key.to_owned(), value.into());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The EMF document at `timestamp_ms`. Metrics with the same dimension sets share a
    /// directive.
    pub fn to_json(&self, timestamp_ms: i64, function_name: &str) -> Value {
        let mut directives: Vec<(Vec<Vec<&str>>, Vec<Value>)> = Vec::new();
        let mut root = self.properties.clone();
        for entry in &self.entries {
            let sets: Vec<Vec<&str>> = entry
                .sets
                .iter()
                .map(|s| {
                    std::iter::once("service")
                        .chain(s.iter().copied())
                        .collect()
                })
                .collect();
            let definition = json!({"Name": entry.name, "Unit": entry.unit.as_str()});
            match directives.iter_mut().find(|(s, _)| *s == sets) {
                Some((_, metrics)) => metrics.push(definition),
                None => directives.push((sets, vec![definition])),
            }
            root.insert(entry.name.to_owned(), json!(entry.value));
        }
        for (key, value) in &self.dimensions {
            root.insert((*key).to_owned(), json!(value));
        }
        root.insert("service".into(), json!(SERVICE));
        root.insert("function_name".into(), json!(function_name));
        let directives: Vec<Value> = directives
            .into_iter()
            .map(|(sets, metrics)| {
                json!({"Namespace": NAMESPACE, "Dimensions": sets, "Metrics": metrics})
            })
            .collect();
        root.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
        );
        Value::Object(root)
    }
}

/// What a function records metrics with: its sink, its name, and the app's clock for the
/// documents' timestamps (the simulator's virtual time on the local stack).
#[derive(Clone)]
pub struct Metrics {
    sink: Arc<dyn MetricsSink>,
    function_name: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("function_name", &self.function_name)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(sink: Arc<dyn MetricsSink>, function_name: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            sink,
            function_name: function_name.into(),
            clock,
        }
    }

    pub fn function_name(&self) -> &str {
        &self.function_name
    }

    /// Writes `document` (nothing when it holds no metric).
    pub fn emit(&self, document: Document) {
        if document.is_empty() {
            return;
        }
        let now = self.clock.now();
        let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        self.sink.write(&document.to_json(ms, &self.function_name));
    }

    /// One error answer (or no answer) from Twilio's REST API.
    pub fn twilio_error(&self, status_class: &str, code: &str) {
        self.emit(
            Document::new()
                .metric_by(
                    name::TWILIO_ERRORS,
                    Unit::Count,
                    1.0,
                    &[&["status_class"], &["code"]],
                )
                .dimension("status_class", status_class)
                .dimension("code", code),
        );
    }

    /// One webhook request refused for its signature.
    pub fn signature_failure(&self) {
        self.emit(Document::new().metric(name::SIGNATURE_FAILURES, Unit::Count, 1.0));
    }
}

/// The class an HTTP status falls in, as the `status_class` dimension shows it.
pub fn status_class(status: u16) -> &'static str {
    match status {
        500..=599 => "5xx",
        400..=499 => "4xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct At(i64);
    impl Clock for At {
        fn now(&self) -> time::OffsetDateTime {
            time::OffsetDateTime::from_unix_timestamp(self.0).unwrap()
        }
    }

    fn metrics() -> (Metrics, MemorySink) {
        let sink = MemorySink::default();
        let m = Metrics::new(
            Arc::new(sink.clone()),
            "tsunagu-CallStatus",
            Arc::new(At(1_795_552_200)),
        );
        (m, sink)
    }

    /// What the EMF specification requires of a document, checked as CloudWatch would:
    /// `_aws.Timestamp` a number of milliseconds, each directive with a `Namespace`, dimension
    /// sets whose keys are top-level strings, and metrics whose values are top-level numbers.
    pub(crate) fn assert_valid_emf(doc: &Value) {
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].is_i64(), "Timestamp in ms: {doc}");
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .expect("CloudWatchMetrics");
        assert!(!directives.is_empty(), "{doc}");
        for d in directives {
            let ns = d["Namespace"].as_str().expect("Namespace");
            assert!(!ns.is_empty() && ns.len() <= 255, "{doc}");
            for set in d["Dimensions"].as_array().expect("Dimensions") {
                let keys = set.as_array().expect("a dimension set is an array");
                assert!(keys.len() <= 30, "{doc}");
                for key in keys {
                    let key = key.as_str().expect("dimension keys are strings");
                    assert!(
                        doc[key].is_string(),
                        "dimension {key} is a top-level string: {doc}"
                    );
                }
            }
            let metrics = d["Metrics"].as_array().expect("Metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100, "{doc}");
            for m in metrics {
                let name = m["Name"].as_str().expect("Name");
                assert!(doc[name].is_number(), "{name} has a top-level value: {doc}");
                assert!(m["Unit"].is_string(), "{doc}");
            }
        }
    }

    #[test]
    fn a_document_follows_the_emf_specification() {
        let (m, sink) = metrics();
        m.emit(
            Document::new()
                .metric(name::LEGS, Unit::Count, 1.0)
                .metric(name::COST_YEN, Unit::None, 32.4)
                .metric_by(name::CALLS, Unit::Count, 1.0, &[&["outcome"]])
                .dimension("outcome", "completed")
                .property("session", "KS1"),
        );
        let docs = sink.documents();
        assert_eq!(docs.len(), 1);
        let doc = &docs[0];
        assert_valid_emf(doc);
        assert_eq!(doc["_aws"]["Timestamp"], 1_795_552_200_000i64);
        assert_eq!(doc["service"], "tsunagu");
        assert_eq!(doc["function_name"], "tsunagu-CallStatus");
        assert_eq!(doc["session"], "KS1");
        assert_eq!(doc["CostYen"], 32.4);
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(
            directives.len(),
            2,
            "two dimension sets, two directives: {doc}"
        );
        assert_eq!(directives[0]["Namespace"], "Tsunagu");
        assert_eq!(directives[0]["Dimensions"], json!([["service"]]));
        assert_eq!(
            directives[0]["Metrics"],
            json!([{"Name": "Legs", "Unit": "Count"}, {"Name": "CostYen", "Unit": "None"}])
        );
        assert_eq!(directives[1]["Dimensions"], json!([["service", "outcome"]]));
        assert_eq!(doc["outcome"], "completed");
    }

    #[test]
    fn a_twilio_error_is_counted_by_class_and_by_code() {
        let (m, sink) = metrics();
        m.twilio_error(status_class(503), "20003");
        let doc = &sink.documents()[0];
        assert_valid_emf(doc);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["service", "status_class"], ["service", "code"]])
        );
        assert_eq!(doc["status_class"], "5xx");
        assert_eq!(doc["code"], "20003");
        assert_eq!(
            sink.sum_where(name::TWILIO_ERRORS, "status_class", "5xx"),
            1.0
        );
        assert_eq!(
            sink.sum_where(name::TWILIO_ERRORS, "status_class", "4xx"),
            0.0
        );
    }

    #[test]
    fn an_empty_document_is_not_written() {
        let (m, sink) = metrics();
        m.emit(Document::new().property("x", 1));
        assert!(sink.documents().is_empty());
    }

    #[test]
    fn sums_only_count_documents_that_declare_the_metric() {
        let (m, sink) = metrics();
        m.emit(Document::new().metric(name::COST_YEN, Unit::None, 2.5));
        m.emit(Document::new().metric(name::COST_YEN, Unit::None, 1.0));
        // A property of the same name is not the metric.
        m.emit(
            Document::new()
                .metric(name::LEGS, Unit::Count, 1.0)
                .property("Extensions", 7),
        );
        assert_eq!(sink.sum(name::COST_YEN), 3.5);
        assert_eq!(sink.sum(name::EXTENSIONS), 0.0);
    }
}
