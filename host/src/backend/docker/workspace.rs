//! A sized filesystem per sandbox workspace: a sparse ext4 image, loop-mounted `nosuid,nodev` on
//! the host directory that is bind-mounted as `/workspace`.
//!
//! Why a loop-mounted image rather than a quota: quotas need a filesystem mounted with quota
//! options (XFS project quotas, ext4 `prjquota`) that we cannot require of a laptop, while a loop
//! device works on any filesystem the state directory lives on. A writer inside gets ENOSPC at
//! the size, the host's disk only ever holds what was written (the image is sparse), and the
//! mount options keep anything planted there from being setuid-runnable on the host. `mkfs.ext4`
//! (20-40 ms) runs ahead of creates ([`Formatted`]); what is left per create is the loop mount
//! (~10-15 ms).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::error::HostError;

/// The sandbox user, owner of the workspace root.
const SANDBOX_UID: u32 = 1000;

/// Disk space kept free for the host: a create that would leave less fails.
pub const DISK_RESERVE: u64 = 1024 * 1024 * 1024;

/// Free bytes (for unprivileged users) on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, HostError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| HostError::Backend(format!("{} contains a NUL byte", dir.display())))?;
    // SAFETY: statvfs writes only into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(HostError::io(
            format!("checking free space of {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Creates `image` of `size` bytes (sparse), formats it and mounts it on `dir`.
pub async fn mount(image: &Path, dir: &Path, size: u64) -> Result<(), HostError> {
    format(image, size).await?;
    mount_formatted(image, dir).await
}

/// Creates `image` of `size` bytes (sparse) and formats it, empty, owned by the sandbox user.
async fn format(image: &Path, size: u64) -> Result<(), HostError> {
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(image)
        .map_err(|e| HostError::io(format!("creating {}", image.display()), e))?;
    super::set_mode(image, 0o600)?;
    file.set_len(size)
        .map_err(|e| HostError::io(format!("sizing {}", image.display()), e))?;
    drop(file);
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-E",
            &format!("lazy_itable_init=1,nodiscard,root_owner={SANDBOX_UID}:{SANDBOX_UID}"),
            path_str(image)?,
        ],
    )
    .await
}

/// Mounts a formatted `image` on `dir`.
async fn mount_formatted(image: &Path, dir: &Path) -> Result<(), HostError> {
    run(
        "mount",
        &[
            "-t",
            "ext4",
            "-o",
            "loop,nosuid,nodev,noatime",
            path_str(image)?,
            path_str(dir)?,
        ],
    )
    .await?;
    // mkfs leaves lost+found; users expect an empty workspace (fsck recreates it if ever needed).
    let _ = std::fs::remove_dir(dir.join("lost+found"));
    Ok(())
}

/// Workspace images formatted ahead of time, so a create mounts one instead of waiting for
/// `mkfs.ext4` (20-40 ms of a cold create here). Each is a fresh, empty filesystem used by one
/// sandbox only (moved into its directory), like the one `mount` makes; a host start discards
/// what an earlier run left (its size may have changed).
pub struct Formatted {
    dir: PathBuf,
    size: u64,
    filling: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How many formatted images wait: creates come in bursts (a pool refilling).
const FORMATTED_AHEAD: usize = 2;
/// Name ending of a finished image (one being formatted ends in `.part`).
const READY_SUFFIX: &str = ".img";

impl Formatted {
    /// Empties (or creates, root-only) `dir` and starts formatting images of `size` bytes.
    pub fn new(dir: PathBuf, size: u64) -> Result<std::sync::Arc<Self>, HostError> {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HostError::io(format!("emptying {}", dir.display()), e)),
        }
        std::fs::create_dir(&dir)
            .map_err(|e| HostError::io(format!("creating {}", dir.display()), e))?;
        super::set_mode(&dir, 0o700)?;
        let this = std::sync::Arc::new(Self {
            dir,
            size,
            filling: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            task: std::sync::Mutex::new(None),
        });
        this.refill();
        Ok(this)
    }

    /// Formats `image` and mounts it on `dir`, taking a formatted image when one is ready.
    pub async fn mount(
        self: &std::sync::Arc<Self>,
        image: &Path,
        dir: &Path,
    ) -> Result<(), HostError> {
        let taken = self.take(image);
        self.refill();
        if taken {
            match mount_formatted(image, dir).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "a formatted workspace image did not mount: formatting a new one");
                    let _ = std::fs::remove_file(image);
                }
            }
        }
        mount(image, dir, self.size).await
    }

    /// Moves a ready image to `image`; false when none is ready.
    fn take(&self, image: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return false;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.to_string_lossy().ends_with(READY_SUFFIX)
                && std::fs::rename(&path, image).is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Formats images in the background until [`FORMATTED_AHEAD`] are ready (one task at a
    /// time; it ends there, or at the first failure, or when the disk is short).
    fn refill(self: &std::sync::Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.filling.store(false, Ordering::Release);
            return;
        };
        // The task holds what it needs, not `self`: dropping the backend aborts it.
        let (dir, size, filling) = (
            self.dir.clone(),
            self.size,
            std::sync::Arc::clone(&self.filling),
        );
        let task = handle.spawn(async move {
            while ready_in(&dir) < FORMATTED_AHEAD {
                let room = free_bytes(&dir)
                    .is_ok_and(|free| free >= size.saturating_add(DISK_RESERVE).saturating_mul(2));
                if !room {
                    break;
                }
                let part = dir.join(format!(
                    "{}.part",
                    crate::ids::SandboxId::generate().as_str()
                ));
                if let Err(e) = format(&part, size).await {
                    tracing::warn!(error = %e, "cannot format a workspace image ahead");
                    let _ = std::fs::remove_file(&part);
                    break;
                }
                let ready = part.with_extension(&READY_SUFFIX[1..]);
                if std::fs::rename(&part, &ready).is_err() {
                    let _ = std::fs::remove_file(&part);
                    break;
                }
            }
            filling.store(false, Ordering::Release);
        });
        if let Ok(mut slot) = self.task.lock() {
            *slot = Some(task);
        }
    }
}

/// How many finished images `dir` holds.
fn ready_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.path().to_string_lossy().ends_with(READY_SUFFIX))
            .count()
    })
}

impl Drop for Formatted {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.task.lock() {
            if let Some(task) = slot.take() {
                task.abort();
            }
        }
    }
}

/// Unmounts `dir` if something is mounted there (the loop device detaches with it).
pub async fn unmount(dir: &Path) -> Result<(), HostError> {
    if !is_mountpoint(dir) {
        return Ok(());
    }
    if run("umount", &[path_str(dir)?]).await.is_err() {
        // Busy (a process still inside): detach now, the kernel finishes when it lets go.
        run("umount", &["-l", path_str(dir)?]).await?;
    }
    Ok(())
}

/// Whether `dir` is a mount point, from /proc/self/mountinfo (never stat through it: a hung
/// filesystem must not hang the host).
pub fn is_mountpoint(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = unescape_target(dir);
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|target| target == want)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_target(dir: &Path) -> String {
    let mut out = String::new();
    for c in dir.to_string_lossy().chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// The image file of the workspace in sandbox directory `sandbox_dir`.
pub fn image_path(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("workspace.img")
}

/// Whether this host can make sized workspaces (root with loop devices and mkfs.ext4).
pub fn supported() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("mounting a loop device needs root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control (loop devices unavailable)".into());
    }
    for tool in ["mkfs.ext4", "mount", "umount"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || Path::new("/sbin").join(tool).is_file()
            || Path::new("/usr/sbin").join(tool).is_file();
        if !found {
            return Err(format!("{tool} not found (install e2fsprogs / mount)"));
        }
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str, HostError> {
    p.to_str()
        .ok_or_else(|| HostError::Backend(format!("path {} is not valid UTF-8", p.display())))
}

async fn run(program: &str, args: &[&str]) -> Result<(), HostError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // /sbin is not on every PATH (cron, systemd units).
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| HostError::Backend(format!("{program} took longer than 30 s")))?
        .map_err(|e| HostError::io(format!("running {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HostError::Backend(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_targets_are_escaped_like_the_kernel_does() {
        assert_eq!(unescape_target(Path::new("/a b/c")), "/a\\040b/c");
        assert!(is_mountpoint(Path::new("/proc")) || !Path::new("/proc/self").exists());
        assert!(!is_mountpoint(Path::new("/definitely/not/mounted")));
    }
}
