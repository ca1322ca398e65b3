//! Privilege separation between sandboxd and the code it runs (SECURITY.md, issue 10).
//!
//! In a sandbox container sandboxd starts as root (uid 0 inside the container, no user namespace)
//! with only SETUID, SETGID, KILL and DAC_OVERRIDE, and `SANDBOXD_RUN_AS=uid:gid` names the user
//! all user code runs as. Then:
//! - the daemon is not dumpable and has another uid than user code, so user code can neither
//!   signal, stop, ptrace nor read the memory or environment of it;
//! - every child drops to that user before exec ([`drop_to`], from `processes::isolate`), and the
//!   Playwright driver (and so Chromium) is started through a `node` symlink to sandboxd that
//!   drops before it execs the real Node ([`is_driver_shim`], [`exec_driver_node`]);
//! - every file access made for a caller runs with the thread's fsuid/fsgid set to that user
//!   ([`as_user`]), so the daemon's root and DAC_OVERRIDE never reach a file the user could not,
//!   and files it creates for the user belong to the user.
//!
//! Without `SANDBOXD_RUN_AS` (sandboxd run directly, as in its own tests) nothing changes uid;
//! only the daemon's dumpable flag is cleared.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The variable naming the user that user code runs as, `uid:gid`.
pub const RUN_AS_ENV: &str = "SANDBOXD_RUN_AS";
/// The variable naming the real Node binary behind the driver shim.
pub const DRIVER_NODE_ENV: &str = "SANDBOXD_DRIVER_NODE";
/// The real Node binary behind the driver shim when [`DRIVER_NODE_ENV`] is unset.
pub const DEFAULT_DRIVER_NODE: &str = "/opt/playwright-driver/node";
/// The name sandboxd answers to as the driver shim (a symlink `…/node` → sandboxd).
const SHIM_NAME: &str = "node";

/// What can go wrong with privileges.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegesError {
    /// `SANDBOXD_RUN_AS` does not read as `uid:gid`.
    #[error(
        "SANDBOXD_RUN_AS={value:?} is not valid: {reason}; give the sandbox user as UID:GID \
         (numbers, not 0), e.g. 1000:1000, or leave it unset"
    )]
    Malformed {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `SANDBOXD_RUN_AS` is set but sandboxd cannot switch to it.
    #[error(
        "SANDBOXD_RUN_AS={uid}:{gid} needs sandboxd to start as root (uid 0, with CAP_SETUID and \
         CAP_SETGID), but it runs as uid {euid}"
    )]
    NotRoot {
        /// The user asked for.
        uid: u32,
        /// Its group.
        gid: u32,
        /// Who sandboxd is.
        euid: u32,
    },
    /// A system call that changes credentials failed.
    #[error("cannot {op}: {source}")]
    Syscall {
        /// What was being done.
        op: &'static str,
        /// Why it failed.
        source: io::Error,
    },
    /// An earlier failure, remembered (the configuration is read once).
    #[error("{0}")]
    Config(String),
}

impl From<PrivilegesError> for crate::error::Error {
    fn from(err: PrivilegesError) -> Self {
        crate::error::Error::Internal(format!("privilege separation: {err}"))
    }
}

/// The user that user code runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid (the only group it gets).
    pub gid: u32,
}

impl RunAs {
    /// Parses `uid:gid`; both must be numbers other than 0 (root) and 4294967295 (-1).
    pub fn parse(value: &str) -> Result<Self, PrivilegesError> {
        let malformed = |reason| PrivilegesError::Malformed {
            value: value.to_owned(),
            reason,
        };
        let (uid, gid) = value
            .trim()
            .split_once(':')
            .ok_or_else(|| malformed("there is no ':' between uid and gid"))?;
        let id = |s: &str| -> Result<u32, PrivilegesError> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed("uid and gid must be decimal numbers"));
            }
            match s.parse::<u32>() {
                Ok(0) => Err(malformed("user code must not run as root (0)")),
                Ok(u32::MAX) | Err(_) => Err(malformed("the id is out of range")),
                Ok(n) => Ok(n),
            }
        };
        Ok(Self {
            uid: id(uid)?,
            gid: id(gid)?,
        })
    }
}

/// The user to switch to: `None` when no switch is needed (no `SANDBOXD_RUN_AS`, or sandboxd
/// already runs as that user). Read once.
static USER: OnceLock<Result<Option<RunAs>, String>> = OnceLock::new();

/// The user file access and children switch to, `None` when they keep the daemon's ids.
pub fn user() -> Result<Option<RunAs>, PrivilegesError> {
    USER.get_or_init(|| decide(std::env::var_os(RUN_AS_ENV)).map_err(|e| e.to_string()))
        .clone()
        .map_err(PrivilegesError::Config)
}

/// What `SANDBOXD_RUN_AS` means for a daemon with our effective uid.
fn decide(value: Option<OsString>) -> Result<Option<RunAs>, PrivilegesError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    if text.trim().is_empty() {
        return Ok(None);
    }
    let user = RunAs::parse(&text)?;
    // SAFETY: geteuid only reads the calling thread's credentials.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Ok(Some(user))
    } else if euid == user.uid {
        // Started as the user already (the image run without the host's override).
        Ok(None)
    } else {
        Err(PrivilegesError::NotRoot {
            uid: user.uid,
            gid: user.gid,
            euid,
        })
    }
}

/// Called first thing in the daemon, before any thread starts: makes the daemon undumpable
/// (always), and with `SANDBOXD_RUN_AS` drops the daemon's supplementary groups (so file access
/// as the user is checked against the user's groups only) and checks that it can switch.
pub fn harden_daemon() -> Result<Option<RunAs>, PrivilegesError> {
    // SAFETY: prctl with PR_SET_DUMPABLE only changes a flag of this process.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(PrivilegesError::Syscall {
            op: "make sandboxd undumpable (prctl PR_SET_DUMPABLE)",
            source: io::Error::last_os_error(),
        });
    }
    let user = user()?;
    if user.is_some() {
        // SAFETY: setgroups with an empty list only changes this process's credentials.
        if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
            return Err(PrivilegesError::Syscall {
                op: "drop sandboxd's supplementary groups (setgroups)",
                source: io::Error::last_os_error(),
            });
        }
        // Fails now, with the reason, rather than on the first call.
        as_user(|| ())?;
    }
    Ok(user)
}

/// Drops the calling process to `user` for good: no supplementary groups, real, effective and
/// saved gid and uid, no new privileges. Only async-signal-safe system calls, no allocation: it
/// runs in a forked child before exec. Fails unless every step took effect.
pub fn drop_to(user: RunAs) -> io::Result<()> {
    // SAFETY: plain system calls on this process's credentials; no memory is touched.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setresgid(user.gid, user.gid, user.gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setresuid(user.uid, user.uid, user.uid) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The uid change cleared the permitted and effective sets; clear the inheritable (and so
        // the ambient) set as well, whatever the container runtime put there.
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut r, mut e, mut s) = (0, 0, 0);
        if libc::getresuid(&mut r, &mut e, &mut s) != 0
            || [r, e, s] != [user.uid; 3]
            || libc::getresgid(&mut r, &mut e, &mut s) != 0
            || [r, e, s] != [user.gid; 3]
            || libc::getgroups(0, std::ptr::null_mut()) != 0
        {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
    }
    Ok(())
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets, two `CapData` words.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Runs `work` on this thread with the filesystem ids of the sandbox user, so every path it opens,
/// creates or removes is checked (and owned) as if user code did it. `work` must be synchronous:
/// the ids belong to the thread, so an `.await` inside would hand them to other tasks. Without a
/// user to switch to it just runs `work`; when the switch fails `work` does not run at all.
pub fn as_user<T>(work: impl FnOnce() -> T) -> Result<T, PrivilegesError> {
    match user()? {
        None => Ok(work()),
        Some(user) => {
            let _ids = FsIds::switch(user)?;
            Ok(work())
        }
    }
}

/// The thread's fsuid/fsgid while switched; restores the previous ones when dropped (so nested
/// switches are harmless).
struct FsIds {
    uid: u32,
    gid: u32,
}

impl FsIds {
    fn switch(user: RunAs) -> Result<Self, PrivilegesError> {
        // setfsuid/setfsgid return the previous id whether or not they succeeded; asking with an
        // invalid id (-1) changes nothing and returns the current one, which tells success.
        // SAFETY: per-thread credential system calls; no memory is touched.
        let (uid, gid) = unsafe {
            let gid = libc::setfsgid(user.gid) as u32;
            let uid = libc::setfsuid(user.uid) as u32;
            (uid, gid)
        };
        let previous = Self { uid, gid };
        if current_fsids() != (user.uid, user.gid) {
            // Dropping `previous` puts back what there was.
            drop(previous);
            return Err(PrivilegesError::Syscall {
                op: "switch file access to the sandbox user (setfsuid/setfsgid; sandboxd needs \
                     CAP_SETUID and CAP_SETGID)",
                source: io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        Ok(previous)
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        // SAFETY: per-thread credential system calls; no memory is touched.
        unsafe {
            libc::setfsuid(self.uid);
            libc::setfsgid(self.gid);
        }
        if current_fsids() != (self.uid, self.gid) {
            // The thread keeps the user's ids: less privilege, never more. Its later daemon-side
            // file work may fail, which the log explains.
            tracing::error!(
                uid = self.uid,
                gid = self.gid,
                "cannot restore the daemon's file ids on this thread"
            );
        }
    }
}

/// This thread's (fsuid, fsgid).
fn current_fsids() -> (u32, u32) {
    // SAFETY: an invalid id (-1) makes these calls change nothing and return the current id.
    unsafe {
        (
            libc::setfsuid(u32::MAX) as u32,
            libc::setfsgid(u32::MAX) as u32,
        )
    }
}

/// True when this process was started as the driver shim: a symlink named `node` to sandboxd,
/// which playwright-rs runs as `node cli.js run-driver`.
pub fn is_driver_shim() -> bool {
    std::env::args_os()
        .next()
        .and_then(|arg0| Path::new(&arg0).file_name().map(|n| n == SHIM_NAME))
        .unwrap_or(false)
}

/// The driver shim: drops to the sandbox user (when sandboxd would) and execs the real Node with
/// the same arguments, so the Playwright driver and the Chromium it starts run as the user.
/// Returns only on failure.
pub fn exec_driver_node() -> io::Error {
    use std::os::unix::process::CommandExt;
    let node = std::env::var_os(DRIVER_NODE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DRIVER_NODE));
    let user = match decide(std::env::var_os(RUN_AS_ENV)) {
        Ok(user) => user,
        Err(e) => return io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()),
    };
    if let Some(user) = user {
        if let Err(e) = drop_to(user) {
            return io::Error::new(
                e.kind(),
                format!("cannot drop to {}:{}: {e}", user.uid, user.gid),
            );
        }
    }
    let err = std::process::Command::new(&node)
        .args(std::env::args_os().skip(1))
        .exec();
    io::Error::new(err.kind(), format!("cannot run {}: {err}", node.display()))
}

/// Checks, when children must drop, that the Playwright driver playwright-rs would start is the
/// shim (a `node` that resolves to this very binary); otherwise the driver and Chromium would run
/// as root.
pub fn check_driver(node: &Path) -> Result<(), String> {
    if user().map_err(|e| e.to_string())?.is_none() {
        return Ok(());
    }
    let exe = std::env::current_exe().and_then(std::fs::canonicalize);
    let target = std::fs::canonicalize(node);
    match (exe, target) {
        (Ok(exe), Ok(target)) if exe == target => Ok(()),
        _ => Err(format!(
            "refusing to start the Playwright driver {} as root: with {RUN_AS_ENV} set, \
             PLAYWRIGHT_DRIVER_PATH must name a driver directory whose `node` is a symlink to \
             sandboxd (the image's /opt/agent-runtime/driver)",
            node.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_as_parses_uid_and_gid() {
        assert_eq!(
            RunAs::parse("1000:1000").ok(),
            Some(RunAs {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(
            RunAs::parse(" 1001:100 ").ok(),
            Some(RunAs {
                uid: 1001,
                gid: 100
            })
        );
    }

    #[test]
    fn malformed_run_as_is_refused_with_the_reason() {
        for (value, reason) in [
            ("1000", "no ':'"),
            ("", "no ':'"),
            ("sandbox:sandbox", "decimal numbers"),
            ("1000:", "decimal numbers"),
            (":1000", "decimal numbers"),
            ("-1:1000", "decimal numbers"),
            ("+5:1000", "decimal numbers"),
            ("1000:1000:1", "decimal numbers"),
            ("0:1000", "root"),
            ("1000:0", "root"),
            ("4294967295:1000", "out of range"),
            ("99999999999:1000", "out of range"),
        ] {
            let err = RunAs::parse(value).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(reason)
                    && e.starts_with("SANDBOXD_RUN_AS=")
                    && e.contains("UID:GID")),
                "{value:?}: {err:?}"
            );
        }
    }

    #[test]
    fn no_variable_means_no_switch() {
        assert!(matches!(decide(None), Ok(None)));
        assert!(matches!(decide(Some("".into())), Ok(None)));
        assert!(decide(Some("x".into())).is_err());
    }

    #[test]
    fn the_driver_shim_is_recognised_by_its_name_only() {
        // The test binary is not called `node`.
        assert!(!is_driver_shim());
    }

    #[test]
    fn file_ids_are_restored_after_a_switch() {
        // SAFETY: geteuid only reads credentials.
        if unsafe { libc::geteuid() } != 0 {
            // Switching needs CAP_SETUID; the daemon tests cover the unswitched path.
            return;
        }
        let user = RunAs {
            uid: 4242,
            gid: 4243,
        };
        let before = current_fsids();
        let inside = FsIds::switch(user).map(|ids| {
            let inside = current_fsids();
            let nested = FsIds::switch(user).map(|_| current_fsids()).ok();
            (inside, nested, current_fsids(), ids)
        });
        let Ok((inside, nested, after_nested, ids)) = inside else {
            panic!("switch failed: {inside:?}", inside = inside.err());
        };
        assert_eq!(inside, (4242, 4243));
        assert_eq!(nested, Some((4242, 4243)));
        // The nested switch restored the outer one's ids, not root's.
        assert_eq!(after_nested, (4242, 4243));
        drop(ids);
        assert_eq!(current_fsids(), before);
    }
}
