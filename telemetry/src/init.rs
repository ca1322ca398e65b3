//! The tracing subscriber of every binary here: logs to stderr and, when an OTLP endpoint is
//! configured by the standard variables, spans exported over OTLP.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol we do not speak.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: use grpc or http/protobuf")]
    Protocol(String),
    /// The exporter could not be built (a bad endpoint, for one).
    #[error("cannot set up OTLP export to {endpoint}: {detail}")]
    Exporter {
        /// The endpoint configured.
        endpoint: String,
        /// What the exporter said.
        detail: String,
    },
    /// A subscriber was already installed in this process.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// One readable line per event; colour only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format {other:?}: use text or json")),
        }
    }
}

/// Where spans go, as the standard `OTEL_*` variables say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportConfig {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    /// `grpc` or `http/protobuf` (the default, as the OpenTelemetry spec says).
    pub protocol: Protocol,
}

/// An OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (tonic).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
}

impl std::fmt::Display for ExportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.protocol {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        };
        write!(f, "OTLP {protocol} to {}", self.endpoint)
    }
}

/// The process's `OTEL_*` variables, read once. sandboxd takes them out of its environment
/// ([`OtelEnv::take`]) so that user code never sees a collector's address or headers.
#[derive(Clone, Debug, Default)]
pub struct OtelEnv(std::collections::HashMap<String, String>);

impl OtelEnv {
    /// The `OTEL_*` variables as they are.
    pub fn from_env() -> Self {
        Self(
            std::env::vars()
                .filter(|(k, v)| k.starts_with("OTEL_") && !v.trim().is_empty())
                .collect(),
        )
    }

    /// The `OTEL_*` variables, removed from the environment. Call before any thread exists.
    pub fn take() -> Self {
        let env = Self::from_env();
        for key in env.0.keys() {
            std::env::remove_var(key);
        }
        env
    }

    /// These variables, for a process that should export as this one does (a container).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim())
    }

    /// The export these variables ask for; `Ok(None)` when traces are off (no endpoint, or
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`).
    pub fn export_config(&self) -> Result<Option<ExportConfig>, TelemetryError> {
        if self
            .get("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || self.get("OTEL_TRACES_EXPORTER") == Some("none")
        {
            return Ok(None);
        }
        let protocol = match self
            .get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| self.get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => return Err(TelemetryError::Protocol(other.to_owned())),
        };
        let endpoint = match (
            self.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            self.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            // The signal's own endpoint is used as it is.
            (Some(url), _) => url.to_owned(),
            (None, Some(base)) if protocol == Protocol::HttpProtobuf => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, Some(base)) => base.to_owned(),
            (None, None) => return Ok(None),
        };
        Ok(Some(ExportConfig { endpoint, protocol }))
    }

    /// The headers to send a collector (`OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`).
    pub fn headers(&self) -> Vec<(String, String)> {
        self.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|| self.get("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(pairs)
            .unwrap_or_default()
    }

    /// How long one export may take (`OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, default 10 s).
    pub fn timeout(&self) -> Duration {
        self.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| self.get("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis)
    }

    /// The `service.name` spans carry: `OTEL_SERVICE_NAME`, else `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `default` (the binary's name).
    pub fn service_name(&self, default: &str) -> String {
        if let Some(name) = self.get("OTEL_SERVICE_NAME") {
            return name.to_owned();
        }
        self.get("OTEL_RESOURCE_ATTRIBUTES")
            .map(pairs)
            .and_then(|attrs| attrs.into_iter().find(|(k, _)| k == "service.name"))
            .map_or_else(|| default.to_owned(), |(_, v)| v)
    }

    fn resource(&self, service: &str) -> Resource {
        let mut attributes: Vec<(String, String)> = self
            .get("OTEL_RESOURCE_ATTRIBUTES")
            .map(pairs)
            .unwrap_or_default();
        let service = self.service_name(service);
        attributes.retain(|(k, _)| k != "service.name");
        attributes.push(("service.name".into(), service));
        Resource::builder_empty()
            .with_attributes(
                attributes
                    .into_iter()
                    .map(|(k, v)| opentelemetry::KeyValue::new(k, v)),
            )
            .build()
    }
}

/// `k=v,k2=v2` with percent-encoded values (the OTel form of headers and resource attributes).
fn pairs(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The export the process's environment asks for (see [`OtelEnv::export_config`]).
pub fn export_config() -> Result<Option<ExportConfig>, TelemetryError> {
    OtelEnv::from_env().export_config()
}

/// Keeps the exporter alive; [`Telemetry::shutdown`] (or drop) flushes what is buffered.
#[must_use = "dropping it stops span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans ended so far (tests; a process about to be killed).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }

    /// Flushes and stops the exporter, off the async threads (an OTLP/gRPC export needs them).
    pub async fn shutdown(mut self) {
        if let Some(p) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Which spans are exported: ours down to debug (the child spans of real work), others' info.
const EXPORT_FILTER: &str =
    "info,agent_runtime=debug,sandboxd=debug,mcp_bridge=debug,agent_runtime_telemetry=debug";

/// Installs the process's subscriber: logs at `RUST_LOG` (else `default_filter`) to stderr in
/// `format`, plus OTLP span export named `service` (unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` name it) when `otel` configures an endpoint. Call inside a tokio
/// runtime when export may be on (the gRPC exporter's channel lives there).
pub fn init(
    service: &str,
    format: LogFormat,
    default_filter: &str,
    otel: &OtelEnv,
) -> Result<Telemetry, TelemetryError> {
    let provider = match otel.export_config()? {
        None => None,
        Some(config) => Some(provider(service, &config, otel)?),
    };
    install(service, format, default_filter, provider)
}

/// Installs the subscriber of a process whose spans the host relays (sandboxd started with
/// `SANDBOXD_TRACES=host`): as [`init`], but spans go, encoded as OTLP, to the queue
/// [`crate::relay::queue`] returns, and from there to the host. `otel` gives the service name,
/// resource attributes and batch timing; any endpoint in it is not used.
pub fn init_relayed(
    service: &str,
    format: LogFormat,
    default_filter: &str,
    otel: &OtelEnv,
) -> Result<Telemetry, TelemetryError> {
    let exporter = crate::relay::QueueExporter::install();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batch_processor(exporter, otel))
        .with_resource(otel.resource(service))
        .build();
    install(service, format, default_filter, Some(provider))
}

fn install(
    service: &str,
    format: LogFormat,
    default_filter: &str,
    provider: Option<SdkTracerProvider>,
) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Not exporting: log lines carry no span context, so no span is made at all (the fmt layer
    // would otherwise format every call's span fields for nothing). Exporting: spans prefix the
    // log lines written inside them too.
    // (The hint keeps the filter's level, so the `log` bridge and disabled call sites stay cheap.)
    let spans = provider.is_some();
    let filter = filter.and(
        filter_fn(move |meta| spans || !meta.is_span()).with_max_level_hint(LevelFilter::TRACE),
    );
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service.to_owned()))
            .with_filter(EXPORT_FILTER.parse::<Targets>().unwrap_or_default())
    });
    tracing_subscriber::registry()
        .with(fmt)
        .with(layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if provider.is_some() {
        crate::propagate::enable();
    }
    Ok(Telemetry { provider })
}

fn provider(
    service: &str,
    config: &ExportConfig,
    otel: &OtelEnv,
) -> Result<SdkTracerProvider, TelemetryError> {
    let failed = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: config.endpoint.clone(),
        detail: e.to_string(),
    };
    // Everything is passed explicitly: sandboxd has taken the variables out of its environment.
    let exporter = match config.protocol {
        Protocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in otel.headers() {
                if let (Ok(k), Ok(v)) = (
                    tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
                    tonic::metadata::MetadataValue::try_from(v.as_str()),
                ) {
                    metadata.insert(k, v);
                }
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(otel.timeout())
                .with_metadata(metadata)
                .build()
        }
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(otel.timeout())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_headers(otel.headers().into_iter().collect())
            .build(),
    }
    .map_err(|e| failed(&e))?;
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch_processor(exporter, otel))
        .with_resource(otel.resource(service))
        .build())
}

fn batch_processor(
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    otel: &OtelEnv,
) -> opentelemetry_sdk::trace::BatchSpanProcessor {
    // Read here, not by the SDK from the environment: sandboxd has taken the variables out.
    let mut batch = opentelemetry_sdk::trace::BatchConfigBuilder::default();
    if let Some(ms) = otel
        .get("OTEL_BSP_SCHEDULE_DELAY")
        .and_then(|v| v.parse::<u64>().ok())
    {
        batch = batch.with_scheduled_delay(Duration::from_millis(ms));
    }
    opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch.build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> OtelEnv {
        OtelEnv(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn no_endpoint_is_off() {
        assert_eq!(env(&[]).export_config().ok(), Some(None));
        let off = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(off.export_config().ok(), Some(None));
    }

    #[test]
    fn endpoints_and_protocols() {
        let http = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]);
        assert_eq!(
            http.export_config().ok().flatten().map(|c| c.endpoint),
            Some("http://c:4318/v1/traces".to_owned())
        );
        let grpc = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let c = grpc.export_config().ok().flatten();
        assert_eq!(c.as_ref().map(|c| c.protocol), Some(Protocol::Grpc));
        assert_eq!(c.map(|c| c.endpoint), Some("http://c:4317".to_owned()));
        let json = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        assert!(json.export_config().is_err());
    }

    #[test]
    fn the_service_name_follows_the_spec_order() {
        assert_eq!(env(&[]).service_name("agent-runtime"), "agent-runtime");
        let attrs = (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=ci,service.name=a%20b",
        );
        assert_eq!(env(&[attrs]).service_name("agent-runtime"), "a b");
        let both = env(&[attrs, ("OTEL_SERVICE_NAME", "runner")]);
        assert_eq!(both.service_name("agent-runtime"), "runner");
    }

    #[test]
    fn headers_and_attributes_are_percent_decoded() {
        assert_eq!(
            pairs("a=b%20c, api-key = x%3Dy"),
            vec![("a".into(), "b c".into()), ("api-key".into(), "x=y".into())]
        );
    }
}
