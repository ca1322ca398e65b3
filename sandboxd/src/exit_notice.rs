//! Early exit notices from runs on the spare interpreter.
//!
//! An interpreter that imported numpy, pandas and matplotlib takes ~5 ms (more on a busy host) to
//! be torn down by the kernel after `_exit`, and its pipes close and its parent hears of it only
//! after that. So a run on a spare, once it has flushed its output, closes its stdio and says
//! its exit status here just before `_exit`: the run's stream ends then, not after the teardown.
//!
//! - **Who may say it.** The listener is an abstract unix socket with a random name (given to
//!   the spare in its job). The kernel tells who connected (`SO_PEERCRED`), and a notice counts
//!   only from the process that is the leader of a run waiting for one — the run's own
//!   interpreter. Any other connection is read and ignored. A program that sends its own notice
//!   and goes on only ends its own run early: its leader is then a background process of a run
//!   that is over, as if it had forked and exited, and it is killed when the run's record ends.
//! - **Bounded.** At most [`MAX_READERS`] connections are read at once (others are closed
//!   unread), each for at most [`READ_TIMEOUT`], each at most 16 bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Connections read at once.
const MAX_READERS: usize = 16;
/// Longest a connection may take to say its status.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The listener and the runs waiting for a notice.
pub struct ExitNotices {
    name: String,
    waiting: Mutex<HashMap<i32, oneshot::Sender<i32>>>,
}

/// A run's wait for its notice; dropping it forgets the run.
pub struct Notice {
    pid: i32,
    rx: oneshot::Receiver<i32>,
    notices: Weak<ExitNotices>,
}

impl Notice {
    /// The exit status the run's leader said; pends forever once the sender is gone (the
    /// leader's real exit decides then).
    pub async fn status(&mut self) -> i32 {
        match (&mut self.rx).await {
            Ok(code) => code,
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        if let Some(notices) = self.notices.upgrade() {
            notices.lock().remove(&self.pid);
        }
    }
}

impl ExitNotices {
    /// Binds the listener and serves it until `stop`; `None` when it cannot be bound (runs then
    /// end when their interpreter is gone, as cold ones do).
    pub fn start(stop: CancellationToken) -> Option<Arc<Self>> {
        use std::os::linux::net::SocketAddrExt;
        // Random: no other daemon on this network namespace picks it (the local backend runs
        // several).
        let name = format!("agent-runtime-exit-{}", crate::contexts::random_hex(8));
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr)
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for exit notices"))
            .ok()?;
        listener.set_nonblocking(true).ok()?;
        let listener = tokio::net::UnixListener::from_std(listener).ok()?;
        let this = Arc::new(Self {
            name,
            waiting: Mutex::default(),
        });
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            let readers = Arc::new(tokio::sync::Semaphore::new(MAX_READERS));
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut conn, _)) = accepted else {
                    continue;
                };
                let Ok(permit) = readers.clone().try_acquire_owned() else {
                    continue;
                };
                let weak = weak.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let Some(pid) = conn.peer_cred().ok().and_then(|c| c.pid()) else {
                        return;
                    };
                    let mut buf = [0u8; 16];
                    let mut len = 0;
                    let read = tokio::time::timeout(READ_TIMEOUT, async {
                        while len < buf.len() {
                            match conn.read(&mut buf[len..]).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => len += n,
                            }
                        }
                    })
                    .await;
                    if read.is_err() {
                        return;
                    }
                    let Some(code) = std::str::from_utf8(&buf[..len])
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        .filter(|c| (0..=255).contains(c))
                    else {
                        return;
                    };
                    if let Some(notices) = weak.upgrade() {
                        if let Some(tx) = notices.lock().remove(&pid) {
                            let _ = tx.send(code);
                        }
                    }
                });
            }
        });
        Some(this)
    }

    /// The abstract socket's name (without the leading NUL).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for a notice from process `pid` (a run's leader).
    pub fn expect(self: &Arc<Self>, pid: i32) -> Notice {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(pid, tx);
        Notice {
            pid,
            rx,
            notices: Arc::downgrade(self),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, oneshot::Sender<i32>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}
