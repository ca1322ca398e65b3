//! Child processes as sessions: how user code is started and how all of it is killed.
//!
//! Each run's interpreter calls `setsid()` before exec, so the run is one session whose id is the
//! leader's pid. Killing the process group catches ordinary children; scanning `/proc` for the
//! session id also catches those that moved to another process group (job control, `setpgid`).

use std::ffi::CString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use tokio::process::Command;

use crate::privs;

/// Makes the child a session leader with a lower CPU priority that the OOM killer picks first, so
/// the daemon stays responsive and survives whatever the user's code does; with
/// `SANDBOXD_RUN_AS` the child then drops to the sandbox user (see `privs`) and enters its working
/// directory again as that user. A child that cannot drop is not started.
pub fn isolate(cmd: &mut Command) {
    let user = privs::user().map_err(|e| e.to_string());
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
    // calls of `privs::drop_to` and chdir — all async-signal-safe system calls — takes no locks,
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
                Ok(Some(user)) => privs::drop_to(*user)?,
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

/// Kills every process of the given sessions with SIGKILL, blocking until none is left (or a few
/// rounds have passed, for processes forked while we were scanning).
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
    for _ in 0..20 {
        let members = sessions_members(&sids);
        if members.is_empty() {
            wait_reaped(&sids);
            return;
        }
        for pid in members {
            // SAFETY: kill only sends a signal to a pid we just saw in one of these sessions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!(?sids, "processes survived SIGKILL");
}

/// Waits (up to 200 ms) until the killed sessions' zombies are reaped by init, so that their
/// process slots are free again (a fork bomb's zombies would otherwise still fill the pids limit
/// when the caller's next command starts).
fn wait_reaped(sids: &[i32]) {
    // Inside the container Docker's init reaps within milliseconds; elsewhere (tests on a host
    // whose init reaps lazily) the time bound keeps a timeout from overshooting.
    let deadline = std::time::Instant::now() + Duration::from_millis(200);
    // Zombies whose parent is this daemon are ours to reap (the run's own wait does it).
    let own = std::process::id() as i32;
    while std::time::Instant::now() < deadline {
        if !all_processes().any(|p| sids.contains(&p.sid) && p.ppid != own) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
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
        .filter(|p| p.state != 'Z' && p.state != 'X')
        .map(|p| (p.pid, p.sid))
}

/// (pid, session id, state) of every process, zombies included, from one pass over `/proc`.
fn all_processes() -> impl Iterator<Item = Proc> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (state, ppid, sid) = parse_stat(&stat)?;
            Some(Proc {
                pid,
                ppid,
                sid,
                state,
            })
        })
}

/// One process as `/proc` shows it.
struct Proc {
    pid: i32,
    ppid: i32,
    sid: i32,
    state: char,
}

/// State, parent pid and session id from a `/proc/PID/stat` line. The command name is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_stat(stat: &str) -> Option<(char, i32, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let session = fields.nth(1)?.parse().ok()?;
    Some((state, ppid, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (we ird) (name) S 1 4242 4240 0 -1 4194560 0 0";
        assert_eq!(parse_stat(line), Some(('S', 1, 4240)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_own_process_is_found_in_its_session() {
        // SAFETY: getsid(0) only reads the calling process's session id.
        let sid = unsafe { libc::getsid(0) };
        assert!(session_members(sid).contains(&(std::process::id() as i32)));
    }
}
