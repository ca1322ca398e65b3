//! The only answer sandboxd ever writes on a proxy connection itself: `503 Service Unavailable`
//! with a one-line reason, when the host cannot take the connection. Everything else is the
//! host's to say.
//!
//! The request is read (not parsed) first, up to a bound: closing a socket with unread bytes
//! makes the kernel send a reset, and the client would lose the answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Refusals answered at once; past that a connection is just closed (a flood must not grow
/// tasks without bound).
const ANSWERING: usize = 64;
/// How long the request may take to arrive, and the client to close after the answer.
const READ_WAIT: Duration = Duration::from_secs(2);
/// Most request bytes read before answering.
const MAX_HEAD: usize = 16 << 10;

/// Why sandboxd answers a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Listen` stream is open.
    NotConnected,
    /// The host did not take the connection in time.
    NotTaken,
    /// The host has not read the offers already made (a queue's worth).
    HostBusy,
    /// The sandbox has as many proxy connections open as it may.
    TooMany,
}

impl Refusal {
    /// The one-line body.
    pub fn reason(self) -> String {
        match self {
            Self::NotConnected => "the host's egress proxy is not connected".into(),
            Self::NotTaken => format!(
                "the host's egress proxy did not take the connection within {} s",
                super::OFFER_TTL.as_secs()
            ),
            Self::HostBusy => {
                "the host's egress proxy is not taking connections now; retry shortly".into()
            }
            Self::TooMany => format!(
                "too many connections through the egress proxy at once (at most {}); close some \
                 and retry",
                super::MAX_OPEN
            ),
        }
    }

    /// The whole answer: status line, headers, body.
    pub fn response(self) -> String {
        let body = format!("{}\n", self.reason());
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

/// Answers `stream` with `refusal` in a task of its own (bounded; over the bound the connection
/// is just closed), which ends within a few seconds or when `stop` is cancelled.
pub fn spawn(stream: TcpStream, refusal: Refusal, stop: &CancellationToken) {
    static SLOTS: Semaphore = Semaphore::const_new(ANSWERING);
    let Ok(slot) = SLOTS.try_acquire() else {
        return;
    };
    let stop = stop.clone();
    tokio::spawn(async move {
        let _slot = slot;
        tokio::select! {
            () = stop.cancelled() => {}
            () = answer(stream, refusal) => {}
        }
    });
}

async fn answer(mut stream: TcpStream, refusal: Refusal) {
    let mut head = Vec::with_capacity(1024);
    let _ = tokio::time::timeout(READ_WAIT, async {
        let mut buf = [0u8; 4096];
        while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if stream
        .write_all(refusal.response().as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let _ = stream.shutdown().await;
    // Wait for the client to close (reading what else it sends), so it reads the answer whole.
    let _ = tokio::time::timeout(READ_WAIT, async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_a_503_with_a_one_line_body() {
        let r = Refusal::NotConnected.response();
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        assert!(
            r.ends_with("\r\n\r\nthe host's egress proxy is not connected\n"),
            "{r}"
        );
        let body = "the host's egress proxy is not connected\n";
        assert!(
            r.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{r}"
        );
        assert!(Refusal::TooMany.reason().contains("at most 512"));
        assert!(Refusal::NotTaken.reason().contains("within 10 s"));
    }
}
