//! One carried connection as an `AsyncRead + AsyncWrite` straight over its `Egress.Carry`
//! stream: reads take the daemon's frames (no copy of their bytes), writes become frames. It
//! meters every byte into the sandbox's total (failing past the byte cap), and holds the
//! connection's place under the caps until it is dropped — by the HTTP server, or by the
//! tunnel a CONNECT handed it to.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use agent_runtime_proto::v1::EgressFrame;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::PollSender;
use tonic::Streaming;

use super::SandboxEgress;

/// Largest frame towards the daemon.
const CHUNK: usize = 256 * 1024;
/// How long the daemon's stream is still read after we are done, so that bytes we sent last
/// reach the process before the call ends (dropping the stream would cancel the call, and the
/// daemon would drop what it had not written yet).
const LINGER: Duration = Duration::from_secs(10);

/// See the module doc.
pub(super) struct Pipe {
    inbound: Option<Streaming<EgressFrame>>,
    pending: Bytes,
    out: PollSender<EgressFrame>,
    sandbox: Arc<SandboxEgress>,
    /// Byte cap (0: none).
    cap: u64,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Pipe {
    /// A pipe over `inbound` (the daemon's frames) and `out` (ours); the sandbox's open count
    /// is raised now and lowered when the pipe drops.
    pub(super) fn new(
        inbound: Streaming<EgressFrame>,
        out: PollSender<EgressFrame>,
        sandbox: Arc<SandboxEgress>,
        cap: u64,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        sandbox.open.fetch_add(1, Ordering::Relaxed);
        Self {
            inbound: Some(inbound),
            pending: Bytes::new(),
            out,
            sandbox,
            cap,
            _permit: permit,
        }
    }

    fn meter(&self, n: usize) -> io::Result<()> {
        let total = self.sandbox.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if self.cap > 0 && total > self.cap {
            return Err(io::Error::other(format!(
                "the sandbox's egress byte limit ({} bytes) is reached",
                self.cap
            )));
        }
        Ok(())
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = buf.remaining().min(self.pending.len());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(self.meter(n));
            }
            let Some(inbound) = self.inbound.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match ready!(inbound.poll_next_unpin(cx)) {
                Some(Ok(frame)) => self.pending = frame.data,
                Some(Err(status)) => {
                    self.inbound = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        format!("the daemon's side failed: {}", status.message()),
                    )));
                }
                None => {
                    self.inbound = None;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if ready!(self.out.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the daemon closed the connection",
            )));
        }
        let n = buf.len().min(CHUNK);
        self.meter(n)?;
        let frame = EgressFrame {
            data: Bytes::copy_from_slice(&buf[..n]),
            ..Default::default()
        };
        if self.out.send_item(frame).is_err() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Our end of stream: sandboxd half-closes the process's connection.
        self.out.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.sandbox.open.fetch_sub(1, Ordering::Relaxed);
        self.out.close();
        if let (Some(mut inbound), Ok(rt)) =
            (self.inbound.take(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(async move {
                let drain = async { while let Some(Ok(_)) = inbound.next().await {} };
                let _ = tokio::time::timeout(LINGER, drain).await;
            });
        }
    }
}
