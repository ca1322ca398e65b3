//! The HTTP proxy the host runs on each carried connection: `CONNECT host:port` (tunnelled as
//! is, no TLS interception) and absolute-form `http://` requests (forwarded one upstream
//! connection per request). Every request is decided by name (policy), then by the address
//! dialled (resolver); every decision is one audit line.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use agent_runtime_proto::v1::{EgressDenial, EgressFrame};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::audit::Line;
use super::pipe::Pipe;
use super::policy::{normalize, Verdict};
use super::resolve::DialError;
use super::{Egress, Outbound, SandboxEgress};

type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Longest a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Header marking the proxy's own refusals (sandboxd's browser looks for it).
pub const DENIED_HEADER: &str = "x-agent-runtime-egress";

/// One carried proxy connection.
pub(super) struct Conn {
    pub egress: Arc<Egress>,
    pub sandbox: Arc<SandboxEgress>,
    /// Frames to the daemon (for denial notices).
    pub frames: mpsc::Sender<EgressFrame>,
    /// Refuse every request with this reason (a cap is reached).
    pub refuse: Option<String>,
}

/// Serves HTTP/1.1 proxy requests on `io` until the client closes it.
pub(super) async fn serve(conn: Conn, io: Pipe) {
    let conn = Arc::new(conn);
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(conn, req).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "egress proxy connection ended");
    }
}

/// Where a request goes.
struct Target {
    host: String,
    port: u16,
}

async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let target = match target(&method, req.uri()) {
        Ok(t) => t,
        Err(why) => return text(StatusCode::BAD_REQUEST, why, false),
    };
    let sandbox = &conn.sandbox;
    let mut line = Line::new(
        sandbox.id.as_str(),
        method.as_str(),
        &target.host,
        target.port,
    );
    if let Some(why) = &conn.refuse {
        line.reason = Some(why.clone());
        return deny(
            &conn,
            line,
            &target,
            why.clone(),
            StatusCode::TOO_MANY_REQUESTS,
            started,
        )
        .await;
    }
    let rule = match sandbox.policy().decide(&target.host) {
        Verdict::Allowed(rule) => rule,
        Verdict::Denied(why) => {
            return deny(&conn, line, &target, why, StatusCode::FORBIDDEN, started).await;
        }
    };
    line.rule = Some(rule);
    let (upstream, addr) = match conn
        .egress
        .config
        .resolver
        .dial(&target.host, target.port)
        .await
    {
        Ok(ok) => ok,
        Err(DialError::Refused(why)) => {
            line.rule = None;
            return deny(&conn, line, &target, why, StatusCode::FORBIDDEN, started).await;
        }
        Err(DialError::Unreachable(why)) => {
            line.reason = Some(why.clone());
            line.duration_ms = started.elapsed().as_millis() as u64;
            conn.egress.audit.write(&line);
            return text(StatusCode::BAD_GATEWAY, why, false);
        }
    };
    line.address = addr.to_string();
    line.decision = "allowed";
    let outbound = sandbox.track(&normalize(&target.host));
    if method == Method::CONNECT {
        let egress = conn.egress.clone();
        tokio::spawn(tunnel(egress, req, upstream, outbound, line, started));
        return Response::new(empty());
    }
    forward(conn.egress.clone(), req, upstream, outbound, line, started).await
}

/// The destination of a proxy request, or why it is not one.
fn target(method: &Method, uri: &Uri) -> Result<Target, String> {
    let not_proxy = || {
        "this is the sandbox's egress proxy: send CONNECT host:port or an absolute http:// URL \
         (HTTP_PROXY and HTTPS_PROXY are already set for processes in the sandbox)"
            .to_owned()
    };
    let authority = uri.authority().ok_or_else(not_proxy)?;
    let host = authority.host();
    if host.is_empty() {
        return Err(not_proxy());
    }
    let port = if *method == Method::CONNECT {
        authority
            .port_u16()
            .ok_or_else(|| format!("CONNECT {authority}: a port is required"))?
    } else {
        match uri.scheme_str() {
            Some("http") => authority.port_u16().unwrap_or(80),
            Some("https") => {
                return Err(
                    "https:// URLs go through CONNECT (the proxy does not terminate TLS)"
                        .to_owned(),
                )
            }
            _ => return Err(not_proxy()),
        }
    };
    Ok(Target {
        host: host.to_owned(),
        port,
    })
}

async fn deny(
    conn: &Conn,
    mut line: Line,
    target: &Target,
    why: String,
    status: StatusCode,
    started: Instant,
) -> Response<ProxyBody> {
    line.decision = "denied";
    line.reason = Some(why.clone());
    line.duration_ms = started.elapsed().as_millis() as u64;
    conn.egress.audit.write(&line);
    let notice = EgressFrame {
        denial: Some(EgressDenial {
            host: normalize(&target.host),
            port: u32::from(target.port),
            reason: why.clone(),
        }),
        ..Default::default()
    };
    let _ = conn.frames.send(notice).await;
    text(status, why, true)
}

/// A one-line text response; refusals carry the marker header and the reason as the status
/// line's phrase too (clients such as requests show only that for a failed CONNECT).
fn text(status: StatusCode, line: String, refusal: bool) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("{line}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if refusal {
        headers.insert(DENIED_HEADER, HeaderValue::from_static("denied"));
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(line.into_bytes()) {
            response.extensions_mut().insert(phrase);
        }
    }
    response
}

fn full(s: String) -> ProxyBody {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// After a `200` to CONNECT: bytes both ways until either side closes or the policy changes.
async fn tunnel(
    egress: Arc<Egress>,
    req: Request<Incoming>,
    upstream: tokio::net::TcpStream,
    outbound: Outbound,
    mut line: Line,
    started: Instant,
) {
    let up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    if let Ok(upgraded) = hyper::upgrade::on(req).await {
        let mut client = TokioIo::new(upgraded);
        let mut server = Counted {
            inner: upstream,
            written: up.clone(),
            read: down.clone(),
        };
        tokio::select! {
            () = outbound.token.cancelled() => line.reason = Some("closed: the sandbox's egress policy changed or the sandbox went away".into()),
            _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, 64 << 10, 256 << 10) => {}
        }
    }
    line.bytes_up = up.load(Ordering::Relaxed);
    line.bytes_down = down.load(Ordering::Relaxed);
    line.duration_ms = started.elapsed().as_millis() as u64;
    egress.audit.write(&line);
}

/// A plain `http://` request: one upstream connection, the response streamed back.
async fn forward(
    egress: Arc<Egress>,
    req: Request<Incoming>,
    upstream: tokio::net::TcpStream,
    outbound: Outbound,
    line: Line,
    started: Instant,
) -> Response<ProxyBody> {
    let up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().cloned();
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|pq| Uri::from(pq.clone()))
        .unwrap_or_else(|| Uri::from_static("/"));
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            parts.headers.insert(header::HOST, a);
        }
    }
    let body = Tally {
        inner: body,
        count: up.clone(),
        cut: None,
        _done: None,
    };
    let request = Request::from_parts(parts, body);
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(ok) => ok,
            Err(e) => return text(StatusCode::BAD_GATEWAY, format!("upstream: {e}"), false),
        };
    let token = outbound.token.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = token.cancelled() => {}
            _ = connection => {}
        }
    });
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(e) => {
            let mut line = line;
            line.reason = Some(format!("upstream: {e}"));
            line.duration_ms = started.elapsed().as_millis() as u64;
            egress.audit.write(&line);
            return text(StatusCode::BAD_GATEWAY, format!("upstream: {e}"), false);
        }
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = Tally {
        inner: body,
        count: down.clone(),
        cut: Some(outbound.token.clone()),
        _done: Some(Finish {
            egress,
            line,
            up,
            down,
            started,
            _outbound: outbound,
        }),
    };
    Response::from_parts(parts, body.boxed())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

/// Writes a forwarded request's audit line when its response body ends (or is dropped).
struct Finish {
    egress: Arc<Egress>,
    line: Line,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    started: Instant,
    _outbound: Outbound,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.line.bytes_up = self.up.load(Ordering::Relaxed);
        self.line.bytes_down = self.down.load(Ordering::Relaxed);
        self.line.duration_ms = self.started.elapsed().as_millis() as u64;
        self.egress.audit.write(&self.line);
    }
}

/// A body that counts its data bytes (and finishes an audit line when dropped).
struct Tally<B> {
    inner: B,
    count: Arc<AtomicU64>,
    /// Cancelled when a policy change closes the connection: the body then ends in an error, so
    /// the client sees a cut download, never a complete-looking one.
    cut: Option<tokio_util::sync::CancellationToken>,
    _done: Option<Finish>,
}

impl<B> Body for Tally<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.cut.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Poll::Ready(Some(Err(
                "closed: the sandbox's egress policy changed or the sandbox went away".into(),
            )));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upstream socket that counts bytes each way.
struct Counted<S> {
    inner: S,
    written: Arc<AtomicU64>,
    read: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read
            .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
