//! One taken connection: bytes from the process go to the host as `EgressFrame.data` (64 KiB
//! reads), bytes from the host go to the process, each direction with back-pressure (a frame is
//! read only once the previous one is written; the next read waits for room in a small queue that
//! HTTP/2 flow control drains). The host's end of stream half-closes the connection; the
//! process's end of stream ends ours; a reset on either side closes both.

use agent_runtime_proto::v1::EgressFrame;
use futures::{Stream, StreamExt};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::denials::recent_denials;
use super::offers::Conn;

/// Largest read from the process, and so the largest frame sandboxd sends.
pub const CHUNK: usize = 64 << 10;
/// Frames from the process waiting for the host to read them.
const QUEUE: usize = 4;

/// What a Carry call streams back: the process's bytes.
pub type CarryStream = ReceiverStream<Result<EgressFrame, tonic::Status>>;

/// Starts carrying `conn`: `first` is the host's first frame (it may already hold data or a
/// denial), `inbound` the rest of the host's frames. Both pumps stop when `stop` is cancelled.
pub fn start<S>(conn: Conn, first: EgressFrame, inbound: S, stop: &CancellationToken) -> CarryStream
where
    S: Stream<Item = Result<EgressFrame, tonic::Status>> + Send + Unpin + 'static,
{
    let (read, write) = conn.stream.into_split();
    // Held by both pumps: the connection counts against the cap until both are done.
    let permit = Arc::new(conn.permit);
    let (tx, rx) = mpsc::channel(QUEUE);
    let abort = stop.child_token();
    {
        let abort = abort.clone();
        let permit = permit.clone();
        tokio::spawn(async move {
            let _permit = permit;
            down(first, inbound, write, &abort).await;
        });
    }
    tokio::spawn(async move {
        let _permit = permit;
        up(read, tx, &abort).await;
    });
    ReceiverStream::new(rx)
}

/// Host → process. The host's end of stream half-closes the connection (the process reads EOF
/// and may still send); a failed stream or write closes it both ways.
async fn down<S>(
    first: EgressFrame,
    mut inbound: S,
    mut write: OwnedWriteHalf,
    abort: &CancellationToken,
) where
    S: Stream<Item = Result<EgressFrame, tonic::Status>> + Unpin,
{
    let mut frame = first;
    loop {
        if let Some(denial) = &frame.denial {
            // Before the bytes: the browser looks this up as soon as it reads the refusal.
            recent_denials().record(&denial.host, &denial.reason);
        }
        if !frame.data.is_empty() {
            let written = tokio::select! {
                () = abort.cancelled() => return,
                written = write.write_all(&frame.data) => written,
            };
            if written.is_err() {
                abort.cancel();
                return;
            }
        }
        let next = tokio::select! {
            () = abort.cancelled() => return,
            next = inbound.next() => next,
        };
        match next {
            Some(Ok(next)) => frame = next,
            Some(Err(status)) => {
                tracing::debug!(error = %status, "the host's egress stream failed");
                abort.cancel();
                return;
            }
            None => {
                let _ = write.shutdown().await;
                return;
            }
        }
    }
}

/// Process → host, until the process closes its side (our stream ends), a read fails or the host
/// stops reading (both close).
async fn up(
    mut read: OwnedReadHalf,
    tx: mpsc::Sender<Result<EgressFrame, tonic::Status>>,
    abort: &CancellationToken,
) {
    loop {
        let mut buf = Vec::with_capacity(CHUNK);
        let got = tokio::select! {
            () = abort.cancelled() => return,
            () = tx.closed() => {
                abort.cancel();
                return;
            }
            got = read.read_buf(&mut buf) => got,
        };
        match got {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "reading an egress connection failed");
                abort.cancel();
                return;
            }
        }
        let frame = EgressFrame {
            data: buf.into(),
            ..EgressFrame::default()
        };
        let sent = tokio::select! {
            () = abort.cancelled() => return,
            sent = tx.send(Ok(frame)) => sent,
        };
        if sent.is_err() {
            abort.cancel();
            return;
        }
    }
}
