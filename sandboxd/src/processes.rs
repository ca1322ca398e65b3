//! Child processes as sessions: how user code is started and how all of it is killed.
//!
//! Each run's interpreter calls `setsid()` before exec, so the run is one session whose id is the
//! leader's pid. Killing the process group catches ordinary children; scanning `/proc` for the
//! session id also catches those that moved to another process group (job control, `setpgid`).
//! Processes that left the session (`setsid`, a double fork) are found by `process_tree`, which
//! kills runs.

use std::ffi::CString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use tokio::process::Command;

use crate::privileges;

/// Makes the child a session leader with a lower CPU priority that the OOM killer picks first, so
/// the daemon stays responsive and survives whatever the user's code does; with
/// `SANDBOXD_RUN_AS` the child then drops to the sandbox user (see `privileges`) and enters its working
/// directory again as that user. A child that cannot drop is not started.
pub fn isolate(cmd: &mut Command) {
    let user = privileges::user().map_err(|e| e.to_string());
    // std enters the working directory before pre_exec, still as root: the child enters it again
    // after the drop, so a directory the user may not enter fails the spawn instead of becoming
    // the user's cwd.
    let cwd = cmd.as_std().get_current_dir().map(|dir| {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(dir)
        };
        CString::new(dir.into_os_string().into_vec())
    });
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It calls setsid, prctl, open, write, close, setpriority, the credential
    // calls of `privileges::drop_to` and chdir — all async-signal-safe system calls — takes no locks,
    // allocates nothing (the error cases build an io::Error from an errno or a static kind), and
    // uses only static C strings and the CString made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon is not dumpable and the fork inherited that, which makes
            // /proc/self/oom_score_adj root's; exec (or the drop) sets the flag properly again.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                // Failure is fine: the kernel may refuse, and the run still works.
                let _ = libc::write(fd, b"1000".as_ptr().cast(), 4);
                libc::close(fd);
            }
            let _ = libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            match &user {
                Ok(None) => return Ok(()),
                Ok(Some(user)) => privileges::drop_to(*user)?,
                Err(_) => return Err(std::io::ErrorKind::PermissionDenied.into()),
            }
            match &cwd {
                None => Ok(()),
                Some(Ok(dir)) if libc::chdir(dir.as_ptr()) == 0 => Ok(()),
                Some(Ok(_)) => Err(std::io::Error::last_os_error()),
                Some(Err(_)) => Err(std::io::ErrorKind::InvalidInput.into()),
            }
        });
    }
}

/// Kills every process of the given sessions, and every process below one of them (children that
/// called `setsid`) and in those processes' sessions, with SIGKILL, blocking until none is left (or
/// a few rounds have passed, for processes forked while we were scanning). Runs are killed by
/// `process_tree`, which also finds what double-forked away; this is for kernels.
pub fn kill_sessions_blocking(sids: &[i32]) {
    // Never our own session, nor init's.
    // SAFETY: getsid(0) only reads the calling process's session id.
    let own = unsafe { libc::getsid(0) };
    let sids: Vec<i32> = sids
        .iter()
        .copied()
        .filter(|&sid| sid > 1 && sid != own)
        .collect();
    if sids.is_empty() {
        return;
    }
    for &sid in &sids {
        // SAFETY: killpg only sends a signal; a session leader's pid is also its process group id.
        unsafe {
            libc::killpg(sid, libc::SIGKILL);
        }
    }
    let leaders = sids.clone();
    // Grows with the sessions of everything killed, so that what a killed process left in its
    // own session is found after its parent is gone.
    let mut sids: std::collections::HashSet<i32> = sids.into_iter().collect();
    let me = std::process::id() as i32;
    for _ in 0..20 {
        let procs: Vec<Proc> = all_processes().collect();
        let doomed = family(&procs, &sids, own);
        // Reaped at once, so that their process slots are free again (a fork bomb's zombies would
        // otherwise still fill the pids limit when the caller's next command starts). sandboxd is
        // a child subreaper (see `process_tree`), so every orphan here is its child; the leaders
        // themselves are children tokio waits for and are left to it.
        let zombies: Vec<i32> = doomed
            .iter()
            .filter(|p| p.is_zombie() && p.ppid == me && !leaders.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        reap(&zombies);
        let live: Vec<&Proc> = doomed.iter().filter(|p| !p.is_zombie()).collect();
        if live.is_empty() {
            return;
        }
        for p in live {
            sids.insert(p.sid);
            // SAFETY: kill only sends a signal, to a pid we just saw in (or below) one of these
            // sessions; it cannot be reused before it is reaped.
            unsafe {
                libc::kill(p.pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!(?leaders, "processes survived SIGKILL");
}

/// The processes in one of `sids`, and everything below them, never in session `own`.
fn family(procs: &[Proc], sids: &std::collections::HashSet<i32>, own: i32) -> Vec<Proc> {
    let mut children: std::collections::HashMap<i32, Vec<&Proc>> = Default::default();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<&Proc> = procs.iter().filter(|p| sids.contains(&p.sid)).collect();
    let mut found = Vec::new();
    while let Some(p) = stack.pop() {
        if p.sid == own || !seen.insert(p.pid) {
            continue;
        }
        found.push(*p);
        if let Some(kids) = children.get(&p.pid) {
            stack.extend(kids.iter().copied());
        }
    }
    found
}

/// Reaps these zombie children of sandboxd, without blocking (a pid that is not a zombie child is
/// left alone).
pub(crate) fn reap(pids: &[i32]) {
    for &pid in pids {
        if pid <= 1 {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid on one pid with WNOHANG only collects that child's exit status if it is
        // a zombie child of ours; it never blocks and touches only `status`.
        unsafe {
            libc::waitpid(pid, &mut status, libc::WNOHANG);
        }
    }
}

/// Kills session `sid`. This runs on the calling (async worker) thread on purpose: it is the path
/// that must work when user code has used up the sandbox's pids limit (a fork bomb), and starting
/// a blocking-pool thread fails then. It blocks for a few milliseconds, at worst about a second.
pub fn kill_session(sid: i32) {
    kill_sessions_blocking(&[sid]);
}

/// Live (not zombie) processes whose session id is `sid`.
pub fn session_members(sid: i32) -> Vec<i32> {
    sessions_members(&[sid])
}

/// Live (not zombie) processes whose session id is one of `sids`.
fn sessions_members(sids: &[i32]) -> Vec<i32> {
    live_processes()
        .filter(|(_, sid)| sids.contains(sid))
        .map(|(pid, _)| pid)
        .collect()
}

/// (pid, session id) of every live (not zombie) process, from one pass over `/proc`.
fn live_processes() -> impl Iterator<Item = (i32, i32)> {
    all_processes()
        .filter(|p| !p.is_zombie())
        .map(|p| (p.pid, p.sid))
}

/// Every process, zombies included, from one pass over `/proc`.
pub(crate) fn all_processes() -> impl Iterator<Item = Proc> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            parse_stat(pid, &stat)
        })
}

/// A process's CPU time (user + system, in milliseconds) and command line (arguments joined by
/// spaces), from `/proc`; `None` once it is gone.
pub(crate) fn usage(pid: i32) -> Option<(u64, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().take(13).collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let command = if words.is_empty() {
        // A kernel thread or a zombie: the name in parentheses.
        stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_string()
    } else {
        words.join(" ")
    };
    let command = command.chars().take(200).collect();
    Some((ticks * 1000 / hz, command))
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub sid: i32,
    pub state: char,
    /// Start time in clock ticks since boot: with the pid, it names one process for good.
    pub start: u64,
}

impl Proc {
    /// Exited and not yet reaped (or being reaped).
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// The process `pid` as `/proc` shows it now, if it exists.
pub(crate) fn process(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &stat)
}

/// A `/proc/PID/stat` line. The command name is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(pid: i32, stat: &str) -> Option<Proc> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. of proc(5): state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime.
    let fields: Vec<&str> = rest.split_whitespace().take(20).collect();
    Some(Proc {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        sid: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (we ird) (name) S 1 4242 4240 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 1000 10";
        assert_eq!(
            parse_stat(4242, line),
            Some(Proc {
                pid: 4242,
                ppid: 1,
                sid: 4240,
                state: 'S',
                start: 987654
            })
        );
        assert_eq!(parse_stat(1, "garbage"), None);
        assert_eq!(parse_stat(1, "1 (short) S 0 1 1"), None);
    }

    #[test]
    fn a_family_is_its_sessions_and_what_is_below_them() {
        let p = |pid, ppid, sid| Proc {
            pid,
            ppid,
            sid,
            state: 'S',
            start: 0,
        };
        let procs = [
            p(10, 1, 1),
            // A kernel in session 20, a setsid'd child of it, and that one's child.
            p(20, 10, 20),
            p(21, 20, 21),
            p(22, 21, 21),
            // Something else, and a process in sandboxd's own session below the kernel.
            p(30, 10, 30),
            p(23, 20, 1),
        ];
        let sids = std::collections::HashSet::from([20]);
        let mut pids: Vec<i32> = family(&procs, &sids, 1).iter().map(|p| p.pid).collect();
        pids.sort();
        assert_eq!(pids, [20, 21, 22]);
    }

    #[test]
    fn usage_reads_the_command_line() {
        let usage = usage(std::process::id() as i32);
        assert!(usage.is_some_and(|(_, cmd)| !cmd.is_empty()));
        assert_eq!(super::usage(-5), None);
    }

    #[test]
    fn the_own_process_is_found_in_its_session() {
        // SAFETY: getsid(0) only reads the calling process's session id.
        let sid = unsafe { libc::getsid(0) };
        assert!(session_members(sid).contains(&(std::process::id() as i32)));
    }
}
