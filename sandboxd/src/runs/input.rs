//! A run's stdin kept open for SendInput: a task writes what callers send, in order, to the pipe
//! or the terminal; closing the pipe's sender is end of file.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::runs::pty::Pty;

/// Chunks queued towards the program before SendInput waits.
const QUEUE: usize = 64;
/// How long SendInput waits for a program that does not read its input.
pub const SEND_WAIT: Duration = Duration::from_secs(10);
/// What closing a terminal's input types: the EOF character (Ctrl-D).
const TERMINAL_EOF: u8 = 0x04;

/// Where a run's input goes.
pub enum Sink {
    /// The write end of its stdin pipe.
    Pipe(crate::exec::Writer),
    /// Its terminal.
    Terminal(Arc<Pty>),
}

/// Writes `data` to the sink.
async fn write(sink: &mut Sink, data: &[u8]) -> std::io::Result<()> {
    match sink {
        Sink::Pipe(pipe) => {
            pipe.write_all(data).await?;
            pipe.flush().await
        }
        Sink::Terminal(pty) => pty.write_all(data).await,
    }
}

/// The sending side of a run's input.
#[derive(Debug, Clone)]
pub struct Input {
    tx: mpsc::Sender<Vec<u8>>,
    terminal: bool,
}

/// Why input could not be delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The program closed its stdin or ended.
    Gone,
    /// The program has not read its input for [`SEND_WAIT`].
    Full,
}

impl Input {
    /// Starts the writer: `first` (the request's `stdin`), then whatever is sent, until the
    /// sender is dropped, the program stops reading, or `stop`.
    pub fn start(sink: Sink, first: Vec<u8>, stop: CancellationToken) -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let terminal = matches!(sink, Sink::Terminal(_));
        tokio::spawn(async move {
            let mut sink = sink;
            if !first.is_empty() && write(&mut sink, &first).await.is_err() {
                return;
            }
            loop {
                let data = tokio::select! {
                    () = stop.cancelled() => return,
                    data = rx.recv() => data,
                };
                let Some(data) = data else { return };
                if write(&mut sink, &data).await.is_err() {
                    return;
                }
            }
        });
        Self { tx, terminal }
    }

    /// Queues `data` for the program.
    pub async fn send(&self, data: Vec<u8>) -> Result<(), Refused> {
        match tokio::time::timeout(SEND_WAIT, self.tx.send(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Refused::Gone),
            Err(_) => Err(Refused::Full),
        }
    }

    /// Whether this input is a terminal (closing it types Ctrl-D rather than closing the pipe).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// The bytes that close a terminal's input.
    pub fn terminal_eof() -> Vec<u8> {
        vec![TERMINAL_EOF]
    }
}
