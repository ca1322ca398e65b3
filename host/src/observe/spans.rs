//! sandboxd's spans, carried to the host's collector: a sandbox has no network (Docker's
//! `none`), so the host opens `Telemetry.Spans` on each sandbox it exports for (the daemon was
//! started with `SANDBOXD_TRACES=host`, see `agent_runtime_telemetry::relay_env`) and forwards
//! every batch, as the daemon encoded it, to the collector its own spans go to — over OTLP/gRPC
//! or OTLP/HTTP as `OTEL_EXPORTER_OTLP_*` say.

use std::sync::OnceLock;
use std::time::Duration;

use agent_runtime_proto::v1::telemetry_client::TelemetryClient;
use agent_runtime_proto::v1::{SpanBatch, SpansRequest};
use agent_runtime_telemetry::{OtelEnv, Protocol};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::ids::SandboxId;

/// Longest the daemon may take to answer Spans.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Where relayed batches go: the host's own collector.
enum Collector {
    Grpc {
        client: TraceServiceClient<Channel>,
        metadata: Box<tonic::metadata::MetadataMap>,
        timeout: Duration,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
    },
}

/// The collector, when this process exports spans (decided once, at first use).
fn collector() -> Option<&'static Collector> {
    static COLLECTOR: OnceLock<Option<Collector>> = OnceLock::new();
    COLLECTOR
        .get_or_init(|| {
            if !agent_runtime_telemetry::enabled() {
                return None;
            }
            let otel = OtelEnv::from_env();
            let config = otel.export_config().ok().flatten()?;
            let timeout = otel.timeout();
            match config.protocol {
                Protocol::Grpc => {
                    let endpoint = match Channel::from_shared(config.endpoint.clone()) {
                        Ok(e) => e.timeout(timeout),
                        Err(e) => {
                            tracing::warn!(endpoint = %config.endpoint, error = %e, "sandboxes' spans are not relayed: bad endpoint");
                            return None;
                        }
                    };
                    let mut metadata = tonic::metadata::MetadataMap::new();
                    for (k, v) in otel.headers() {
                        if let (Ok(k), Ok(v)) = (
                            tonic::metadata::MetadataKey::from_bytes(
                                k.to_ascii_lowercase().as_bytes(),
                            ),
                            tonic::metadata::MetadataValue::try_from(v.as_str()),
                        ) {
                            metadata.insert(k, v);
                        }
                    }
                    Some(Collector::Grpc {
                        client: TraceServiceClient::new(endpoint.connect_lazy()),
                        metadata: Box::new(metadata),
                        timeout,
                    })
                }
                Protocol::HttpProtobuf => Some(Collector::Http {
                    client: reqwest::Client::new(),
                    url: config.endpoint,
                    headers: otel.headers(),
                    timeout,
                }),
            }
        })
        .as_ref()
}

impl Collector {
    async fn send(&self, batch: bytes::Bytes) -> Result<(), String> {
        match self {
            Collector::Grpc {
                client,
                metadata,
                timeout,
            } => {
                let request = ExportTraceServiceRequest::decode(batch)
                    .map_err(|e| format!("the daemon sent a batch that does not decode: {e}"))?;
                let mut request = tonic::Request::new(request);
                *request.metadata_mut() = (**metadata).clone();
                request.set_timeout(*timeout);
                client
                    .clone()
                    .export(request)
                    .await
                    .map(drop)
                    .map_err(|s| s.to_string())
            }
            Collector::Http {
                client,
                url,
                headers,
                timeout,
            } => {
                let mut request = client
                    .post(url)
                    .timeout(*timeout)
                    .header("content-type", "application/x-protobuf")
                    .body(batch);
                for (k, v) in headers {
                    request = request.header(k, v);
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                match response.status() {
                    s if s.is_success() => Ok(()),
                    s => Err(format!("the collector answered {s}")),
                }
            }
        }
    }
}

/// Relays `id`'s spans over `channel` until `stop` (the sandbox goes), re-opening the stream
/// when it drops; nothing when this host does not export spans.
pub(crate) fn relay(id: SandboxId, proof: String, channel: Channel, stop: CancellationToken) {
    let Some(collector) = collector() else {
        return;
    };
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let opened = tokio::select! {
                () = stop.cancelled() => return,
                opened = open(channel.clone(), &proof) => opened,
            };
            match opened {
                Ok(batches) => {
                    backoff = Duration::from_millis(200);
                    if forward(&id, batches, collector, &stop).await.is_break() {
                        return;
                    }
                }
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::FailedPrecondition | tonic::Code::Unimplemented
                    ) =>
                {
                    // Started before this host exported spans, or an older daemon.
                    tracing::info!(sandbox_id = %id, reason = %status.message(), "sandboxd's spans are not relayed");
                    return;
                }
                Err(status) => {
                    tracing::debug!(sandbox_id = %id, error = %status, "span relay down")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

async fn open(channel: Channel, proof: &str) -> Result<Streaming<SpanBatch>, tonic::Status> {
    let request = SpansRequest {
        proof: proof.to_owned(),
    };
    let mut client = TelemetryClient::new(channel);
    match tokio::time::timeout(CALL_TIMEOUT, client.spans(request)).await {
        Ok(answer) => answer.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// Forwards batches until the stream ends (`Continue`: open it again) or `stop` (`Break`).
async fn forward(
    id: &SandboxId,
    mut batches: Streaming<SpanBatch>,
    collector: &Collector,
    stop: &CancellationToken,
) -> std::ops::ControlFlow<()> {
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return std::ops::ControlFlow::Break(()),
            next = batches.message() => next,
        };
        let Ok(Some(batch)) = next else {
            return std::ops::ControlFlow::Continue(());
        };
        if batch.dropped > 0 {
            tracing::warn!(sandbox_id = %id, dropped = batch.dropped, "sandboxd dropped span batches: its queue was full");
        }
        // A collector that is down loses this batch, as the host's own exporter would.
        if let Err(e) = collector
            .send(batch.otlp_export_trace_service_request)
            .await
        {
            tracing::debug!(sandbox_id = %id, error = %e, "cannot forward sandboxd's spans");
        }
    }
}
