//! What every run streams, one-shot (`exec`) or a cell in a context (`contexts`): `ExecEvent`s
//! numbered in the order they were produced, under a fresh run id, through a bounded channel, so
//! a slow client slows the run's reading down instead of growing the daemon's memory.

use agent_runtime_proto::v1::{exec_event::Event, ExecEvent};
use rand::RngCore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Events buffered towards the client; with exec's 64 KiB chunks this bounds a run's memory to
/// about 1 MiB.
const EVENT_BUFFER: usize = 16;

/// The stream of events one run produces.
pub type EventStream = ReceiverStream<Result<ExecEvent, tonic::Status>>;

/// A fresh `run-…` id for one call's events.
pub(crate) fn new_run_id() -> String {
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("run-{}", hex::encode(bytes))
}

/// Numbers and sends a run's events; one per run, so `seq` follows production order.
pub(crate) struct EventSender {
    tx: mpsc::Sender<Result<ExecEvent, tonic::Status>>,
    run_id: String,
    seq: u64,
    /// False once the client has gone away.
    open: bool,
}

impl EventSender {
    /// A sender for a new run and the stream its events arrive on.
    pub(crate) fn channel() -> (Self, EventStream) {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let sender = Self {
            tx,
            run_id: new_run_id(),
            seq: 0,
            open: true,
        };
        (sender, ReceiverStream::new(rx))
    }

    /// The run's id.
    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// False once a send found the client gone, or `client_gone` was called.
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Resolves once the client has gone away.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }

    /// Notes that the client has gone away (seen through `closed`); later sends do nothing.
    pub(crate) fn client_gone(&mut self) {
        self.open = false;
    }

    /// Sends one event, waiting while the client is behind; false when the client is gone.
    pub(crate) async fn send(&mut self, event: Event) -> bool {
        if !self.open {
            return false;
        }
        self.seq += 1;
        let event = ExecEvent {
            run_id: self.run_id.clone(),
            seq: self.seq,
            event: Some(event),
        };
        self.open = self.tx.send(Ok(event)).await.is_ok();
        self.open
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn events_are_numbered_under_one_run_id_until_the_client_leaves() {
        let (mut events, mut stream) = EventSender::channel();
        assert!(events.run_id().starts_with("run-") && events.run_id().len() == 16);
        assert!(events.send(Event::Stdout(b"a".to_vec())).await);
        assert!(events.send(Event::Stderr(b"b".to_vec())).await);
        for want in [1, 2] {
            let got = stream.next().await.and_then(Result::ok);
            assert_eq!(got.as_ref().map(|e| e.seq), Some(want));
            assert_eq!(got.map(|e| e.run_id), Some(events.run_id().to_string()));
        }
        drop(stream);
        events.closed().await;
        assert!(!events.send(Event::Stdout(b"c".to_vec())).await);
        assert!(!events.is_open());
    }

    #[test]
    fn run_ids_differ() {
        assert_ne!(new_run_id(), new_run_id());
    }
}
