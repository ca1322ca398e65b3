//! One run as sandboxd keeps it: what it runs, its session, its state, its output buffer, its
//! input and terminal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use agent_runtime_proto::sets::{ExitReason, Language, RunState};
use agent_runtime_proto::v1::ExecExit;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::process_tree::Tree;
use crate::runs::input::{Input, Refused};
use crate::runs::pty::{Pty, Size};
use crate::runs::ring::Ring;

/// Characters of the code a listing shows.
const COMMAND_CHARS: usize = 200;

/// One run's session: its id (the leader's pid), the leader's start tick, and, once we killed
/// it, why.
pub struct Session {
    /// The session id: the leader's pid.
    pub sid: i32,
    /// The leader's start tick: with `sid`, it names the run in the process tree for good.
    pub started: u64,
    reason: OnceLock<ExitReason>,
    tree: Arc<Tree>,
}

impl Session {
    /// The session of a run whose leader `sid` started at tick `started`.
    pub fn new(sid: i32, started: u64, tree: Arc<Tree>) -> Self {
        Self {
            sid,
            started,
            reason: OnceLock::new(),
            tree,
        }
    }

    /// Kills every process of the run; the first reason given is the one reported. Returns how
    /// many processes were killed.
    pub fn kill(&self, reason: ExitReason) -> usize {
        let _ = self.reason.set(reason);
        self.tree.kill_run(self.sid, self.started)
    }

    /// Notes a reason without killing (the daemon kills everything at once).
    pub fn doom(&self, reason: ExitReason) {
        let _ = self.reason.set(reason);
    }

    /// Its leader exited (and was reaped); what it left running stays the run's.
    pub fn leader_exited(&self) {
        self.tree.run_ended(self.sid);
    }

    /// Why we killed it, if we did.
    pub fn reason(&self) -> Option<ExitReason> {
        self.reason.get().copied()
    }

    /// Sends `signal` to every process of the run; how many got it.
    pub fn signal(&self, signal: i32) -> usize {
        self.tree.signal_run(self.sid, self.started, signal)
    }
}

/// What a run is, as its start fixed it.
pub struct RunSpec {
    /// `run-…`.
    pub id: String,
    /// Its language.
    pub language: Language,
    /// Its code (cut for listings).
    pub code: String,
    /// Started with `detach`.
    pub detached: bool,
}

/// One run.
pub struct RunRecord {
    /// `run-…`.
    pub id: String,
    /// The code, cut to [`COMMAND_CHARS`].
    pub command: String,
    /// Its language.
    pub language: Language,
    /// Wall-clock start.
    pub started_at: DateTime<Utc>,
    started: Instant,
    /// Started with `detach`.
    pub detached: bool,
    /// Its session and processes.
    pub session: Arc<Session>,
    /// Its output.
    pub ring: Arc<Ring>,
    /// Its terminal, for `pty` runs.
    pub terminal: Option<Arc<Pty>>,
    input: Mutex<Option<Input>>,
    /// How its program ended, once it did.
    end: Mutex<Option<(ExecExit, Instant)>>,
    /// CPU milliseconds last seen per process (pid, start tick).
    cpu: Mutex<HashMap<(i32, u64), u64>>,
}

impl RunRecord {
    /// A run that just started.
    pub fn new(
        spec: RunSpec,
        session: Arc<Session>,
        ring: Arc<Ring>,
        terminal: Option<Arc<Pty>>,
        input: Option<Input>,
    ) -> Self {
        let mut command: String = spec.code.trim().chars().take(COMMAND_CHARS).collect();
        if spec.code.trim().chars().count() > COMMAND_CHARS {
            command.push('…');
        }
        Self {
            id: spec.id,
            command,
            language: spec.language,
            started_at: Utc::now(),
            started: Instant::now(),
            detached: spec.detached,
            session,
            ring,
            terminal,
            input: Mutex::new(input),
            end: Mutex::new(None),
            cpu: Mutex::default(),
        }
    }

    /// Notes how its program ended.
    pub fn ended(&self, exit: ExecExit) {
        if let Ok(mut end) = self.end.lock() {
            end.get_or_insert((exit, Instant::now()));
        }
    }

    /// The run is over: nothing more comes out of it, and its input is closed.
    pub fn finish(&self) {
        self.ring.close();
        if let Ok(mut input) = self.input.lock() {
            input.take();
        }
    }

    /// How its program ended, if it did.
    pub fn exit(&self) -> Option<ExecExit> {
        self.end
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(|(x, _)| x.clone()))
    }

    /// Where it is.
    pub fn state(&self) -> RunState {
        match self.exit() {
            None => RunState::Running,
            Some(x) if x.killed => RunState::Killed,
            Some(_) => RunState::Exited,
        }
    }

    /// From start to its program's end, or to now.
    pub fn duration_ms(&self) -> u64 {
        let end = self
            .end
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(|(_, at)| *at))
            .unwrap_or_else(Instant::now);
        end.duration_since(self.started).as_millis() as u64
    }

    /// Whether SendInput reaches it.
    pub fn stdin_open(&self) -> bool {
        self.input.lock().is_ok_and(|i| i.is_some())
    }

    /// Sends `data` to its stdin.
    pub async fn send_input(&self, data: Vec<u8>) -> Result<()> {
        let input = self.input.lock().ok().and_then(|i| i.clone());
        let Some(input) = input else {
            return Err(self.no_input());
        };
        input.send(data).await.map_err(|why| match why {
            Refused::Gone => Error::RunInput(format!(
                "run {} no longer reads its input (its program closed stdin or ended)",
                self.id
            )),
            Refused::Full => Error::RunInput(format!(
                "run {} has not read its input for a while; its input queue is full",
                self.id
            )),
        })
    }

    /// Closes its stdin (end of file); a terminal gets Ctrl-D instead and stays open.
    pub async fn close_input(&self) -> Result<()> {
        let input = match self.input.lock() {
            Ok(mut input) => match input.as_ref() {
                Some(i) if i.is_terminal() => i.clone(),
                Some(_) => {
                    input.take();
                    return Ok(());
                }
                None => return Err(self.no_input()),
            },
            Err(_) => return Err(self.no_input()),
        };
        input
            .send(Input::terminal_eof())
            .await
            .map_err(|_| Error::RunInput(format!("run {} no longer reads its input", self.id)))
    }

    /// Changes its terminal's size.
    pub fn resize(&self, size: Size) -> Result<()> {
        match &self.terminal {
            Some(pty) => pty.resize(size),
            None => Err(Error::RunInput(format!(
                "run {} has no terminal; start it with pty to resize it",
                self.id
            ))),
        }
    }

    fn no_input(&self) -> Error {
        if self.exit().is_some() || self.ring.closed() {
            Error::RunInput(format!("run {} has ended; its input is closed", self.id))
        } else {
            Error::RunInput(format!(
                "run {}'s input is closed or was never open: start a run with open_stdin or \
                 pty to send it input",
                self.id
            ))
        }
    }

    /// Adds what its live processes used now to the CPU record; the total in milliseconds.
    pub fn cpu_ms(&self, now: &[(i32, u64, u64)]) -> u64 {
        let Ok(mut cpu) = self.cpu.lock() else {
            return 0;
        };
        for &(pid, start, ms) in now {
            cpu.insert((pid, start), ms);
        }
        cpu.values().sum()
    }
}
