//! The layer every gRPC call of the host passes: a server span continuing the caller's trace
//! (and, for a forwarded `Sandbox` call, handed on to sandboxd in `traceparent` so its span is
//! this one's child), then, when the answer's last byte has gone, the call's metrics and its
//! audit record.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use agent_runtime_proto::SANDBOX_ID_HEADER;
use agent_runtime_telemetry::grpc::{grpc_status, method_of, server_span, Ended, Watched};
use chrono::{SecondsFormat, Utc};
use tonic::body::Body;
use tracing::Instrument as _;

use super::taps::{Decode, Tally, Tap};
use super::{CallAudit, CallRecord, Metrics};
use crate::auth::Gate;

/// A `Sandboxes` handler notes here which sandbox the call was about (the id is in the message,
/// which this layer does not decode).
#[derive(Clone, Debug)]
pub struct CallNote(Arc<Mutex<Tally>>);

impl CallNote {
    /// Records the sandbox the call was about.
    pub fn sandbox(&self, id: &str) {
        if let Ok(mut t) = self.0.lock() {
            t.sandbox_id = Some(id.to_owned());
        }
    }

    /// Notes `id` on the request's note, if it has one.
    pub fn note<T>(req: &tonic::Request<T>, id: &str) {
        if let Some(note) = req.extensions().get::<CallNote>() {
            note.sandbox(id);
        }
    }
}

/// What the layer needs: metrics, the audit log, and the gate (to name the caller).
pub struct Observe {
    /// The host's metrics.
    pub metrics: Metrics,
    /// The call audit log.
    pub audit: CallAudit,
    gate: Gate,
}

impl Observe {
    /// Observes calls into `metrics` and `audit`, naming callers with `gate`.
    pub fn new(metrics: Metrics, audit: CallAudit, gate: Gate) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            audit,
            gate,
        })
    }

    /// The tower layer for the gRPC server.
    pub fn layer(self: &Arc<Self>) -> ObserveLayer {
        ObserveLayer(self.clone())
    }

    fn caller(&self, headers: &http::HeaderMap) -> String {
        match self.gate.check(
            headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        ) {
            Ok(caller) => caller.0,
            Err(_) => "unauthenticated".to_owned(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ended(
        &self,
        operation: &str,
        audited: bool,
        caller: String,
        sandbox: String,
        started: Instant,
        tally: &Mutex<Tally>,
        ended: Ended,
        trace_id: Option<String>,
    ) {
        let tally = tally.lock().map(|t| t.clone()).unwrap_or_default();
        let outcome = code_name(ended.grpc_status);
        let elapsed = started.elapsed();
        let kill = tally.exit_reason.as_deref().filter(|r| !r.is_empty());
        self.metrics.call_ended(
            operation,
            outcome,
            elapsed.as_secs_f64(),
            tally.request_bytes,
            ended.bytes,
            kill,
        );
        if !audited {
            return;
        }
        self.audit.write(&CallRecord {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            caller,
            sandbox: tally.sandbox_id.clone().unwrap_or(sandbox),
            operation: operation.to_owned(),
            outcome: outcome.to_owned(),
            duration_ms: elapsed.as_millis() as u64,
            request_bytes: tally.request_bytes,
            response_bytes: ended.bytes,
            code_sha256: tally.code_sha256,
            exit_code: tally.exit_code,
            exit_reason: tally.exit_reason,
            trace_id,
        });
    }
}

/// The gRPC status code's name (`OK`, `NOT_FOUND`); `UNKNOWN` for an answer cut off.
pub fn code_name(status: Option<i32>) -> &'static str {
    match status
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Unknown)
    {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The tower layer; see the module doc.
#[derive(Clone)]
pub struct ObserveLayer(Arc<Observe>);

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ObserveService {
            inner,
            observe: self.0.clone(),
        }
    }
}

/// The service [`ObserveLayer`] makes.
#[derive(Clone)]
pub struct ObserveService<S> {
    inner: S,
    observe: Arc<Observe>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

const SANDBOX_SERVICE: &str = "agent_runtime.v1.Sandbox";
const SANDBOXES_SERVICE: &str = "agent_runtime.v1.Sandboxes";

impl<S> tower::Service<http::Request<Body>> for ObserveService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Watched<Body>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let (service, method) = method_of(&path);
        let forwarded = service == SANDBOX_SERVICE;
        let audited = forwarded || service == SANDBOXES_SERVICE;
        let operation = match service.rsplit_once('.') {
            Some((_, short)) => format!("{short}/{method}"),
            None => format!("{service}/{method}"),
        };
        let sandbox = req
            .headers()
            .get(SANDBOX_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_owned();
        let span = server_span(req.headers(), &path, &sandbox);
        if forwarded {
            // sandboxd's span becomes this one's child, not a sibling under the caller's.
            agent_runtime_telemetry::inject(&span, req.headers_mut());
        }
        let caller = if audited {
            self.observe.caller(req.headers())
        } else {
            String::new()
        };
        let tally = Arc::new(Mutex::new(Tally::default()));
        req.extensions_mut().insert(CallNote(tally.clone()));
        let (request_decode, response_decode) = match (forwarded, method) {
            (true, "Exec") => (Decode::ExecRequest, Decode::ExecEvents),
            (true, "RunCode") => (Decode::RunCodeRequest, Decode::ExecEvents),
            (true, "Attach") => (Decode::None, Decode::ExecEvents),
            _ => (Decode::None, Decode::None),
        };
        let req = req.map(|body| Body::new(Tap::new(body, tally.clone(), request_decode, true)));
        let started = Instant::now();
        let observe = self.observe.clone();
        let call = self.inner.call(req);
        Box::pin(
            async move {
                let resp = call.await?;
                let status = grpc_status(resp.headers());
                let span = tracing::Span::current();
                let trace_id = agent_runtime_telemetry::trace_id(&span);
                Ok(resp.map(|body| {
                    let body = if response_decode == Decode::None {
                        body
                    } else {
                        Body::new(Tap::new(body, tally.clone(), response_decode, false))
                    };
                    Watched::new(body, status, span, move |ended| {
                        observe.ended(
                            &operation, audited, caller, sandbox, started, &tally, ended, trace_id,
                        )
                    })
                }))
            }
            .instrument(span),
        )
    }
}
