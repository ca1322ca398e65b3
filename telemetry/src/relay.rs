//! Spans carried by the host instead of sent to a collector: sandboxd has no network under
//! Docker, so when the host asks (`SANDBOXD_TRACES=host`) its exporter encodes each batch as an
//! OTLP `ExportTraceServiceRequest` into a bounded queue, which `Telemetry.Spans` drains to the
//! host; the host forwards the bytes to its own collector as they are.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prost::Message as _;
use tokio::sync::Notify;

/// The variable a host sets on sandboxd to have its spans relayed (value `host`).
pub const TRACES_ENV: &str = "SANDBOXD_TRACES";

/// Batches kept while no host reads them (a batch holds up to 512 spans).
const QUEUE_BATCHES: usize = 256;

/// What a backend sets on a sandboxd it starts: `SANDBOXD_TRACES=host` and the batch timing
/// (`OTEL_BSP_*`) when this process exports spans; nothing otherwise. Never the collector's
/// address or headers: sandboxd does not talk to the collector.
pub fn relay_env() -> Vec<(String, String)> {
    if !crate::enabled() {
        return Vec::new();
    }
    let mut env = vec![(TRACES_ENV.to_owned(), "host".to_owned())];
    env.extend(std::env::vars().filter(|(k, _)| k.starts_with("OTEL_BSP_")));
    env
}

/// Encoded span batches waiting for the host, oldest first.
#[derive(Debug)]
pub struct SpanQueue {
    batches: Mutex<VecDeque<Bytes>>,
    ready: Notify,
    dropped: AtomicU64,
    capacity: usize,
}

impl SpanQueue {
    fn new(capacity: usize) -> Self {
        Self {
            batches: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
            capacity,
        }
    }

    /// Queues a batch; when the queue is full the batch is dropped and counted, never waited on.
    fn push(&self, batch: Bytes) {
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        if batches.len() >= self.capacity {
            drop(batches);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        batches.push_back(batch);
        drop(batches);
        self.ready.notify_one();
    }

    /// The oldest batch, and how many were dropped since the last call; waits for one.
    pub async fn next(&self) -> (Bytes, u64) {
        loop {
            let popped = self
                .batches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            if let Some(batch) = popped {
                return (batch, self.dropped.swap(0, Ordering::Relaxed));
            }
            // A push between the pop and here left a permit: this returns at once.
            self.ready.notified().await;
        }
    }

    /// Puts a batch the host did not take back at the front (its stream ended while sending).
    pub fn unread(&self, batch: Bytes) {
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_front(batch);
        self.ready.notify_one();
    }
}

static QUEUE: OnceLock<Arc<SpanQueue>> = OnceLock::new();

/// The queue this process's spans go to, when they are relayed ([`crate::init_relayed`]).
pub fn queue() -> Option<Arc<SpanQueue>> {
    QUEUE.get().cloned()
}

/// The exporter of a relayed process: each batch, encoded, into the queue.
#[derive(Debug)]
pub(crate) struct QueueExporter {
    queue: Arc<SpanQueue>,
    resource: ResourceAttributesWithSchema,
}

impl QueueExporter {
    /// The exporter, and the process's queue created with it.
    pub(crate) fn install() -> Self {
        let queue = QUEUE
            .get_or_init(|| Arc::new(SpanQueue::new(QUEUE_BATCHES)))
            .clone();
        Self {
            queue,
            resource: ResourceAttributesWithSchema::default(),
        }
    }
}

impl SpanExporter for QueueExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        };
        self.queue.push(Bytes::from(request.encode_to_vec()));
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let queue = SpanQueue::new(2);
        for b in [&b"a"[..], b"b", b"c", b"d"] {
            queue.push(Bytes::from_static(b));
        }
        assert_eq!(queue.next().await, (Bytes::from_static(b"a"), 2));
        queue.unread(Bytes::from_static(b"a"));
        assert_eq!(queue.next().await, (Bytes::from_static(b"a"), 0));
        assert_eq!(queue.next().await, (Bytes::from_static(b"b"), 0));
        let waiting = tokio::spawn(async move {
            let queue = Arc::new(queue);
            let q = queue.clone();
            let next = tokio::spawn(async move { q.next().await });
            tokio::task::yield_now().await;
            queue.push(Bytes::from_static(b"e"));
            next.await
        });
        assert_eq!(
            waiting.await.ok().and_then(Result::ok).map(|(b, _)| b),
            Some(Bytes::from_static(b"e"))
        );
    }
}
