//! Process trees: which process belongs to which run, so that a run's timeout kills all of its
//! processes — those that called `setsid`, double-forked or were orphaned included — and nothing
//! of another run, a kernel or the browser.
//!
//! # Design
//!
//! - **sandboxd is a child subreaper** (`PR_SET_CHILD_SUBREAPER`). An orphan anywhere below it is
//!   re-parented to sandboxd, not to the container's init, so every process sandboxd ever started,
//!   directly or not, stays in sandboxd's subtree until it is reaped: no session, process group or
//!   double fork takes a process out of it.
//! - **Who owns what.** Each direct child of sandboxd heads one subtree, owned by
//!   - a run, when the child is a run's leader (the interpreter Exec started);
//!   - "other" (a kernel, the browser driver, anything else sandboxd spawned): tokio holds a pidfd
//!     for each child it spawned, read from `/proc/self/fdinfo`;
//!   - for an adopted orphan, whoever it was recorded for (below), else nobody: *unattributed*.
//!
//!   While a run is in progress a tracker scans `/proc` every [`TRACK_EVERY`] and records, for
//!   every run (in progress or finished with processes left), its members (pid and start time, so
//!   a reused pid never counts) and the sessions they are in; it records the processes below
//!   kernels and the browser as "other". An orphan recorded before its parent died stays its
//!   run's; an orphan in one of a run's sessions (a `server &` whose run ended) is the run's.
//! - **A run's timeout** (or cancellation, or the daemon's shutdown) kills, in rounds until none
//!   is left: every process below the run's leader, every recorded member and what is below it,
//!   every process in one of its sessions, and every *unattributed* orphan subtree that started
//!   after the run did and was not already there when it started — a double fork faster than the
//!   tracker, a fork bomb's children orphaned while it was being killed. Their zombies are reaped
//!   in the same rounds, so the pids they held are free when the call returns and the next run can
//!   start even after a fork bomb (measured in the image with a 512-pid `os.fork()` + `setsid`
//!   bomb: the kill takes about 0.5 s, most of it the first `/proc` scan on a starved CPU).
//!
//!   The trade-off: an unattributed orphan cannot be told apart when two runs (or a run and a
//!   kernel's cell) are in progress at once, and the first of them to time out takes it. Recorded
//!   processes of other runs, kernels and the browser are never touched, and neither is anything
//!   that was there before the run started. A child sandboxd is spawning at that very moment
//!   (between its fork and tokio's pidfd, about a millisecond) looks like an orphan too. Without
//!   pidfds (Linux < 5.3) sandboxd cannot tell its own children from adopted orphans, so the
//!   unattributed rule is off and only recorded processes and sessions are killed.
//! - **Reaping.** Orphans that exit become sandboxd's zombies. A reaper reaps them shortly after
//!   SIGCHLD (and every [`REAP_EVERY`]) but never a child tokio waits for — one with a pidfd, or a
//!   run's leader — and only a zombie already seen in an earlier pass, so a child between its fork
//!   and its pidfd (or std's own wait after a failed exec) keeps its exit status. It scans `/proc`
//!   only when some child is a zombie (`waitid` with `WNOWAIT` tells without reaping).
//!
//! The kill runs on the calling thread, not the blocking pool: it must work when a fork bomb has
//! used up the pids limit and no thread can be started.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::processes::{self, Proc};

/// How often runs' processes are recorded while a run is in progress (at most: a scan that takes
/// long waits ten times its own length before the next, so tracking costs at most a tenth of a core).
pub const TRACK_EVERY: Duration = Duration::from_millis(20);
/// How often adopted zombies are looked for besides SIGCHLD.
pub const REAP_EVERY: Duration = Duration::from_secs(1);
/// How long after a SIGCHLD zombies are looked for.
const AFTER_SIGCHLD: Duration = Duration::from_millis(5);
/// How soon a zombie seen once is looked at again.
const RECHECK: Duration = Duration::from_millis(20);
/// Rounds of scan-and-kill before a kill gives up (each round is a few milliseconds).
const KILL_ROUNDS: usize = 300;

/// Who owns a process below sandboxd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The run whose leader has this pid.
    Run(i32),
    /// A kernel, the browser, or another child sandboxd spawned.
    Other,
    /// An adopted orphan nobody recorded: its subtree's head (pid, start tick).
    Unattributed(i32, u64),
}

/// What is known of one run.
#[derive(Debug)]
struct Run {
    /// The leader's start tick: an unattributed orphan started at or after it may be the run's.
    started: u64,
    /// In progress: the leader has not been reaped.
    live: bool,
    /// Whether tokio's pidfds were seen to work for this run's leader.
    pidfds: bool,
    /// Unattributed orphans (pid, start tick) that existed when the run started: never its own.
    before: HashSet<(i32, u64)>,
    /// Processes seen in the run: pid → start tick.
    members: HashMap<i32, u64>,
    /// Sessions the run's processes are in (the leader's first).
    sids: HashSet<i32>,
}

#[derive(Debug, Default)]
struct State {
    runs: HashMap<i32, Run>,
    /// Processes seen below kernels, the browser and other spawned children: pid → start tick.
    others: HashMap<i32, u64>,
    /// Adopted zombies seen by the last reaper pass.
    zombies: HashSet<i32>,
}

/// The process tree below sandboxd: records runs' processes, kills a run's, reaps orphans.
pub struct Tree {
    own: i32,
    own_sid: i32,
    state: Mutex<State>,
    /// Wakes the watcher when a run starts.
    wake: Notify,
}

impl Tree {
    /// Makes sandboxd a child subreaper and starts the tracker and reaper, which stop with `stop`.
    /// Outside a tokio runtime (unit tests) nothing is started.
    pub fn start(stop: CancellationToken) -> Arc<Self> {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot become a child subreaper; orphans of runs go to init and escape timeouts"
            );
        }
        let tree = Arc::new(Self {
            own: std::process::id() as i32,
            // SAFETY: getsid(0) only reads the calling process's session id.
            own_sid: unsafe { libc::getsid(0) },
            state: Mutex::default(),
            wake: Notify::new(),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(tree.clone().watch(stop));
        }
        tree
    }

    /// Records a run whose leader (a child tokio waits for, in its own session) has `leader` as pid;
    /// returns the leader's start tick, which with the pid names the run for good (see
    /// [`Tree::kill_run`]).
    pub fn run_started(&self, leader: i32) -> u64 {
        let me = processes::process(leader);
        let started = me.map_or_else(now_ticks, |p| p.start);
        let mut members = HashMap::new();
        if let Some(p) = me {
            members.insert(p.pid, p.start);
        }
        let procs: Vec<Proc> = processes::all_processes().collect();
        let spawned = pidfd_children();
        if let Ok(mut state) = self.state.lock() {
            let owners = owners(self.own, self.own_sid, &procs, &state, &spawned);
            let before = procs
                .iter()
                .filter(|p| p.ppid == self.own && p.pid != leader)
                .filter(|p| matches!(owners.get(&p.pid), Some(Owner::Unattributed(..))))
                .map(|p| (p.pid, p.start))
                .collect();
            record(&mut state, self.own_sid, &procs, &owners);
            let run = Run {
                started,
                live: true,
                pidfds: spawned.contains(&leader),
                before,
                members,
                sids: HashSet::from([leader]),
            };
            state.runs.insert(leader, run);
        }
        self.wake.notify_one();
        started
    }

    /// Marks a run's leader as exited (and reaped); what it left running stays recorded.
    pub fn run_ended(&self, leader: i32) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(run) = state.runs.get_mut(&leader) {
                run.live = false;
                run.members.remove(&leader);
            }
        }
    }

    /// Kills every process of these runs (see the module doc) with SIGKILL and reaps their
    /// zombies, blocking until none is left or [`KILL_ROUNDS`] passed. With `everything_unowned`
    /// every unattributed orphan dies too, whenever it started (daemon shutdown).
    /// Returns how many processes it killed.
    pub fn kill_runs(&self, leaders: &[i32], everything_unowned: bool) -> usize {
        let leaders: Vec<i32> = leaders.iter().copied().filter(|&p| p > 1).collect();
        if leaders.is_empty() && !everything_unowned {
            return 0;
        }
        let mut killed: HashSet<(i32, u64)> = HashSet::new();
        for round in 0..KILL_ROUNDS {
            let procs: Vec<Proc> = processes::all_processes().collect();
            let spawned = pidfd_children();
            let (live, zombies) = {
                let Ok(mut state) = self.state.lock() else {
                    return killed.len();
                };
                let owners = owners(self.own, self.own_sid, &procs, &state, &spawned);
                record(&mut state, self.own_sid, &procs, &owners);
                doomed(&state, &leaders, everything_unowned, &procs, &owners)
            };
            // Zombies first: the pids go back to the pool while we still kill.
            processes::reap(
                &zombies
                    .iter()
                    .filter(|p| p.ppid == self.own && !leaders.contains(&p.pid))
                    .map(|p| p.pid)
                    .collect::<Vec<_>>(),
            );
            if round == 0 {
                for &leader in &leaders {
                    if leader != self.own_sid {
                        // SAFETY: killpg only sends a signal; the leader's pid is its session's
                        // and process group's id, and the group exists as long as the run's
                        // session does. The whole group at once stops its forks sooner.
                        unsafe {
                            libc::killpg(leader, libc::SIGKILL);
                        }
                    }
                }
            }
            if live.is_empty() {
                return killed.len();
            }
            for p in &live {
                killed.insert((p.pid, p.start));
                // SAFETY: kill only sends a signal, to a pid we just saw below this daemon and
                // attributed to a run being killed (a pid cannot be reused before it is reaped,
                // and only this daemon reaps these).
                unsafe {
                    libc::kill(p.pid, libc::SIGKILL);
                }
            }
            if round > 2 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        tracing::warn!(?leaders, "processes survived SIGKILL");
        killed.len()
    }

    /// The leaders of every run known: in progress, or finished with processes left.
    pub fn runs(&self) -> Vec<i32> {
        self.state
            .lock()
            .map(|s| s.runs.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Kills one run's processes (see [`Tree::kill_runs`]) if the run whose leader was `leader`,
    /// started at tick `started`, still has any: a run whose processes are all gone is forgotten,
    /// and its pid may name another process by now. Returns how many processes it killed.
    pub fn kill_run(&self, leader: i32, started: u64) -> usize {
        if !self.refresh_run(leader, started) {
            return 0;
        }
        self.kill_runs(&[leader], false)
    }

    /// Records who owns what now; true when the run `leader`/`started` still has processes (or
    /// its leader has not been reaped).
    fn refresh_run(&self, leader: i32, started: u64) -> bool {
        self.scan();
        self.state
            .lock()
            .is_ok_and(|s| s.runs.get(&leader).is_some_and(|r| r.started == started))
    }

    /// Whether the run `leader`/`started` is still recorded (as of the last scan).
    pub fn knows_run(&self, leader: i32, started: u64) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| s.runs.get(&leader).is_some_and(|r| r.started == started))
    }

    /// The live processes of each of these runs (leader, start tick), from one scan: the same
    /// processes a kill would take, except orphans nobody recorded.
    pub(crate) fn processes_of(&self, runs: &[(i32, u64)]) -> HashMap<i32, Vec<Proc>> {
        let procs: Vec<Proc> = processes::all_processes().collect();
        let spawned = pidfd_children();
        let mut found = HashMap::new();
        let Ok(mut state) = self.state.lock() else {
            return found;
        };
        let owners = owners(self.own, self.own_sid, &procs, &state, &spawned);
        record(&mut state, self.own_sid, &procs, &owners);
        for &(leader, started) in runs {
            let Some(run) = state.runs.get(&leader).filter(|r| r.started == started) else {
                continue;
            };
            let mine: Vec<Proc> = procs
                .iter()
                .filter(|p| !p.is_zombie() && p.pid != self.own)
                .filter(|p| {
                    (p.sid != self.own_sid && (p.sid == leader || run.sids.contains(&p.sid)))
                        || owners.get(&p.pid) == Some(&Owner::Run(leader))
                })
                .copied()
                .collect();
            found.insert(leader, mine);
        }
        found
    }

    /// Sends `signal` to every live process of the run `leader`/`started` (as
    /// [`Tree::processes_of`] finds them); returns how many it signalled.
    pub fn signal_run(&self, leader: i32, started: u64, signal: i32) -> usize {
        let procs = self.processes_of(&[(leader, started)]);
        let mut sent = 0;
        for p in procs.get(&leader).into_iter().flatten() {
            // SAFETY: kill only sends a signal, to a pid just seen alive below this daemon and
            // attributed to the run (a pid is not reused before this daemon reaps it).
            if unsafe { libc::kill(p.pid, signal) } == 0 {
                sent += 1;
            }
        }
        sent
    }

    /// Kills every run's processes and every orphan nobody owns (KillAll and shutdown); kernels,
    /// the browser and what runs below them stay. Returns how many processes it killed.
    pub fn kill_everything(&self) -> usize {
        // Runs with nothing left are forgotten first: their leaders' pids may be reused.
        self.scan();
        let leaders = self.runs();
        self.kill_runs(&leaders, true)
    }

    fn tracking(&self) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| s.runs.values().any(|r| r.live))
    }

    /// Records who owns what.
    fn scan(&self) {
        let procs: Vec<Proc> = processes::all_processes().collect();
        let spawned = pidfd_children();
        if let Ok(mut state) = self.state.lock() {
            let owners = owners(self.own, self.own_sid, &procs, &state, &spawned);
            record(&mut state, self.own_sid, &procs, &owners);
        }
    }

    /// Reaps adopted zombies seen in the previous pass; true when some wait for the next one.
    fn reap(&self) -> bool {
        if !has_zombie_child() {
            // No child of ours is a zombie (one system call, not a scan of /proc).
            if let Ok(mut state) = self.state.lock() {
                state.zombies.clear();
            }
            return false;
        }
        let zombies: Vec<i32> = processes::all_processes()
            .filter(|p| p.ppid == self.own && p.is_zombie())
            .map(|p| p.pid)
            .collect();
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if zombies.is_empty() {
            state.zombies.clear();
            return false;
        }
        let mut protected = pidfd_children();
        protected.extend(
            state
                .runs
                .iter()
                .filter(|(_, r)| r.live)
                .map(|(&leader, _)| leader),
        );
        let (ripe, fresh): (Vec<i32>, Vec<i32>) = zombies
            .into_iter()
            .filter(|pid| !protected.contains(pid))
            .partition(|pid| state.zombies.contains(pid));
        processes::reap(&ripe);
        state.zombies = fresh.iter().copied().collect();
        !fresh.is_empty()
    }

    /// The tracker and the reaper.
    async fn watch(self: Arc<Self>, stop: CancellationToken) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGCHLD; orphans are reaped every second");
                None
            }
        };
        let mut next_scan = tokio::time::Instant::now();
        let mut reap = tokio::time::interval(REAP_EVERY);
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck: Option<tokio::time::Instant> = None;
        loop {
            let tracking = self.tracking();
            tokio::select! {
                () = stop.cancelled() => break,
                Some(()) = async {
                    match sigchld.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    // Most SIGCHLDs are a run's leader exiting, which tokio reaps: looked at a
                    // moment later, when its exit event is out and there is most often nothing
                    // left to scan /proc for.
                    let soon = tokio::time::Instant::now() + AFTER_SIGCHLD;
                    recheck = Some(recheck.map_or(soon, |at| at.min(soon)));
                }
                _ = reap.tick() => {
                    recheck = self.reap().then(|| tokio::time::Instant::now() + RECHECK);
                }
                () = sleep_until_opt(recheck) => {
                    recheck = self.reap().then(|| tokio::time::Instant::now() + RECHECK);
                }
                () = tokio::time::sleep_until(next_scan), if tracking => {
                    let started = tokio::time::Instant::now();
                    self.scan();
                    next_scan = tokio::time::Instant::now() + TRACK_EVERY.max(started.elapsed() * 10);
                }
                () = self.wake.notified() => {
                    if !tracking {
                        // `run_started` has just recorded everything: the first scan of the run
                        // is due one period later, not beside the program starting up.
                        next_scan = tokio::time::Instant::now() + TRACK_EVERY;
                    }
                }
            }
        }
    }
}

/// The owner of every process below `own`.
fn owners(
    own: i32,
    own_sid: i32,
    procs: &[Proc],
    state: &State,
    spawned: &HashSet<i32>,
) -> HashMap<i32, Owner> {
    let mut children: HashMap<i32, Vec<&Proc>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut owners = HashMap::new();
    let Some(tops) = children.get(&own) else {
        return owners;
    };
    for top in tops {
        let owner = head_owner(top, own_sid, state, spawned);
        let mut stack = vec![top.pid];
        while let Some(pid) = stack.pop() {
            // A pid is in the map once: /proc cannot show a cycle, but a torn read could.
            if owners.insert(pid, owner).is_some() {
                continue;
            }
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids.iter().map(|k| k.pid));
            }
        }
    }
    owners
}

/// The owner of a direct child of sandboxd (and so of its subtree).
fn head_owner(top: &Proc, own_sid: i32, state: &State, spawned: &HashSet<i32>) -> Owner {
    if state.runs.get(&top.pid).is_some_and(|r| r.live) {
        return Owner::Run(top.pid);
    }
    let recorded = state
        .runs
        .iter()
        .find(|(_, r)| r.members.get(&top.pid) == Some(&top.start));
    if let Some((&leader, _)) = recorded {
        return Owner::Run(leader);
    }
    if top.sid != own_sid {
        if let Some((&leader, _)) = state.runs.iter().find(|(_, r)| r.sids.contains(&top.sid)) {
            return Owner::Run(leader);
        }
    }
    if spawned.contains(&top.pid) || state.others.get(&top.pid) == Some(&top.start) {
        return Owner::Other;
    }
    Owner::Unattributed(top.pid, top.start)
}

/// Writes what a scan found into the records and forgets processes that are gone.
fn record(state: &mut State, own_sid: i32, procs: &[Proc], owners: &HashMap<i32, Owner>) {
    let alive: HashMap<i32, &Proc> = procs
        .iter()
        .filter(|p| !p.is_zombie())
        .map(|p| (p.pid, p))
        .collect();
    let sessions: HashSet<i32> = alive.values().map(|p| p.sid).collect();
    for (pid, owner) in owners {
        let Some(p) = alive.get(pid) else { continue };
        match owner {
            Owner::Run(leader) => {
                if let Some(run) = state.runs.get_mut(leader) {
                    run.members.insert(p.pid, p.start);
                    if p.sid != own_sid {
                        run.sids.insert(p.sid);
                    }
                }
            }
            Owner::Other => {
                state.others.insert(p.pid, p.start);
            }
            Owner::Unattributed(..) => {}
        }
    }
    let same = |pid: &i32, start: &u64| alive.get(pid).is_some_and(|p| p.start == *start);
    state.others.retain(|pid, start| same(pid, start));
    state.runs.retain(|_, run| {
        run.members.retain(|pid, start| same(pid, start));
        // A session with no process left is gone, and its id may name a new one.
        run.sids.retain(|sid| sessions.contains(sid));
        run.live || !run.members.is_empty()
    });
}

/// The live processes to kill and the zombies to reap for these runs.
fn doomed(
    state: &State,
    leaders: &[i32],
    everything_unowned: bool,
    procs: &[Proc],
    owners: &HashMap<i32, Owner>,
) -> (Vec<Proc>, Vec<Proc>) {
    let runs: Vec<(i32, Option<&Run>)> = leaders.iter().map(|&l| (l, state.runs.get(&l))).collect();
    let takes = |p: &Proc| -> bool {
        let owner = owners.get(&p.pid);
        if everything_unowned && matches!(owner, Some(Owner::Unattributed(..))) {
            return true;
        }
        runs.iter().any(|&(leader, run)| {
            if p.sid == leader || run.is_some_and(|r| r.sids.contains(&p.sid)) {
                return true;
            }
            match owner {
                Some(Owner::Run(owner)) => *owner == leader,
                Some(&Owner::Unattributed(head, started)) => run.is_some_and(|r| {
                    r.pidfds && started >= r.started && !r.before.contains(&(head, started))
                }),
                Some(Owner::Other) | None => false,
            }
        })
    };
    procs
        .iter()
        .filter(|p| takes(p))
        .partition::<Vec<Proc>, _>(|p| !p.is_zombie())
}

/// Pids of the children tokio waits for through a pidfd (from `/proc/self/fdinfo`).
fn pidfd_children() -> HashSet<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let link = std::fs::read_link(entry.path()).ok()?;
        if link.as_os_str() != "anon_inode:[pidfd]" {
            return None;
        }
        let fd = entry.file_name();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.to_str()?)).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid:"))?
            .trim()
            .parse()
            .ok()
            .filter(|&pid: &i32| pid > 0)
    })
    .collect()
}

/// Whether any child of this process (an adopted orphan included) is a zombie, without reaping
/// it; true when that cannot be told.
fn has_zombie_child() -> bool {
    // SAFETY: waitid with WNOWAIT only reads the state of our children into `info`, which is
    // zeroed first; a zero si_pid afterwards means no child has exited.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let found = libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        match found {
            0 => info.si_pid() != 0,
            // ECHILD: no children at all.
            _ => std::io::Error::last_os_error().raw_os_error() != Some(libc::ECHILD),
        }
    }
}

/// Now, in the clock ticks `/proc/PID/stat` counts start times in.
fn now_ticks() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |up| (up * hz) as u64)
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, sid: i32, start: u64) -> Proc {
        Proc {
            pid,
            ppid,
            sid,
            state: 'S',
            start,
        }
    }

    fn run(started: u64, members: &[(i32, u64)], sids: &[i32]) -> Run {
        Run {
            started,
            live: true,
            pidfds: true,
            before: HashSet::new(),
            members: members.iter().copied().collect(),
            sids: sids.iter().copied().collect(),
        }
    }

    /// sandboxd is 10 in session 1; run 20 started at tick 100; kernel 30 (a pidfd child).
    fn scene() -> (Vec<Proc>, State, HashSet<i32>) {
        let procs = vec![
            p(10, 1, 1, 1),
            // The run, a child of its leader, and a setsid'd grandchild.
            p(20, 10, 20, 100),
            p(21, 20, 20, 101),
            p(22, 21, 22, 102),
            // The kernel and a child of it.
            p(30, 10, 30, 50),
            p(31, 30, 30, 120),
            // An orphan recorded as the run's, with a child.
            p(40, 10, 40, 105),
            p(41, 40, 40, 106),
            // An orphan in the run's session (its parent died).
            p(50, 10, 20, 107),
            // An orphan recorded as the kernel's.
            p(60, 10, 60, 130),
            // Unattributed orphans: one older than the run, one newer.
            p(70, 10, 70, 90),
            p(80, 10, 80, 140),
            p(81, 80, 80, 141),
        ];
        let mut state = State::default();
        state
            .runs
            .insert(20, run(100, &[(20, 100), (40, 105)], &[20]));
        state.others.insert(60, 130);
        (procs, state, HashSet::from([30, 20]))
    }

    #[test]
    fn owners_follow_trees_records_and_sessions() {
        let (procs, state, spawned) = scene();
        let owners = owners(10, 1, &procs, &state, &spawned);
        let of = |pid| owners.get(&pid).copied();
        for pid in [20, 21, 22, 40, 41, 50] {
            assert_eq!(of(pid), Some(Owner::Run(20)), "pid {pid}");
        }
        for pid in [30, 31, 60] {
            assert_eq!(of(pid), Some(Owner::Other), "pid {pid}");
        }
        assert_eq!(of(70), Some(Owner::Unattributed(70, 90)));
        assert_eq!(
            (of(80), of(81)),
            (
                Some(Owner::Unattributed(80, 140)),
                Some(Owner::Unattributed(80, 140))
            )
        );
        assert_eq!(of(10), None, "sandboxd itself is nobody's");
    }

    #[test]
    fn a_run_kill_takes_its_tree_and_newer_unattributed_orphans_only() {
        let (procs, state, spawned) = scene();
        let owners = owners(10, 1, &procs, &state, &spawned);
        let (live, zombies) = doomed(&state, &[20], false, &procs, &owners);
        let mut pids: Vec<i32> = live.iter().map(|p| p.pid).collect();
        pids.sort();
        assert_eq!(pids, [20, 21, 22, 40, 41, 50, 80, 81]);
        assert!(zombies.is_empty());

        // An orphan that was there when the run started is not the run's.
        let mut earlier = State::default();
        earlier
            .runs
            .insert(20, run(100, &[(20, 100), (40, 105)], &[20]));
        if let Some(r) = earlier.runs.get_mut(&20) {
            r.before.insert((80, 140));
        }
        let (live, _) = doomed(&earlier, &[20], false, &procs, &owners);
        assert!(live.iter().all(|p| p.pid != 80 && p.pid != 81));

        // Without pidfds, nothing unattributed is touched.
        let mut blind = state;
        if let Some(r) = blind.runs.get_mut(&20) {
            r.pidfds = false;
        }
        let (live, _) = doomed(&blind, &[20], false, &procs, &owners);
        assert!(live.iter().all(|p| p.pid != 80 && p.pid != 81));

        // Shutdown takes every unattributed orphan, and still no kernel.
        let (live, _) = doomed(&blind, &[20], true, &procs, &owners);
        let mut pids: Vec<i32> = live.iter().map(|p| p.pid).collect();
        pids.sort();
        assert_eq!(pids, [20, 21, 22, 40, 41, 50, 70, 80, 81]);
    }

    #[test]
    fn records_keep_orphans_and_forget_the_dead() {
        let (procs, mut state, spawned) = scene();
        let found = owners(10, 1, &procs, &state, &spawned);
        record(&mut state, 1, &procs, &found);
        let run = &state.runs[&20];
        let mut members: Vec<i32> = run.members.keys().copied().collect();
        members.sort();
        assert_eq!(members, [20, 21, 22, 40, 41, 50]);
        assert!(run.sids.contains(&22) && run.sids.contains(&40));
        assert!(state.others.contains_key(&31));

        // 22 exits and its pid comes back as another process: it is not the run's any more.
        let mut later: Vec<Proc> = procs.into_iter().filter(|p| p.pid != 22).collect();
        later.push(p(22, 30, 30, 200));
        let found = owners(10, 1, &later, &state, &spawned);
        record(&mut state, 1, &later, &found);
        assert!(!state.runs[&20].members.contains_key(&22));
        assert_eq!(found.get(&22), Some(&Owner::Other));

        // A finished run with nothing left is forgotten.
        if let Some(r) = state.runs.get_mut(&20) {
            r.live = false;
        }
        let rest = vec![p(10, 1, 1, 1), p(30, 10, 30, 50)];
        let found = owners(10, 1, &rest, &state, &spawned);
        record(&mut state, 1, &rest, &found);
        assert!(state.runs.is_empty());
    }

    #[test]
    fn pidfds_of_our_children_are_found() {
        let Ok(mut child) = std::process::Command::new("sleep").arg("5").spawn() else {
            return;
        };
        let pid = child.id() as i32;
        // SAFETY: pidfd_open on a child we have not reaped; the fd is closed below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        let found = pidfd_children().contains(&pid);
        let _ = child.kill();
        let _ = child.wait();
        if fd >= 0 {
            // SAFETY: closes the fd pidfd_open gave us.
            unsafe {
                libc::close(fd);
            }
            assert!(found);
        }
    }
}
