//! The runs of this sandbox: listing, signalling and killing them, and how many are kept.

use std::sync::{Arc, Mutex};

use agent_runtime_proto::sets::ExitReason;
use agent_runtime_proto::v1::{KillAllResponse, ListRunsResponse, ProcessInfo, RunInfo};
use chrono::SecondsFormat;

use crate::error::{Error, Result};
use crate::process_tree::Tree;
use crate::processes;
use crate::runs::record::RunRecord;
use crate::runs::ring::Buffers;

/// Runs that are over kept for ListRuns and Attach; older ones are forgotten first.
pub const KEEP_OVER: usize = 64;

/// Every run this sandbox knows, oldest first.
pub struct Runs {
    records: Mutex<Vec<Arc<RunRecord>>>,
    buffers: Arc<Buffers>,
    tree: Arc<Tree>,
}

impl Runs {
    /// No runs yet; buffers drawn from `buffers`.
    pub fn new(tree: Arc<Tree>, buffers: Arc<Buffers>) -> Self {
        Self {
            records: Mutex::default(),
            buffers,
            tree,
        }
    }

    /// The budget run buffers draw from.
    pub fn buffers(&self) -> &Arc<Buffers> {
        &self.buffers
    }

    /// Adds a run that just started; forgets the oldest runs that are over (output closed, no
    /// process left) beyond [`KEEP_OVER`].
    pub fn add(&self, record: Arc<RunRecord>) {
        let Ok(mut records) = self.records.lock() else {
            return;
        };
        records.push(record);
        let gone = |r: &RunRecord| {
            r.ring.closed() && !self.tree.knows_run(r.session.sid, r.session.started)
        };
        let mut over = records.iter().filter(|r| gone(r)).count();
        if over > KEEP_OVER {
            records.retain(|r| {
                if over > KEEP_OVER && gone(r) {
                    over -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// The run `id`.
    pub fn get(&self, id: &str) -> Result<Arc<RunRecord>> {
        self.records
            .lock()
            .ok()
            .and_then(|records| records.iter().find(|r| r.id == id).cloned())
            .ok_or_else(|| Error::RunNotFound(id.to_string()))
    }

    fn all(&self) -> Vec<Arc<RunRecord>> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every run with its live processes, from one scan of `/proc`.
    pub fn list(&self) -> ListRunsResponse {
        let records = self.all();
        let keys: Vec<(i32, u64)> = records
            .iter()
            .map(|r| (r.session.sid, r.session.started))
            .collect();
        let mut procs = self.tree.processes_of(&keys);
        let runs = records
            .iter()
            .map(|r| {
                let mut seen: Vec<(i32, u64, u64)> = Vec::new();
                let mut processes: Vec<ProcessInfo> = procs
                    .remove(&r.session.sid)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| {
                        let (cpu_ms, command) = processes::usage(p.pid)?;
                        seen.push((p.pid, p.start, cpu_ms));
                        Some(ProcessInfo {
                            pid: p.pid,
                            ppid: p.ppid,
                            command,
                            cpu_ms,
                        })
                    })
                    .collect();
                processes.sort_by_key(|p| p.pid);
                let stats = r.ring.stats();
                let exit = r.exit();
                RunInfo {
                    run_id: r.id.clone(),
                    command: r.command.clone(),
                    language: r.language.as_str().to_string(),
                    state: r.state().as_str().to_string(),
                    exit_code: exit.as_ref().map_or(0, |x| x.code),
                    reason: exit.map(|x| x.reason).unwrap_or_default(),
                    detached: r.detached,
                    pty: r.terminal.is_some(),
                    stdin_open: r.stdin_open(),
                    started_at: r.started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    duration_ms: r.duration_ms(),
                    cpu_ms: r.cpu_ms(&seen),
                    processes,
                    stdout_bytes: stats.stdout_bytes,
                    stderr_bytes: stats.stderr_bytes,
                    buffered_bytes: stats.buffered_bytes,
                    dropped_bytes: stats.dropped_bytes,
                    next_seq: stats.next_seq,
                    active: !stats.closed,
                }
            })
            .collect();
        ListRunsResponse {
            runs,
            buffered_bytes: self.buffers.used(),
            buffer_limit_bytes: self.buffers.limit(),
        }
    }

    /// Kills every process of run `id`; how many.
    pub fn kill(&self, id: &str) -> Result<u32> {
        let record = self.get(id)?;
        Ok(record.session.kill(ExitReason::Killed) as u32)
    }

    /// Signals every process of run `id`; how many got it.
    pub fn signal(&self, id: &str, signal: i32) -> Result<u32> {
        let record = self.get(id)?;
        Ok(record.session.signal(signal) as u32)
    }

    /// Kills every run's processes and every orphan (not kernels, not the browser). This runs
    /// on the calling thread: it must work while user code fills the pids limit.
    pub fn kill_all(&self) -> KillAllResponse {
        let mut run_ids = Vec::new();
        for record in self.all() {
            if record.exit().is_none() {
                record.session.doom(ExitReason::Killed);
                run_ids.push(record.id.clone());
            }
        }
        let processes = self.tree.kill_everything() as u32;
        tracing::info!(processes, runs = run_ids.len(), "killed every user process");
        KillAllResponse { processes, run_ids }
    }
}
