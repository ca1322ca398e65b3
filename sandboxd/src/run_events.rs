//! What every run streams, one-shot (`exec`) or a cell in a context (`contexts`): `ExecEvent`s
//! numbered in the order they were produced, under a fresh run id, through a bounded channel, so
//! a slow client slows the run's reading down instead of growing the daemon's memory.

use std::sync::Arc;

use agent_runtime_proto::v1::{exec_event::Event, ExecEvent, RunStarted};
use rand::RngCore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::runs::ring::Ring;

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

/// Numbers and sends a run's events; one per run, so `seq` follows production order. An Exec run
/// also keeps every event in its [`Ring`] (the journal), whether or not a client receives it.
pub(crate) struct EventSender {
    /// The calling client's stream; `None` once the call's stream has ended.
    tx: Option<mpsc::Sender<Result<ExecEvent, tonic::Status>>>,
    run_id: String,
    seq: u64,
    /// False once the client has gone away (or its stream ended).
    open: bool,
    journal: Option<Arc<Ring>>,
}

impl EventSender {
    /// A sender for a new run and the stream its events arrive on.
    pub(crate) fn channel() -> (Self, EventStream) {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let sender = Self {
            tx: Some(tx),
            run_id: new_run_id(),
            seq: 0,
            open: true,
            journal: None,
        };
        (sender, ReceiverStream::new(rx))
    }

    /// Keeps every event from now on in `ring` too.
    pub(crate) fn journal(&mut self, ring: Arc<Ring>) {
        self.journal = Some(ring);
    }

    /// Tells the client the run started (seq 0, not journaled: it is not output).
    pub(crate) fn started(&mut self, pid: i32) {
        if let (true, Some(tx)) = (self.open, &self.tx) {
            let event = ExecEvent {
                run_id: self.run_id.clone(),
                started: Some(RunStarted { pid }),
                ..ExecEvent::default()
            };
            // The channel is fresh: the first event always fits.
            self.open = tx.try_send(Ok(event)).is_ok();
        }
    }

    /// Ends the client's stream; later events go to the journal only.
    pub(crate) fn end_client(&mut self) {
        self.tx = None;
        self.open = false;
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
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }

    /// Notes that the client has gone away (seen through `closed`); later sends do nothing.
    pub(crate) fn client_gone(&mut self) {
        self.open = false;
    }

    /// Numbers one event, keeps it in the journal and sends it, waiting while the client is
    /// behind; false when there is no client (any more).
    pub(crate) async fn send(&mut self, event: Event) -> bool {
        self.seq += 1;
        if let Some(ring) = &self.journal {
            ring.push(self.seq, &event);
        }
        let (true, Some(tx)) = (self.open, &self.tx) else {
            return false;
        };
        let event = ExecEvent {
            run_id: self.run_id.clone(),
            seq: self.seq,
            event: Some(event),
            ..ExecEvent::default()
        };
        self.open = tx.send(Ok(event)).await.is_ok();
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
