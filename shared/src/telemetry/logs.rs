//! Logs as flat JSON lines, with the keys Powertools for AWS Lambda uses: `timestamp`
//! (RFC 3339, which Lambda's log-level filtering reads), `level`, `message`, `service`,
//! `function_name`, `function_request_id`, `xray_trace_id` and `cold_start`; then the
//! fields of the spans the event is in, then the event's own fields, all at the top level.
//!
//! Phone numbers are logged through `PhoneNumber::masked()`; as a safety net every string
//! is passed through `phone::mask_in_text`, so a number that slipped into a message or a
//! field is masked all the same. Secrets have redacting `Debug` implementations.
//!
//! The level: `AWS_LAMBDA_LOG_LEVEL` (set by Lambda from the function's
//! `LoggingConfig.ApplicationLogLevel`) wins; without it, `RUST_LOG` (for local use:
//! `target=level` directives, such as `tsunagu=debug,info`); without either, INFO. The same
//! order as the Rust runtime's own `lambda_runtime::tracing::init_default_subscriber`.
//!
//! The filter is `Targets`, not `EnvFilter`: `EnvFilter`'s span and field directives need
//! a regex engine, which made 5% of every function's binary (0.4 MB) for a feature no one
//! used.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::phone::mask_in_text;
use crate::telemetry::metrics::SERVICE;

/// The keys every line starts with, in this order.
pub const KEYS: [&str; 8] = [
    "timestamp",
    "level",
    "message",
    "service",
    "function_name",
    "function_request_id",
    "xray_trace_id",
    "cold_start",
];

/// The filter for the environment `lookup` describes (see the module's comment).
pub fn filter_from(lookup: impl Fn(&str) -> Option<String>) -> Targets {
    let directives = match lookup("AWS_LAMBDA_LOG_LEVEL").filter(|v| !v.trim().is_empty()) {
        // Lambda's levels are TRACE, DEBUG, INFO, WARN, ERROR and FATAL; tracing has no FATAL.
        Some(level) => match level.trim().to_ascii_lowercase().as_str() {
            "fatal" => "error".to_owned(),
            l @ ("trace" | "debug" | "info" | "warn" | "error") => l.to_owned(),
            _ => "info".to_owned(),
        },
        None => lookup("RUST_LOG")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "info".to_owned()),
    };
    targets(&directives).unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// `Targets` reads any word as a target to enable, so `RUST_LOG="not a directive"` would
/// silence everything else; a directive whose target is not a Rust path is refused instead.
fn targets(directives: &str) -> Option<Targets> {
    let well_formed = directives.split(',').map(str::trim).all(|directive| {
        let target = directive
            .split_once('=')
            .map_or(directive, |(target, _)| target);
        !target.is_empty()
            && target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    });
    if well_formed {
        directives.parse().ok()
    } else {
        None
    }
}

/// The formatter: a `tracing_subscriber` layer writing one JSON object per event.
pub struct JsonLines<W> {
    writer: W,
    /// `function_name` outside an invocation span (`AWS_LAMBDA_FUNCTION_NAME`).
    function_name: String,
}

impl<W> JsonLines<W> {
    pub fn new(writer: W, function_name: impl Into<String>) -> Self {
        Self {
            writer,
            function_name: function_name.into(),
        }
    }
}

/// A span's fields, kept in its extensions until it closes.
struct SpanFields(Map<String, Value>);

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

/// The runtime's own span (`lambda_runtime::layers::trace`) names the ids in camelCase.
fn key_of(name: &str) -> &str {
    match name {
        "requestId" => "function_request_id",
        "xrayTraceId" => "xray_trace_id",
        other => other,
    }
}

fn masked(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(mask_in_text(&s).into_owned()),
        other => other,
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut Fields(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut text = render(&self.line(event, &ctx));
        text.push('\n');
        // One write per line, so that lines from concurrent tasks never interleave.
        let _ = self.writer.make_writer().write_all(text.as_bytes());
    }
}

impl<W> JsonLines<W> {
    /// The line's members, in order: the fixed keys first.
    fn line<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Vec<(String, Value)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut context = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &fields.0 {
                        context.insert(key_of(k).to_owned(), v.clone());
                    }
                }
            }
        }
        let mut own = Map::new();
        event.record(&mut Fields(&mut own));
        let message = own.remove("message").unwrap_or(Value::from(""));

        let mut line: Vec<(String, Value)> = Vec::with_capacity(KEYS.len() + own.len());
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        line.push(("timestamp".into(), Value::from(timestamp)));
        line.push((
            "level".into(),
            Value::from(event.metadata().level().as_str()),
        ));
        line.push(("message".into(), masked(message)));
        line.push(("service".into(), Value::from(SERVICE)));
        for key in &KEYS[4..] {
            let default = match *key {
                "function_name" => Value::from(self.function_name.as_str()),
                _ => Value::Null,
            };
            line.push(((*key).to_owned(), context.remove(*key).unwrap_or(default)));
        }
        // An event field replaces a span field of the same name.
        for (k, v) in own {
            context.insert(k, v);
        }
        for (k, v) in context {
            // A field named like one of the fixed keys keeps its value under another name.
            let k = if KEYS.contains(&k.as_str()) {
                format!("field_{k}")
            } else {
                k
            };
            line.push((k, masked(v)));
        }
        line
    }
}

/// One JSON object with its members in the order given (serde_json's map would sort them).
fn render(members: &[(String, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(k.as_str()).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
    out
}

/// Installs the JSON logs for this process, once; later calls are no-ops (the tests and
/// the local gateway call it again).
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let env = |k: &str| std::env::var(k).ok();
    let function_name = env("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "tsunagu-local".into());
    let _ = tracing_subscriber::registry()
        .with(filter_from(env))
        .with(JsonLines::new(std::io::stdout, function_name))
        .try_init();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::phone::PhoneNumber;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn parsed(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect()
    }

    /// Runs `f` with the JSON logs filtered as the environment `vars` says, and returns the lines.
    fn logs(vars: &[(&str, &str)], f: impl FnOnce()) -> Vec<Value> {
        parsed(&raw_logs(vars, f))
    }

    fn raw_logs(vars: &[(&str, &str)], f: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let lookup = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let subscriber = tracing_subscriber::registry()
            .with(filter_from(lookup))
            .with(JsonLines::new(move || writer.clone(), "tsunagu-Init"));
        tracing::subscriber::with_default(subscriber, f);
        out.text()
    }

    fn invocation(cold: bool) -> tracing::Span {
        crate::telemetry::invocation_span(
            "tsunagu-CallStatusFunction-AbC",
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"),
            cold,
        )
    }

    #[test]
    fn a_line_has_the_powertools_keys_first_and_flat() {
        let raw = raw_logs(&[], || {
            let _in = invocation(true).entered();
            let _leg = tracing::info_span!("leg", session = "KS1").entered();
            tracing::info!(
                call = "CA1",
                duration = 65u64,
                cost_jpy = 32.4,
                "call leg recorded"
            );
        });
        let lines = parsed(&raw);
        assert_eq!(lines.len(), 1);
        let line = lines[0].as_object().unwrap();
        let at: Vec<usize> = KEYS
            .iter()
            .map(|k| raw.find(&format!("\"{k}\":")).expect(k))
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "the fixed keys first, in order: {raw}"
        );
        assert!(raw.starts_with("{\"timestamp\":"), "{raw}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "call leg recorded");
        assert_eq!(line["service"], "tsunagu");
        assert_eq!(line["function_name"], "tsunagu-CallStatusFunction-AbC");
        assert_eq!(
            line["function_request_id"],
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
        );
        assert!(
            line["xray_trace_id"]
                .as_str()
                .unwrap()
                .starts_with("Root=1-")
        );
        assert_eq!(line["cold_start"], true);
        // The span's and the event's fields, at the top level, with their JSON types.
        assert_eq!(line["session"], "KS1");
        assert_eq!(line["call"], "CA1");
        assert_eq!(line["duration"], 65);
        assert_eq!(line["cost_jpy"], 32.4);
        assert!(!line.contains_key("fields") && !line.contains_key("spans"));
        let ts = line["timestamp"].as_str().unwrap();
        assert!(crate::clock::parse_iso(ts).is_some(), "RFC 3339: {ts}");
    }

    #[test]
    fn outside_an_invocation_the_keys_are_there_with_the_functions_name() {
        let lines = logs(&[], || tracing::warn!("starting"));
        let line = &lines[0];
        for key in KEYS {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
        assert_eq!(line["function_name"], "tsunagu-Init");
        assert_eq!(line["function_request_id"], Value::Null);
        assert_eq!(line["level"], "WARN");
    }

    #[test]
    fn the_runtimes_own_span_gives_the_ids_under_the_powertools_names() {
        let lines = logs(&[], || {
            let _s = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "req-1",
                xrayTraceId = "Root=1-abc"
            )
            .entered();
            tracing::info!("hello");
        });
        assert_eq!(lines[0]["function_request_id"], "req-1");
        assert_eq!(lines[0]["xray_trace_id"], "Root=1-abc");
        assert!(lines[0].get("requestId").is_none());
    }

    #[test]
    fn phone_numbers_are_masked_wherever_they_appear() {
        let n = PhoneNumber::parse("090-1234-5678").unwrap();
        let lines = logs(&[], || {
            tracing::info!(caller = %n.masked(), "masked as it should be");
            tracing::info!(to = %n, raw = "090-1234-5678", "a call to {} slipped through", n);
        });
        let text = serde_json::to_string(&lines).unwrap();
        assert!(
            !text.contains("12345678") && !text.contains("1234-5678"),
            "{text}"
        );
        assert_eq!(lines[0]["caller"], "+8190****5678");
        assert_eq!(lines[1]["to"], "+8190****5678");
        assert_eq!(lines[1]["raw"], "+8190****5678");
        assert_eq!(
            lines[1]["message"],
            "a call to +8190****5678 slipped through"
        );
    }

    #[test]
    fn a_field_named_like_a_fixed_key_does_not_replace_it() {
        let lines = logs(&[], || tracing::info!(service = "other", level = 3, "x"));
        assert_eq!(lines[0]["service"], "tsunagu");
        assert_eq!(lines[0]["field_service"], "other");
        assert_eq!(lines[0]["field_level"], 3);
    }

    fn levels(vars: &[(&str, &str)]) -> Vec<String> {
        logs(vars, || {
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        })
        .iter()
        .map(|l| l["level"].as_str().unwrap().to_owned())
        .collect()
    }

    #[test]
    fn aws_lambda_log_level_sets_the_level_and_wins_over_rust_log() {
        assert_eq!(levels(&[]), ["INFO", "WARN", "ERROR"], "INFO by default");
        assert_eq!(
            levels(&[("AWS_LAMBDA_LOG_LEVEL", "WARN")]),
            ["WARN", "ERROR"]
        );
        assert_eq!(
            levels(&[("AWS_LAMBDA_LOG_LEVEL", "debug")]),
            ["DEBUG", "INFO", "WARN", "ERROR"]
        );
        assert_eq!(levels(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]), ["ERROR"]);
        assert_eq!(
            levels(&[("AWS_LAMBDA_LOG_LEVEL", "ERROR"), ("RUST_LOG", "debug")]),
            ["ERROR"]
        );
        assert_eq!(levels(&[("RUST_LOG", "warn")]), ["WARN", "ERROR"]);
        assert_eq!(
            levels(&[("RUST_LOG", "not a directive")]),
            ["INFO", "WARN", "ERROR"]
        );
    }

    #[test]
    fn rust_log_sets_a_level_per_target() {
        let lines = logs(&[("RUST_LOG", "tsunagu=debug,warn")], || {
            tracing::debug!(target: "tsunagu::store", "ours");
            tracing::info!(target: "aws_smithy_runtime", "theirs");
            tracing::warn!(target: "aws_smithy_runtime", "theirs, louder");
        });
        let messages: Vec<&str> = lines
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages, ["ours", "theirs, louder"]);
    }

    #[test]
    fn the_invocation_keeps_its_ids_when_the_level_hides_info() {
        let lines = logs(&[("AWS_LAMBDA_LOG_LEVEL", "ERROR")], || {
            let _in = invocation(false).entered();
            tracing::error!("boom");
        });
        assert_eq!(
            lines[0]["function_request_id"],
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
        );
        assert_eq!(lines[0]["cold_start"], false);
    }
}
