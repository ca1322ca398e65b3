//! `RunOutcome`: an Exec or RunCode event stream folded into what the run produced, with the one
//! definition of success every front end reports, and a cap on the output kept.
//!
//! Traceback policy: a context run's exception stays whole in [`RunOutcome::error`]; a front end
//! that has only stdout and stderr to show (REST's `output`, the CLI) appends
//! [`traceback_text`] to stderr, as [`RunOutcome::stderr_with_traceback`] does.

use std::time::Duration;

use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::{ExecError, ExecEvent, ExecExit, RichResult};
use futures::{Stream, StreamExt};

use crate::sets::{ExitReason, OutputStream};

/// The output cap the MCP bridge keeps per stream (a model reads the result).
pub const MODEL_OUTPUT_CAP: usize = 256 * 1024;

/// Everything a run produced, folded from its events.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// Standard output, lossily decoded, at most the cap.
    pub stdout: String,
    /// Standard error, lossily decoded, at most the cap.
    pub stderr: String,
    /// Output this fold dropped past its cap, in bytes (sandboxd's own cap is in `exit`).
    pub dropped_bytes: u64,
    /// Rich results of a context run, in order.
    pub results: Vec<RichResult>,
    /// The exception a context run ended with.
    pub error: Option<ExecError>,
    /// How the run ended; `None` when the stream ended without an exit event.
    pub exit: Option<ExecExit>,
    cap: usize,
}

impl Default for RunOutcome {
    fn default() -> Self {
        Self::new()
    }
}

/// The output chunk an event carries, if it carries one.
pub fn output_of(event: &ExecEvent) -> Option<(OutputStream, &[u8])> {
    match event.event.as_ref()? {
        Event::Stdout(b) => Some((OutputStream::Stdout, b)),
        Event::Stderr(b) => Some((OutputStream::Stderr, b)),
        Event::Result(_) | Event::Error(_) | Event::Exit(_) => None,
    }
}

/// A traceback as text: its lines joined by newlines.
pub fn traceback_text(error: &ExecError) -> String {
    error.traceback.join("\n")
}

impl RunOutcome {
    /// An empty fold that keeps all output.
    pub fn new() -> Self {
        Self::with_cap(usize::MAX)
    }

    /// An empty fold that keeps at most `cap_bytes` of each stream (cut on a char boundary) and
    /// counts the rest in `dropped_bytes`.
    pub fn with_cap(cap_bytes: usize) -> Self {
        Self {
            stdout: String::new(),
            stderr: String::new(),
            dropped_bytes: 0,
            results: Vec::new(),
            error: None,
            exit: None,
            cap: cap_bytes,
        }
    }

    /// Folds one event in; returns the output chunk it carried, for callers that also stream it.
    pub fn add<'e>(&mut self, event: &'e ExecEvent) -> Option<(OutputStream, &'e [u8])> {
        match event.event.as_ref()? {
            Event::Stdout(_) | Event::Stderr(_) => {}
            Event::Result(r) => self.results.push(r.clone()),
            Event::Error(e) => self.error = Some(e.clone()),
            Event::Exit(x) => self.exit = Some(x.clone()),
        }
        let (stream, bytes) = output_of(event)?;
        self.push(stream, bytes);
        Some((stream, bytes))
    }

    fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let cap = self.cap;
        let buf = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        let room = cap.saturating_sub(buf.len());
        if text.len() <= room {
            buf.push_str(&text);
            return;
        }
        let mut cut = room;
        while cut > 0 && !text.is_char_boundary(cut) {
            cut -= 1;
        }
        buf.push_str(&text[..cut]);
        self.dropped_bytes += (text.len() - cut) as u64;
    }

    /// Reads a whole event stream (a `tonic::Streaming<ExecEvent>`, say) into a fold with
    /// `cap_bytes` per stream; the first failed message is the error.
    pub async fn collect<S, E>(stream: S, cap_bytes: usize) -> Result<Self, E>
    where
        S: Stream<Item = Result<ExecEvent, E>>,
    {
        let mut out = Self::with_cap(cap_bytes);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            out.add(&event?);
        }
        Ok(out)
    }

    /// The one definition of success: the run ended (an exit event came) with code 0, was not
    /// killed, and raised no error.
    pub fn success(&self) -> bool {
        self.error.is_none() && self.exit.as_ref().is_some_and(|x| x.code == 0 && !x.killed)
    }

    /// The exit code, when the run ended.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit.as_ref().map(|x| x.code)
    }

    /// The run was killed (timeout, cancellation, out of memory).
    pub fn killed(&self) -> bool {
        self.exit.as_ref().is_some_and(|x| x.killed)
    }

    /// Why it was killed, when it was and the reason is one the protocol names.
    pub fn reason(&self) -> Option<ExitReason> {
        self.exit
            .as_ref()
            .filter(|x| x.killed)
            .and_then(|x| x.reason.parse().ok())
    }

    /// The run was killed for running past its timeout.
    pub fn timed_out(&self) -> bool {
        self.reason() == Some(ExitReason::Timeout)
    }

    /// A context's kernel had to be restarted: its state is lost.
    pub fn state_lost(&self) -> bool {
        self.exit.as_ref().is_some_and(|x| x.state_lost)
    }

    /// Output was dropped, by sandboxd's cap or this fold's.
    pub fn truncated(&self) -> bool {
        self.dropped_bytes > 0
            || self
                .exit
                .as_ref()
                .is_some_and(|x| x.stdout_truncated || x.stderr_truncated)
    }

    /// How long the run took (zero when it did not end).
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.exit.as_ref().map_or(0, |x| x.duration_ms))
    }

    /// The traceback of the run's exception, as text.
    pub fn traceback(&self) -> Option<String> {
        self.error.as_ref().map(traceback_text)
    }

    /// stderr with the exception's traceback after it (on a line of its own), for front ends
    /// that show only stdout and stderr.
    pub fn stderr_with_traceback(&self) -> String {
        let mut s = self.stderr.clone();
        if let Some(tb) = self.traceback() {
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(&tb);
            s.push('\n');
        }
        s
    }

    /// The `text/plain` form of each rich result, in order.
    pub fn text_results(&self) -> impl Iterator<Item = &str> {
        self.results
            .iter()
            .filter_map(|r| r.data.get("text/plain").map(String::as_str))
    }

    /// The base64 `image/png` of each rich result that has one, in order.
    pub fn images(&self) -> impl Iterator<Item = &str> {
        self.results
            .iter()
            .filter_map(|r| r.data.get("image/png").map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(e: Event) -> ExecEvent {
        ExecEvent {
            run_id: "run-1".into(),
            seq: 0,
            event: Some(e),
            ..Default::default()
        }
    }

    fn exit(code: i32, killed: bool, reason: &str) -> ExecEvent {
        ev(Event::Exit(ExecExit {
            code,
            killed,
            reason: reason.into(),
            duration_ms: 1500,
            ..Default::default()
        }))
    }

    fn fold(events: &[ExecEvent]) -> RunOutcome {
        let mut out = RunOutcome::new();
        for e in events {
            out.add(e);
        }
        out
    }

    #[test]
    fn success_needs_exit_zero_no_kill_no_error() {
        assert!(fold(&[exit(0, false, "")]).success());
        assert!(!fold(&[exit(1, false, "")]).success());
        assert!(!fold(&[exit(0, true, "timeout")]).success());
        assert!(!fold(&[]).success(), "no exit event");
        let raised = ev(Event::Error(ExecError {
            name: "ZeroDivisionError".into(),
            value: "division by zero".into(),
            traceback: vec!["Traceback".into(), "ZeroDivisionError".into()],
        }));
        assert!(!fold(&[raised, exit(0, false, "")]).success());
    }

    #[test]
    fn folds_output_and_hands_chunks_back() {
        let mut out = RunOutcome::new();
        let a = ev(Event::Stdout(b"hi ".to_vec()));
        assert_eq!(out.add(&a), Some((OutputStream::Stdout, b"hi ".as_slice())));
        out.add(&ev(Event::Stderr(b"warn".to_vec())));
        out.add(&ev(Event::Stdout(b"there".to_vec())));
        assert_eq!(out.add(&exit(0, false, "")), None);
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("hi there", "warn")
        );
        assert_eq!(out.exit_code(), Some(0));
        assert_eq!(out.duration(), Duration::from_millis(1500));
        assert!(!out.truncated());
    }

    #[test]
    fn caps_each_stream_on_a_char_boundary() {
        let mut out = RunOutcome::with_cap(4);
        out.add(&ev(Event::Stdout("abé".as_bytes().to_vec())));
        out.add(&ev(Event::Stdout("xyz".as_bytes().to_vec())));
        out.add(&ev(Event::Stderr(b"12345".to_vec())));
        assert_eq!(out.stdout, "abé");
        assert_eq!(out.stderr, "1234");
        assert_eq!(out.dropped_bytes, 3 + 1);
        assert!(out.truncated());
        let mut cut = RunOutcome::with_cap(3);
        cut.add(&ev(Event::Stdout("abé".as_bytes().to_vec())));
        assert_eq!((cut.stdout.as_str(), cut.dropped_bytes), ("ab", 2));
    }

    #[test]
    fn sandboxd_truncation_counts() {
        let mut x = exit(0, false, "");
        if let Some(Event::Exit(e)) = x.event.as_mut() {
            e.stderr_truncated = true;
        }
        assert!(fold(&[x]).truncated());
    }

    #[test]
    fn kill_reasons() {
        let out = fold(&[exit(137, true, "timeout")]);
        assert_eq!(out.reason(), Some(ExitReason::Timeout));
        assert!(out.timed_out() && out.killed());
        assert_eq!(
            fold(&[exit(137, true, "oom")]).reason(),
            Some(ExitReason::Oom)
        );
        assert_eq!(fold(&[exit(0, false, "")]).reason(), None);
        assert_eq!(fold(&[exit(137, true, "martians")]).reason(), None);
    }

    #[test]
    fn traceback_policy() {
        let mut out = fold(&[ev(Event::Stderr(b"partial".to_vec()))]);
        assert_eq!(out.stderr_with_traceback(), "partial");
        out.add(&ev(Event::Error(ExecError {
            name: "E".into(),
            value: "v".into(),
            traceback: vec!["line 1".into(), "E: v".into()],
        })));
        assert_eq!(out.traceback().as_deref(), Some("line 1\nE: v"));
        assert_eq!(out.stderr_with_traceback(), "partial\nline 1\nE: v\n");
        assert_eq!(out.stderr, "partial", "stderr itself is untouched");
    }

    #[test]
    fn rich_results() {
        let r = RichResult {
            data: [
                ("text/plain".to_owned(), "2".to_owned()),
                ("image/png".to_owned(), "iVBO".to_owned()),
            ]
            .into_iter()
            .collect(),
            is_main_result: true,
        };
        let out = fold(&[ev(Event::Result(r)), exit(0, false, "")]);
        assert_eq!(out.text_results().collect::<Vec<_>>(), ["2"]);
        assert_eq!(out.images().collect::<Vec<_>>(), ["iVBO"]);
        assert!(out.success());
    }

    #[test]
    fn collects_a_stream_and_stops_at_an_error() {
        let events = vec![Ok(ev(Event::Stdout(b"a".to_vec()))), Ok(exit(0, false, ""))];
        let out = futures::executor::block_on(RunOutcome::collect(
            futures::stream::iter(events),
            MODEL_OUTPUT_CAP,
        ));
        assert_eq!(
            out.map(|o| (o.success(), o.stdout)),
            Ok::<_, ()>((true, "a".into()))
        );
        let failing = vec![Ok(ev(Event::Stdout(b"a".to_vec()))), Err("broken")];
        let out = futures::executor::block_on(RunOutcome::collect(
            futures::stream::iter(failing),
            MODEL_OUTPUT_CAP,
        ));
        assert_eq!(out.err(), Some("broken"));
    }
}
