//! The base image: `agent-runtime-rootfs:<hash>` when built before, else `debian:bookworm-slim`
//! when Docker has it or can pull it (the ordinary path), else a root filesystem built offline
//! by mmdebstrap from packages.txt and imported into Docker (the offline path).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use tokio::process::Command;
use tokio_util::io::ReaderStream;

use super::build::image_exists;
use super::hash::{short, Parts};
use super::process::run_forwarding;
use super::{long_running, package_names, unique_suffix, ImageError};

/// Base of the ordinary path.
pub(super) const SLIM: &str = "debian:bookworm-slim";
/// Repository of imported root filesystems.
pub(super) const ROOTFS_REPO: &str = "agent-runtime-rootfs";
/// The marker the Dockerfile looks for to skip apt-get.
const MARKER_HOOK: &str = r#"touch "$1/etc/agent-runtime-rootfs""#;
/// How long a pull of debian:bookworm-slim may take before we go offline.
const PULL_TIMEOUT: Duration = Duration::from_secs(20);
const SUITE: &str = "bookworm";

/// mmdebstrap's options, without the output path: they and the package list define the rootfs.
fn mmdebstrap_args() -> Vec<String> {
    let mut args = vec![
        "--variant=minbase".to_string(),
        format!("--include={}", package_names().join(",")),
    ];
    for opt in [
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/locale/*",
        "path-exclude=/usr/share/info/*",
    ] {
        args.push(format!("--dpkgopt={opt}"));
    }
    args.push(format!("--customize-hook={MARKER_HOOK}"));
    args.push("--format=tar".to_string());
    args.push(SUITE.to_string());
    args
}

/// `agent-runtime-rootfs:<12 hex of the package list and mmdebstrap options>`.
pub(super) fn rootfs_tag() -> String {
    let mut parts = Parts::new("agent-runtime-rootfs/1");
    for arg in mmdebstrap_args() {
        parts.add("arg", arg.as_bytes());
    }
    format!("{ROOTFS_REPO}:{}", short(&parts.finish()))
}

/// Picks (and if needed builds) the base image; returns its name for the BASE build argument.
pub(super) async fn ensure_base(
    docker: &Docker,
    cache_dir: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<String, ImageError> {
    let rootfs = rootfs_tag();
    if image_exists(docker, &rootfs).await? {
        progress(&format!(
            "base: {rootfs} (offline root filesystem, built before)"
        ));
        return Ok(rootfs);
    }
    if image_exists(docker, SLIM).await? {
        progress(&format!(
            "base: {SLIM} (present locally; the build installs packages.txt with apt-get)"
        ));
        return Ok(SLIM.to_string());
    }
    if try_pull(docker, progress).await {
        progress(&format!(
            "base: {SLIM} (pulled; the build installs packages.txt with apt-get)"
        ));
        return Ok(SLIM.to_string());
    }
    progress(&format!("base: building {rootfs} offline with mmdebstrap"));
    build_rootfs(docker, cache_dir, &rootfs, progress).await?;
    Ok(rootfs)
}

/// Tries `docker pull debian:bookworm-slim` for at most PULL_TIMEOUT.
async fn try_pull(docker: &Docker, progress: &(dyn Fn(&str) + Send + Sync)) -> bool {
    progress(&format!(
        "base: trying to pull {SLIM} (up to {}s)",
        PULL_TIMEOUT.as_secs()
    ));
    let options = CreateImageOptionsBuilder::new()
        .from_image("debian")
        .tag("bookworm-slim")
        .build();
    let pull = async {
        let mut stream = docker.create_image(Some(options), None, None);
        let mut last = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let status = info.status.unwrap_or_default();
                    // Download percentages come many per second; report each new phase once.
                    if !status.is_empty() && status != last && info.progress_detail.is_none() {
                        progress(&format!("pull: {status}"));
                        last = status;
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(PULL_TIMEOUT, pull).await {
        Ok(Ok(())) => image_exists(docker, SLIM).await.unwrap_or(false),
        Ok(Err(e)) => {
            progress(&format!("pull: failed ({e}); going offline"));
            false
        }
        Err(_) => {
            progress("pull: timed out; going offline");
            false
        }
    }
}

/// Removes the temporary tar however the build ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs mmdebstrap into a tar under `cache_dir` and imports it as `tag`.
async fn build_rootfs(
    docker: &Docker,
    cache_dir: &Path,
    tag: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ImageError> {
    let hash = tag.rsplit(':').next().unwrap_or(tag);
    let tar = TempFile(cache_dir.join(format!("rootfs-{hash}.partial-{}.tar", unique_suffix())));

    let started = Instant::now();
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(mmdebstrap_args()).arg(&tar.0);
    progress(&format!(
        "mmdebstrap: {} packages from {SUITE} (takes minutes; needs the Debian mirror)",
        package_names().len()
    ));
    let finished = run_forwarding(&mut cmd, "mmdebstrap", progress)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::MmdebstrapMissing,
            _ => ImageError::Mmdebstrap(format!("cannot run mmdebstrap: {e}")),
        })?;
    if !finished.status.success() {
        return Err(ImageError::Mmdebstrap(finished.tail_text()));
    }
    let size = std::fs::metadata(&tar.0)
        .map_err(ImageError::io("mmdebstrap wrote no tar at", &tar.0))?
        .len();
    progress(&format!(
        "mmdebstrap: done in {:.1}s ({} MB)",
        started.elapsed().as_secs_f64(),
        size >> 20
    ));

    let started = Instant::now();
    import(docker, &tar.0, size, tag, progress).await?;
    progress(&format!(
        "import: {tag} in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `docker import`: POST /images/create?fromSrc=- with the tar streamed as the body.
async fn import(
    docker: &Docker,
    tar: &Path,
    size: u64,
    tag: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ImageError> {
    let (repo, tag_part) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let file = tokio::fs::File::open(tar)
        .await
        .map_err(ImageError::io("cannot open root filesystem tar", tar))?;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let body = ReaderStream::with_capacity(file, 1 << 20).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        chunk
    });
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag_part)
        .message("agent-runtime offline root filesystem (mmdebstrap)")
        .build();
    let docker = long_running(docker);
    let mut stream = docker.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    loop {
        tokio::select! {
            item = stream.next() => match item {
                None => break,
                Some(Ok(info)) => {
                    if let Some(status) = info.status.filter(|s| !s.is_empty()) {
                        progress(&format!("import: {status}"));
                    }
                }
                Some(Err(e)) => return Err(ImageError::Import(e.to_string())),
            },
            _ = ticker.tick() => {
                let done = sent.load(Ordering::Relaxed);
                progress(&format!(
                    "import: sent {} of {} MB",
                    done >> 20,
                    size >> 20
                ));
            }
        }
    }
    if !image_exists(&docker, tag).await? {
        return Err(ImageError::Import(format!(
            "dockerd reported no error but {tag} does not exist"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_has_the_marker_and_a_stable_tag() {
        let args = mmdebstrap_args();
        assert!(args.iter().any(|a| a.contains("/etc/agent-runtime-rootfs")));
        assert!(args
            .iter()
            .any(|a| a.starts_with("--include=") && a.contains("chromium")));
        assert_eq!(rootfs_tag(), rootfs_tag());
        assert!(rootfs_tag().starts_with("agent-runtime-rootfs:"));
    }
}
