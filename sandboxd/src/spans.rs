//! The `Telemetry` gRPC service: the host reads this daemon's spans over the host↔sandboxd
//! channel (a sandbox has no network to reach a collector) and forwards them to its own. Only
//! the host may: every call proves the sandbox's secret.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use agent_runtime_proto::v1::telemetry_server::Telemetry;
use agent_runtime_proto::v1::{SpanBatch, SpansRequest};
use agent_runtime_telemetry::relay::SpanQueue;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::identity::Identity;

/// The `Telemetry` service.
#[derive(Clone)]
pub struct SpansService {
    /// `None` when the host did not ask for spans (`SANDBOXD_TRACES` unset).
    queue: Option<Arc<SpanQueue>>,
    identity: Option<Identity>,
    /// The stream being fed now; a newer Spans call ends it.
    current: Arc<Mutex<Option<CancellationToken>>>,
    /// Cancelled when the daemon stops.
    stop: CancellationToken,
}

impl SpansService {
    /// The service for this process's relayed spans, if any, checking proofs against `identity`
    /// (`None`: development mode, where every call is refused); its streams end with `stop`.
    pub fn new(
        queue: Option<Arc<SpanQueue>>,
        identity: Option<Identity>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            queue,
            identity,
            current: Arc::default(),
            stop,
        }
    }
}

type BatchStream = Pin<Box<dyn Stream<Item = Result<SpanBatch, Status>> + Send>>;

#[tonic::async_trait]
impl Telemetry for SpansService {
    type SpansStream = BatchStream;

    async fn spans(
        &self,
        request: Request<SpansRequest>,
    ) -> Result<Response<Self::SpansStream>, Status> {
        let identity = self.identity.as_ref().ok_or_else(|| {
            Status::permission_denied("this daemon has no sandbox secret; telemetry is off")
        })?;
        if !identity.verify_telemetry(&request.get_ref().proof) {
            return Err(Status::permission_denied(
                "the telemetry proof does not match this sandbox's secret",
            ));
        }
        let queue = self.queue.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this daemon was not started with SANDBOXD_TRACES=host; it relays no spans",
            )
        })?;
        let token = self.stop.child_token();
        if let Some(old) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(token.clone())
        {
            old.cancel();
        }
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let (batch, dropped) = tokio::select! {
                    () = token.cancelled() => return,
                    () = tx.closed() => return,
                    next = queue.next() => next,
                };
                let message = SpanBatch {
                    otlp_export_trace_service_request: batch,
                    dropped,
                };
                if let Err(unsent) = tx.send(Ok(message)).await {
                    if let Ok(message) = unsent.0 {
                        queue.unread(message.otlp_export_trace_service_request);
                    }
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
