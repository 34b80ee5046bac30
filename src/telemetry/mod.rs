//! Telemetry: structured logs through `tracing` (text for terminals, JSON for containers, always on
//! standard error so that command output on standard out stays machine-readable) with a level
//! that can be changed at runtime; OpenTelemetry traces over OTLP when an endpoint is configured;
//! Prometheus metrics ([`metrics`]); and the readiness state ([`health`]).

pub mod health;
pub mod metrics;
mod process;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, dynamic_filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, reload};

use crate::settings::{LogFormat, LogSettings, OtlpSettings};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log level {0:?} is not a valid tracing filter: {1}")]
    Level(String, String),
    #[error("the log level cannot be changed: {0}")]
    Reload(String),
    #[error("OTLP exporter: {0}")]
    Otlp(String),
}

/// The longest filter the API takes.
const MAX_DIRECTIVE_BYTES: usize = 256;
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Whether a filter set through the API is only levels: `info` or `target=level` parts. Span and
/// field filters (`[{...}]`) compile regular expressions that can take the process down, so only
/// the configuration and `RUST_LOG` may use them.
pub fn level_directive_allowed(directive: &str) -> Result<(), TelemetryError> {
    let refuse = |why: &str| {
        Err(TelemetryError::Level(
            directive.chars().take(64).collect(),
            why.to_string(),
        ))
    };
    if directive.trim().is_empty() || directive.len() > MAX_DIRECTIVE_BYTES {
        return refuse("a filter must be 1 to 256 bytes");
    }
    let parts: Vec<&str> = directive.split(',').map(str::trim).collect();
    if parts.len() > 16 {
        return refuse("at most 16 parts");
    }
    for part in parts {
        let (target, level) = part.rsplit_once('=').unwrap_or(("", part));
        let target_ok = target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'));
        if !target_ok || !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return refuse(
                "only `level` or `target=level` parts (trace, debug, info, warn, error, off); no span or field filters",
            );
        }
    }
    Ok(())
}

/// Changes the log filter of the running process.
#[derive(Clone)]
pub struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Arc<std::sync::Mutex<String>>,
}

impl std::fmt::Debug for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevel")
            .field("current", &self.current())
            .finish()
    }
}

impl LogLevel {
    pub fn current(&self) -> String {
        self.current.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Replaces the filter, e.g. `debug` or `nodemedic=debug,info`.
    pub fn set(&self, directive: &str) -> Result<(), TelemetryError> {
        let filter = EnvFilter::try_new(directive)
            .map_err(|e| TelemetryError::Level(directive.to_string(), e.to_string()))?;
        self.handle
            .reload(filter)
            .map_err(|e| TelemetryError::Reload(e.to_string()))?;
        if let Ok(mut current) = self.current.lock() {
            *current = directive.to_string();
        }
        Ok(())
    }
}

/// What `init` set up; [`Telemetry::shutdown`] flushes the traces still buffered.
#[derive(Clone)]
pub struct Telemetry {
    pub log_level: Option<LogLevel>,
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes the traces still buffered. Blocks: call it off the async runtime's workers, which
    /// the export itself runs on.
    pub fn shutdown(&self) {
        if let Some(tracer) = &self.tracer
            && let Err(error) = tracer.shutdown()
        {
            eprintln!("nodemedic: flushing traces failed: {error}");
        }
    }
}

fn json_logs(format: LogFormat) -> bool {
    match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configured level. A second
/// init (tests, the demo) keeps the first subscriber and returns no level handle.
pub fn init(log: &LogSettings, otlp: &OtlpSettings) -> Result<Telemetry, TelemetryError> {
    let directive = std::env::var("RUST_LOG").unwrap_or_else(|_| log.level.clone());
    let filter = EnvFilter::try_new(&directive)
        .map_err(|e| TelemetryError::Level(directive.clone(), e.to_string()))?;
    let (filter, handle) = reload::Layer::new(filter);
    let json = json_logs(log.format);
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed()
    };
    let export = TraceExport::resolve(otlp, |name| std::env::var(name).ok());
    let (traces, tracer) = if let Some(export) = export {
        let provider = tracer_provider(&export)?;
        let tracer = provider.tracer("nodemedic");
        // The daemon's own spans, and the AWS SDK's one span per operation when it runs inside
        // one of them (not the SDK's internals, nor the queue's idle long polls).
        let wanted = dynamic_filter_fn(|metadata, context| {
            let target = metadata.target();
            if target.starts_with("nodemedic") {
                return *metadata.level() <= tracing::Level::INFO;
            }
            metadata.is_span()
                && target.starts_with("aws_sdk_")
                && target.contains("::operation::")
                && context.lookup_current().is_some()
        });
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(wanted);
        (Some(layer), Some(provider))
    } else {
        (None, None)
    };
    // The log filter applies to the logs only, so that a quiet log level keeps the traces whole.
    let initialised = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .is_ok();
    Ok(Telemetry {
        log_level: initialised.then(|| LogLevel {
            handle,
            current: Arc::new(std::sync::Mutex::new(directive)),
        }),
        tracer,
    })
}

/// The exporter's HTTP client, run on the daemon's Tokio runtime: the SDK's batch processor
/// exports from a thread of its own, where reqwest finds no reactor.
#[derive(Debug)]
struct OnRuntime {
    inner: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await
            .map_err(|e| Box::new(e) as opentelemetry_http::HttpError)?
    }
}

/// Where traces go and under which service name: the standard OpenTelemetry variables
/// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`,
/// `OTEL_SERVICE_NAME`) win over the settings, as every OpenTelemetry SDK does; either turns
/// export on. `OTEL_RESOURCE_ATTRIBUTES` reaches the resource through the SDK's detector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TraceExport {
    endpoint: String,
    /// `None`: the SDK's own detector takes `OTEL_SERVICE_NAME`.
    service_name: Option<String>,
}

impl TraceExport {
    fn resolve(otlp: &OtlpSettings, env: impl Fn(&str) -> Option<String>) -> Option<TraceExport> {
        let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| {
                set("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
            })
            .or_else(|| Some(otlp.endpoint.clone()).filter(|e| !e.is_empty()))?;
        let service_name = match set("OTEL_SERVICE_NAME") {
            Some(_) => None,
            None => Some(otlp.service_name.clone()),
        };
        Some(TraceExport {
            endpoint,
            service_name,
        })
    }
}

fn tracer_provider(export: &TraceExport) -> Result<SdkTracerProvider, TelemetryError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| TelemetryError::Otlp(format!("no async runtime: {e}")))?;
    let client = OnRuntime {
        inner: crate::net::http_client(Duration::from_secs(10))
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?,
        runtime,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(&export.endpoint)
        .with_http_client(client)
        .build()
        .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if let Some(name) = &export.service_name {
        resource = resource.with_service_name(name.clone());
    }
    let resource = resource.build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The OpenTelemetry trace and span ids of `span`, when traces are exported: recorded on the
/// span as fields, every log line inside it carries them, and logs and traces join.
pub fn trace_ids(span: &tracing::Span) -> Option<(String, String)> {
    let context = span.context();
    let otel = context.span();
    let span_context = otel.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// The line a fatal error of the daemon ends with: JSON when its logs are JSON (the format
/// `NODEMEDIC_LOG__FORMAT` names, or `auto` without a terminal), so that a log pipeline keeps it.
pub fn fatal_line(error: &str, format_setting: Option<&str>) -> String {
    let json = match format_setting.map(str::to_ascii_lowercase).as_deref() {
        Some("json") => true,
        Some("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    if json {
        serde_json::json!({
            "timestamp": crate::core::time::now(),
            "level": "ERROR",
            "target": "nodemedic",
            "message": format!("nodemedic: {error}"),
        })
        .to_string()
    } else {
        format!("nodemedic: {error}")
    }
}

/// The OpenTelemetry trace id of the current span, when traces are exported.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod export_tests {
    use super::*;

    fn settings(endpoint: &str) -> OtlpSettings {
        OtlpSettings {
            endpoint: endpoint.into(),
            service_name: "nodemedic".into(),
        }
    }

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_fatal_error_is_a_json_line_when_logs_are_json() {
        let line = fatal_line("cannot start: \"quoted\"", Some("json"));
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["level"], "ERROR");
        assert_eq!(parsed["message"], "nodemedic: cannot start: \"quoted\"");
        assert_eq!(fatal_line("x", Some("text")), "nodemedic: x");
    }

    #[test]
    fn the_standard_variables_turn_export_on_and_win() {
        assert_eq!(TraceExport::resolve(&settings(""), with(&[])), None);
        let base = TraceExport::resolve(
            &settings(""),
            with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
        )
        .unwrap();
        assert_eq!(base.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(base.service_name.as_deref(), Some("nodemedic"));
        let traces = TraceExport::resolve(
            &settings("http://configured:4318/v1/traces"),
            with(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:4318/custom",
                ),
                ("OTEL_SERVICE_NAME", "nodemedic-prod"),
            ]),
        )
        .unwrap();
        assert_eq!(traces.endpoint, "http://traces:4318/custom");
        assert_eq!(
            traces.service_name, None,
            "the SDK reads OTEL_SERVICE_NAME itself"
        );
        let configured =
            TraceExport::resolve(&settings("http://configured:4318/v1/traces"), with(&[])).unwrap();
        assert_eq!(configured.endpoint, "http://configured:4318/v1/traces");
    }
}
