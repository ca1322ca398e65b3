//! A run's output buffer: the last events of a run, numbered by `seq`, bounded per run and, through
//! the [`Buffers`] all rings share, per sandbox. What falls out is counted, so a reader that asks
//! for it learns how much it missed (an [`OutputGap`]) instead of silently losing it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::OutputGap;
use tokio::sync::watch;

/// What one buffered event costs besides its payload (the entry, the deque slot, the allocation).
const ENTRY_OVERHEAD: u64 = 64;
/// Dropped events whose position is remembered, for exact gap sizes on resume.
const DROPPED_INDEX: usize = 1024;

/// Default bytes buffered per run.
pub const DEFAULT_PER_RUN: u64 = 4 * 1024 * 1024;
/// Default bytes buffered for all runs of the sandbox together.
pub const DEFAULT_TOTAL: u64 = 32 * 1024 * 1024;

/// The budget every run's buffer draws from; over it, the largest buffers give up their oldest
/// events first.
#[derive(Debug)]
pub struct Buffers {
    per_run: u64,
    total: u64,
    used: AtomicU64,
    rings: Mutex<Vec<Weak<Ring>>>,
}

impl Buffers {
    /// A budget of `per_run` bytes per run and `total` for all runs.
    pub fn new(per_run: u64, total: u64) -> Arc<Self> {
        Arc::new(Self {
            per_run: per_run.max(1),
            total: total.max(1),
            used: AtomicU64::new(0),
            rings: Mutex::default(),
        })
    }

    /// Bytes buffered for all runs now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The most all runs together may buffer.
    pub fn limit(&self) -> u64 {
        self.total
    }

    /// A new, empty ring drawing from this budget, holding at most `per_run` bytes (0: the
    /// default; never more than the total).
    pub fn ring(self: &Arc<Self>, per_run: u64) -> Arc<Ring> {
        let per_run = match per_run {
            0 => self.per_run,
            n => n.min(self.total),
        };
        let (seen, _) = watch::channel(0);
        let ring = Arc::new(Ring {
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
            seen,
            per_run,
            buffers: self.clone(),
        });
        if let Ok(mut rings) = self.rings.lock() {
            rings.retain(|r| r.strong_count() > 0);
            rings.push(Arc::downgrade(&ring));
        }
        ring
    }

    /// Drops the oldest events of the largest rings until the total fits.
    fn trim(&self) {
        while self.used() > self.total {
            let rings: Vec<Arc<Ring>> = match self.rings.lock() {
                Ok(rings) => rings.iter().filter_map(Weak::upgrade).collect(),
                Err(_) => return,
            };
            let Some(largest) = rings.iter().max_by_key(|r| r.buffered()) else {
                return;
            };
            if !largest.drop_oldest() {
                return;
            }
        }
    }
}

/// One buffered event.
#[derive(Debug)]
struct Entry {
    seq: u64,
    /// Output bytes the run produced before this event.
    offset: u64,
    event: Event,
}

#[derive(Debug, Default)]
struct State {
    entries: VecDeque<Entry>,
    /// The seq the next event gets.
    next_seq: u64,
    /// Output bytes produced, per stream.
    stdout: u64,
    stderr: u64,
    /// Bytes held (payload plus overhead).
    held: u64,
    /// Output bytes dropped from the buffer.
    dropped: u64,
    /// (seq, offset) of the last dropped events.
    dropped_index: VecDeque<(u64, u64)>,
    /// No event will come any more.
    closed: bool,
}

impl State {
    fn output(&self) -> u64 {
        self.stdout + self.stderr
    }

    fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |e| e.seq)
    }

    /// Output bytes produced before event `seq`, as far as the dropped index remembers (rounded
    /// down to a remembered event).
    fn offset_before(&self, seq: u64) -> u64 {
        if seq <= 1 {
            return 0;
        }
        self.dropped_index
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq)
            .map_or(0, |(_, offset)| *offset)
    }
}

/// What a read found.
#[derive(Debug, Default)]
pub struct Read {
    /// Set when events the reader asked for were dropped.
    pub gap: Option<OutputGap>,
    /// Events in order, with their seqs.
    pub events: Vec<(u64, Event)>,
    /// The seq to read from next.
    pub next: u64,
    /// The run is over and everything was read.
    pub ended: bool,
}

/// Counts of a ring, for ListRuns.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub buffered_bytes: u64,
    pub dropped_bytes: u64,
    pub next_seq: u64,
    pub closed: bool,
}

/// One run's buffer.
#[derive(Debug)]
pub struct Ring {
    state: Mutex<State>,
    /// The next seq, published on every push (and once more at close) for live readers.
    seen: watch::Sender<u64>,
    /// The most this ring holds.
    per_run: u64,
    buffers: Arc<Buffers>,
}

fn cost(event: &Event) -> u64 {
    ENTRY_OVERHEAD + output_len(event)
}

fn output_len(event: &Event) -> u64 {
    match event {
        Event::Stdout(b) | Event::Stderr(b) => b.len() as u64,
        _ => 0,
    }
}

impl Ring {
    /// Appends event `seq` (seqs come in order; the sender numbers them).
    pub fn push(&self, seq: u64, event: &Event) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.closed {
            return;
        }
        let offset = state.output();
        match event {
            Event::Stdout(b) => state.stdout += b.len() as u64,
            Event::Stderr(b) => state.stderr += b.len() as u64,
            _ => {}
        }
        let size = cost(event);
        state.entries.push_back(Entry {
            seq,
            offset,
            event: event.clone(),
        });
        state.held += size;
        state.next_seq = seq + 1;
        self.buffers.used.fetch_add(size, Ordering::Relaxed);
        while state.held > self.per_run && state.entries.len() > 1 {
            self.drop_front(&mut state);
        }
        let next = state.next_seq;
        drop(state);
        self.seen.send_replace(next);
        if self.buffers.used() > self.buffers.total {
            self.buffers.trim();
        }
    }

    /// No more events will come; readers end once they have read everything.
    pub fn close(&self) {
        let next = match self.state.lock() {
            Ok(mut state) => {
                state.closed = true;
                state.next_seq
            }
            Err(_) => return,
        };
        // A new value even when the seq did not move, so waiting readers look again.
        self.seen.send_modify(|v| *v = next);
    }

    /// Subscribes to pushes; look at the ring after `borrow_and_update`, wait with `changed`.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.seen.subscribe()
    }

    /// Up to `max_events` events from `from_seq` on (0 and 1 both mean the first).
    pub fn read(&self, from_seq: u64, max_events: usize) -> Read {
        let Ok(state) = self.state.lock() else {
            return Read {
                ended: true,
                ..Read::default()
            };
        };
        let mut from = from_seq.max(1);
        let first = state.first_seq();
        let mut gap = None;
        if from < first {
            let first_offset = state.entries.front().map_or(state.output(), |e| e.offset);
            gap = Some(OutputGap {
                from_seq: from,
                next_seq: first,
                dropped_bytes: first_offset.saturating_sub(state.offset_before(from)),
            });
            from = first;
        }
        let events: Vec<(u64, Event)> = state
            .entries
            .iter()
            .skip_while(|e| e.seq < from)
            .take(max_events)
            .map(|e| (e.seq, e.event.clone()))
            .collect();
        let next = events.last().map_or(from, |(seq, _)| seq + 1);
        Read {
            gap,
            ended: state.closed && next >= state.next_seq,
            events,
            next,
        }
    }

    /// Its counts now.
    pub fn stats(&self) -> Stats {
        self.state
            .lock()
            .map(|s| Stats {
                stdout_bytes: s.stdout,
                stderr_bytes: s.stderr,
                buffered_bytes: s.entries.iter().map(|e| output_len(&e.event)).sum(),
                dropped_bytes: s.dropped,
                next_seq: s.next_seq,
                closed: s.closed,
            })
            .unwrap_or_default()
    }

    /// Whether it is closed (the run is over).
    pub fn closed(&self) -> bool {
        self.state.lock().map_or(true, |s| s.closed)
    }

    fn buffered(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.held)
    }

    /// Drops the oldest event; false when there is none.
    fn drop_oldest(&self) -> bool {
        match self.state.lock() {
            Ok(mut state) if !state.entries.is_empty() => {
                self.drop_front(&mut state);
                true
            }
            _ => false,
        }
    }

    fn drop_front(&self, state: &mut State) {
        let Some(entry) = state.entries.pop_front() else {
            return;
        };
        let size = cost(&entry.event);
        state.held -= size;
        state.dropped += output_len(&entry.event);
        if state.dropped_index.len() == DROPPED_INDEX {
            state.dropped_index.pop_front();
        }
        state.dropped_index.push_back((entry.seq, entry.offset));
        self.buffers.used.fetch_sub(size, Ordering::Relaxed);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Ok(state) = self.state.lock() {
            self.buffers.used.fetch_sub(state.held, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(n: usize) -> Event {
        Event::Stdout(vec![b'x'; n])
    }

    #[test]
    fn reads_resume_without_gap_or_duplicate() {
        let buffers = Buffers::new(1 << 20, 1 << 20);
        let ring = buffers.ring(0);
        for seq in 1..=5 {
            ring.push(seq, &out(10));
        }
        let first = ring.read(0, 2);
        assert_eq!(first.events.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
        assert!(first.gap.is_none() && !first.ended);
        let rest = ring.read(first.next, 100);
        assert_eq!(
            rest.events.iter().map(|e| e.0).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(rest.next, 6);
        assert!(!rest.ended);
        ring.close();
        assert!(ring.read(6, 100).ended);
    }

    #[test]
    fn overflow_is_reported_as_a_gap_of_the_bytes_dropped() {
        // Room for about three 100-byte events.
        let buffers = Buffers::new(3 * (100 + ENTRY_OVERHEAD), 1 << 20);
        let ring = buffers.ring(0);
        for seq in 1..=10 {
            ring.push(seq, &out(100));
        }
        let read = ring.read(0, 100);
        assert_eq!(
            read.gap,
            Some(OutputGap {
                from_seq: 1,
                next_seq: 8,
                dropped_bytes: 700
            })
        );
        assert_eq!(read.events.len(), 3);
        // Resuming after seq 4 missed events 5, 6 and 7.
        assert_eq!(ring.read(5, 100).gap.map(|g| g.dropped_bytes), Some(300));
        let stats = ring.stats();
        assert_eq!(
            (
                stats.stdout_bytes,
                stats.dropped_bytes,
                stats.buffered_bytes
            ),
            (1000, 700, 300)
        );
    }

    #[test]
    fn the_total_budget_takes_from_the_largest_ring() {
        let buffers = Buffers::new(10_000, 3 * (1000 + ENTRY_OVERHEAD));
        let big = buffers.ring(0);
        let small = buffers.ring(0);
        small.push(1, &out(1000));
        for seq in 1..=4 {
            big.push(seq, &out(1000));
        }
        assert!(buffers.used() <= buffers.limit());
        assert_eq!(small.stats().dropped_bytes, 0);
        assert_eq!(big.stats().dropped_bytes, 2000);
        drop(big);
        assert_eq!(buffers.used(), 1000 + ENTRY_OVERHEAD);
    }
}
