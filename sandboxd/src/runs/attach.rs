//! Attach: a run's buffered events from a seq on, then live ones as they come, until the run is
//! over, the client leaves, or the daemon stops.

use std::sync::Arc;

use agent_runtime_proto::v1::ExecEvent;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::run_events::EventStream;
use crate::runs::record::RunRecord;

/// Events read from the ring at a time (and buffered towards the client).
const BATCH: usize = 16;

/// Streams `run`'s events from `from_seq`; with `no_wait`, only what is buffered now.
pub fn attach(
    run: Arc<RunRecord>,
    from_seq: u64,
    no_wait: bool,
    stop: CancellationToken,
) -> EventStream {
    let (tx, rx) = mpsc::channel(BATCH);
    tokio::spawn(async move {
        let mut cursor = from_seq;
        let mut watch = run.ring.watch();
        loop {
            watch.borrow_and_update();
            let read = run.ring.read(cursor, BATCH);
            let mut out: Vec<ExecEvent> = Vec::with_capacity(read.events.len() + 1);
            if let Some(gap) = read.gap {
                out.push(ExecEvent {
                    run_id: run.id.clone(),
                    gap: Some(gap),
                    ..ExecEvent::default()
                });
            }
            let full = read.events.len() == BATCH;
            out.extend(read.events.into_iter().map(|(seq, event)| ExecEvent {
                run_id: run.id.clone(),
                seq,
                event: Some(event),
                ..ExecEvent::default()
            }));
            cursor = read.next;
            for event in out {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if read.ended || (no_wait && !full) {
                return;
            }
            if full {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tx.closed() => return,
                changed = watch.changed() => if changed.is_err() {
                    return;
                },
            }
        }
    });
    ReceiverStream::new(rx)
}
