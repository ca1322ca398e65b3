//! Reading a run's output in pages (MCP's `process_output`, the CLI's `run logs`): an Attach
//! stream folded into what is new since a seq, at most a number of bytes, and the seq to ask for
//! next — so a reader that comes back with `next_seq` gets the rest, nothing twice.

use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::{ExecEvent, ExecExit};
use futures::{Stream, StreamExt};

/// Default most output bytes one page carries.
pub const DEFAULT_PAGE_BYTES: usize = 64 * 1024;

/// One page of a run's output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputPage {
    /// Standard output in this page (lossily decoded).
    pub stdout: String,
    /// Standard error in this page (lossily decoded).
    pub stderr: String,
    /// The seq to read from next.
    pub next_seq: u64,
    /// Output bytes that fell out of the run's buffer before this page could read them.
    pub dropped_bytes: u64,
    /// How the run's program ended, when this page reached that event.
    pub exit: Option<ExecExit>,
    /// The page stopped at its byte limit: more is buffered.
    pub more: bool,
}

/// Reads an Attach stream (asked for with `from_seq` and `no_wait`) into a page of at most
/// `max_bytes` of output (whole events; a single larger event is taken alone).
pub async fn read_page<S, E>(stream: S, from_seq: u64, max_bytes: usize) -> Result<OutputPage, E>
where
    S: Stream<Item = Result<ExecEvent, E>>,
{
    let mut page = OutputPage {
        next_seq: from_seq.max(1),
        ..OutputPage::default()
    };
    let mut taken = 0usize;
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let event = event?;
        if let Some(gap) = &event.gap {
            page.dropped_bytes += gap.dropped_bytes;
            page.next_seq = gap.next_seq;
        }
        let size = match &event.event {
            Some(Event::Stdout(b) | Event::Stderr(b)) => b.len(),
            _ => 0,
        };
        if taken > 0 && taken + size > max_bytes {
            page.more = true;
            break;
        }
        taken += size;
        match &event.event {
            Some(Event::Stdout(b)) => page.stdout.push_str(&String::from_utf8_lossy(b)),
            Some(Event::Stderr(b)) => page.stderr.push_str(&String::from_utf8_lossy(b)),
            Some(Event::Exit(x)) => page.exit = Some(x.clone()),
            _ => {}
        }
        if event.seq > 0 {
            page.next_seq = event.seq + 1;
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use agent_runtime_proto::v1::OutputGap;

    use super::*;

    fn out(seq: u64, text: &str) -> Result<ExecEvent, ()> {
        Ok(ExecEvent {
            run_id: "run-1".into(),
            seq,
            event: Some(Event::Stdout(text.as_bytes().to_vec())),
            ..Default::default()
        })
    }

    #[test]
    fn pages_stop_at_their_size_and_say_where_to_go_on() {
        futures::executor::block_on(pages());
    }

    async fn pages() {
        let events = vec![out(3, "aaaa"), out(4, "bbbb"), out(5, "cccc")];
        let page = read_page(futures::stream::iter(events.clone()), 3, 9).await;
        assert_eq!(
            page,
            Ok(OutputPage {
                stdout: "aaaabbbb".into(),
                next_seq: 5,
                more: true,
                ..Default::default()
            })
        );
        let rest = read_page(futures::stream::iter(events[2..].to_vec()), 5, 9).await;
        assert_eq!(
            rest.map(|p| (p.stdout, p.next_seq, p.more)),
            Ok(("cccc".into(), 6, false))
        );
        // Nothing new: the same seq comes back.
        let none = read_page(
            futures::stream::iter(Vec::<Result<ExecEvent, ()>>::new()),
            6,
            9,
        )
        .await;
        assert_eq!(none.map(|p| p.next_seq), Ok(6));
    }

    #[test]
    fn gaps_are_counted() {
        futures::executor::block_on(gaps());
    }

    async fn gaps() {
        let gap = Ok(ExecEvent {
            gap: Some(OutputGap {
                from_seq: 1,
                next_seq: 7,
                dropped_bytes: 1234,
            }),
            ..Default::default()
        });
        let page = read_page(futures::stream::iter(vec![gap, out(7, "x")]), 0, 100).await;
        assert_eq!(page.map(|p| (p.dropped_bytes, p.next_seq)), Ok((1234, 8)));
    }
}
