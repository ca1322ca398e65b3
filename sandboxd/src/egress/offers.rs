//! The host's side of the proxy as sandboxd sees it: the open `Listen` stream (at most one; a
//! newer one replaces it) and the connections offered on it, waiting to be taken by `Carry`.
//!
//! Every connection holds one of [`MAX_OPEN`] permits from acceptance until both directions are
//! done, offered or carried; one not taken within [`OFFER_TTL`] is answered with a 503 and
//! closed.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_runtime_proto::v1::EgressOffer;
use futures::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::refuse::{self, Refusal};

/// Most proxy connections open at once, offered or carried.
pub const MAX_OPEN: usize = 512;
/// How long an offer waits to be taken.
pub const OFFER_TTL: Duration = Duration::from_secs(10);

/// The offers a `Listen` call streams: the `ready` offer, then one per connection.
pub type OfferStream = Pin<Box<dyn Stream<Item = Result<EgressOffer, tonic::Status>> + Send>>;

/// An accepted proxy connection and its place under the cap.
pub struct Conn {
    /// The process's connection.
    pub stream: TcpStream,
    /// Released when the connection is done.
    pub permit: OwnedSemaphorePermit,
}

/// The open `Listen` stream.
struct Listener {
    offers: mpsc::Sender<u64>,
    /// Ends the stream (a newer Listen came, or the daemon stops).
    ended: CancellationToken,
}

/// Listen streams and the connections offered on them.
pub struct Offers {
    proxy_url: String,
    next_id: AtomicU64,
    listener: Mutex<Option<Listener>>,
    pending: Mutex<HashMap<u64, Conn>>,
    open: Arc<Semaphore>,
    stop: CancellationToken,
}

impl Offers {
    /// Offers for the proxy at `proxy_url`; `stop` ends every stream and waiting offer.
    pub fn new(proxy_url: String, stop: CancellationToken) -> Self {
        Self {
            proxy_url,
            next_id: AtomicU64::new(1),
            listener: Mutex::default(),
            pending: Mutex::default(),
            open: Arc::new(Semaphore::new(MAX_OPEN)),
            stop,
        }
    }

    /// The daemon is stopping (proxy tasks end with this).
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// A permit for one more connection, if the sandbox is under the cap.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.open.clone().try_acquire_owned().ok()
    }

    /// A new `Listen` stream, replacing (ending) the previous one. Connections still waiting are
    /// offered again on it, so those a host lost with its old channel do not expire; an id can
    /// thus reach the host twice, and the second `Carry` of it gets NOT_FOUND.
    pub fn listen(&self) -> OfferStream {
        // Every waiting connection holds a permit, so the queue never holds more than MAX_OPEN.
        let (tx, rx) = mpsc::channel(MAX_OPEN);
        let ended = self.stop.child_token();
        let old = {
            // Under the listener lock, so no offer is made between the snapshot and the switch.
            let mut listener = self.lock_listener();
            let waiting: Vec<u64> = self.lock_pending().keys().copied().collect();
            for id in waiting {
                let _ = tx.try_send(id);
            }
            listener.replace(Listener {
                offers: tx,
                ended: ended.clone(),
            })
        };
        if let Some(old) = old {
            old.ended.cancel();
        }
        let ready = EgressOffer {
            conn_id: 0,
            proxy_url: self.proxy_url.clone(),
        };
        let offers = ReceiverStream::new(rx).map(|conn_id| {
            Ok(EgressOffer {
                conn_id,
                proxy_url: String::new(),
            })
        });
        Box::pin(
            futures::stream::once(async move { Ok(ready) })
                .chain(offers)
                .take_until(ended.cancelled_owned()),
        )
    }

    /// Offers a new connection on the open `Listen` stream; without one it is answered with a
    /// 503 here. An offer not taken in time is answered and closed.
    pub fn offer(self: &Arc<Self>, conn: Conn) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let refused = {
            let mut listener = self.lock_listener();
            // In the map before the host hears of it, so a fast Carry finds it.
            self.lock_pending().insert(id, conn);
            match listener.as_ref().map(|l| l.offers.try_send(id)) {
                Some(Ok(())) => None,
                Some(Err(TrySendError::Closed(_))) => {
                    // The host hung up: no one is listening any more.
                    *listener = None;
                    Some(Refusal::NotConnected)
                }
                // The host has not read a queue's worth of offers: it is still there, slow.
                Some(Err(TrySendError::Full(_))) => Some(Refusal::HostBusy),
                None => Some(Refusal::NotConnected),
            }
        };
        if let Some(refusal) = refused {
            if let Some(conn) = self.take(id) {
                refuse::spawn(conn.stream, refusal, &self.stop);
            }
            return;
        }
        let offers = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = offers.stop.cancelled() => {}
                () = tokio::time::sleep(OFFER_TTL) => {
                    if let Some(conn) = offers.take(id) {
                        tracing::debug!(conn_id = id, "egress offer expired");
                        refuse::spawn(conn.stream, Refusal::NotTaken, &offers.stop);
                    }
                }
            }
        });
    }

    /// Takes an offered connection (once).
    pub fn take(&self, id: u64) -> Option<Conn> {
        self.lock_pending().remove(&id)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Conn>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_listener(&self) -> std::sync::MutexGuard<'_, Option<Listener>> {
        self.listener.lock().unwrap_or_else(|p| p.into_inner())
    }
}
