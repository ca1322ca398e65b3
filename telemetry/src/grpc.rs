//! gRPC on the server side: a span per call, continuing the caller's trace, that lasts until the
//! answer's last frame (a stream's too) and carries its `grpc-status`; and [`Watched`], the
//! response body that learns how a call ended, for whoever needs that (the host's metrics and
//! audit log).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tracing::Instrument;

/// How a call's answer ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ended {
    /// The `grpc-status` (0 = OK), from the headers or the trailers; `None` if the answer was
    /// cut off before it said.
    pub grpc_status: Option<i32>,
    /// Bytes of the answer's data frames.
    pub bytes: u64,
}

type OnEnd = Box<dyn FnOnce(Ended) + Send>;

/// A response body that counts its bytes, reads the `grpc-status` in its trailers, keeps `span`
/// open and entered while it is polled, and calls its `on_end` once: at the end, or when dropped.
pub struct Watched<B> {
    inner: B,
    ended: Ended,
    span: tracing::Span,
    on_end: Option<OnEnd>,
}

impl<B> Watched<B> {
    /// Watches `inner`; `headers_status` is a `grpc-status` already in the response headers.
    pub fn new(
        inner: B,
        headers_status: Option<i32>,
        span: tracing::Span,
        on_end: impl FnOnce(Ended) + Send + 'static,
    ) -> Self {
        Self {
            inner,
            ended: Ended {
                grpc_status: headers_status,
                bytes: 0,
            },
            span,
            on_end: Some(Box::new(on_end)),
        }
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_end.take() {
            record_status(&self.span, self.ended.grpc_status);
            f(self.ended);
        }
    }
}

impl<B> Drop for Watched<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = {
            let _entered = this.span.enter();
            Pin::new(&mut this.inner).poll_frame(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.ended.bytes += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some(s) = grpc_status(trailers) {
                        this.ended.grpc_status = Some(s);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` in a header map (a trailers-only answer's headers, or trailers).
pub fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Records a call's status on its span: the code, and an error status for anything but OK.
pub fn record_status(span: &tracing::Span, status: Option<i32>) {
    let code = status.unwrap_or(2); // cut off: UNKNOWN
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The service and method of a gRPC path (`/pkg.Service/Method`).
pub fn method_of(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or(("", path))
}

/// A server span for one call, a child of the caller's context when the headers carry one.
/// `sandbox_id` is recorded when known.
pub fn server_span(headers: &http::HeaderMap, path: &str, sandbox_id: &str) -> tracing::Span {
    let (service, method) = method_of(path);
    let span = tracing::info_span!(
        parent: None,
        "rpc",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        sandbox_id = %sandbox_id,
    );
    crate::set_parent(&span, headers);
    span
}

/// A tower layer giving every call of a gRPC server its [`server_span`] (sandboxd's; the host
/// has its own, which also measures and audits).
#[derive(Clone, Debug)]
pub struct ServerSpans {
    sandbox_id: std::sync::Arc<str>,
}

impl ServerSpans {
    /// Spans that name `sandbox_id` (empty when unknown).
    pub fn new(sandbox_id: &str) -> Self {
        Self {
            sandbox_id: sandbox_id.into(),
        }
    }
}

impl<S> tower::Layer<S> for ServerSpans {
    type Service = ServerSpansService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerSpansService {
            inner,
            sandbox_id: self.sandbox_id.clone(),
        }
    }
}

/// The service [`ServerSpans`] makes.
#[derive(Clone, Debug)]
pub struct ServerSpansService<S> {
    inner: S,
    sandbox_id: std::sync::Arc<str>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for ServerSpansService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin,
{
    type Response = http::Response<Watched<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let span = server_span(req.headers(), req.uri().path(), &self.sandbox_id);
        let call = self.inner.call(req);
        Box::pin(
            async move {
                let resp = call.await?;
                let status = grpc_status(resp.headers());
                let span = tracing::Span::current();
                Ok(resp.map(|body| Watched::new(body, status, span, |_| {})))
            }
            .instrument(span),
        )
    }
}
