//! The build context: a tar (under `cache_dir`, as it holds ~120 MB of Node and playwright-core)
//! of the Dockerfile, packages.txt, sandboxd and `driver/{node,package/}`.
//!
//! Owners, modes and times are normalized so an unchanged input gives an unchanged layer, and
//! every file is readable by the sandbox user.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::{unique_suffix, ImageError, DOCKERFILE, HOST_DOCKERFILE, PACKAGES};

/// mtime of every entry (2024-01-01T00:00:00Z).
const MTIME: u64 = 1_704_067_200;

/// A build context on disk, removed when dropped.
pub(super) struct Context {
    pub path: PathBuf,
}

impl Drop for Context {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes the build context tar.
pub(super) async fn write(
    cache_dir: &Path,
    sandboxd: &Path,
    driver: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Context, ImageError> {
    let context = Context {
        path: cache_dir.join(format!("context-{}.tar", unique_suffix())),
    };
    let path = context.path.clone();
    let sandboxd = sandboxd.to_path_buf();
    let driver = driver.to_path_buf();
    tokio::task::spawn_blocking(move || write_tar(&path, &sandboxd, &driver))
        .await
        .map_err(|e| ImageError::Build(format!("context task failed: {e}")))??;
    let size = std::fs::metadata(&context.path)
        .map(|m| m.len())
        .unwrap_or(0);
    progress(&format!(
        "context: {} ({} MB)",
        context.path.display(),
        size >> 20
    ));
    Ok(context)
}

/// Writes the host image's build context: deploy/Dockerfile and the `agent-runtime` binary.
pub(super) async fn write_host(
    cache_dir: &Path,
    agent_runtime: &Path,
) -> Result<Context, ImageError> {
    let context = Context {
        path: cache_dir.join(format!("host-context-{}.tar", unique_suffix())),
    };
    let path = context.path.clone();
    let bin = agent_runtime.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(), ImageError> {
        let err = |what: &'static str, p: &Path| ImageError::io(what, p);
        let file = File::create(&path).map_err(err("cannot create build context", &path))?;
        let mut tar = tar::Builder::new(BufWriter::new(file));
        add_bytes(&mut tar, "Dockerfile", HOST_DOCKERFILE.as_bytes())
            .map_err(err("cannot write", &path))?;
        add_file(&mut tar, "agent-runtime", &bin, 0o755).map_err(err(
            "cannot add the agent-runtime binary to the build context",
            &bin,
        ))?;
        tar.into_inner()
            .map_err(err("cannot finish build context", &path))?
            .flush()
            .map_err(err("cannot finish build context", &path))
    })
    .await
    .map_err(|e| ImageError::Build(format!("context task failed: {e}")))??;
    Ok(context)
}

fn write_tar(path: &Path, sandboxd: &Path, driver: &Path) -> Result<(), ImageError> {
    let err = |what: &'static str, p: &Path| ImageError::io(what, p);
    let file = File::create(path).map_err(err("cannot create build context", path))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    add_bytes(&mut tar, "Dockerfile", DOCKERFILE.as_bytes()).map_err(err("cannot write", path))?;
    add_bytes(&mut tar, "packages.txt", PACKAGES.as_bytes()).map_err(err("cannot write", path))?;
    if !sandboxd.is_file() {
        return Err(ImageError::SandboxdMissing(sandboxd.to_path_buf()));
    }
    add_file(&mut tar, "sandboxd", sandboxd, 0o755).map_err(err(
        "cannot add sandboxd binary to the build context",
        sandboxd,
    ))?;
    add_tree(&mut tar, Path::new("driver"), driver)?;
    let writer = tar
        .into_inner()
        .map_err(err("cannot finish build context", path))?;
    writer
        .into_inner()
        .map_err(|e| ImageError::io("cannot finish build context", path)(e.into_error()))?
        .sync_all()
        .map_err(err("cannot finish build context", path))?;
    Ok(())
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut h = header(EntryType::Regular, 0o644, bytes.len() as u64);
    tar.append_data(&mut h, name, bytes)
}

fn add_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: impl AsRef<Path>,
    src: &Path,
    mode: u32,
) -> std::io::Result<()> {
    let file = File::open(src)?;
    let mut h = header(EntryType::Regular, mode, file.metadata()?.len());
    tar.append_data(&mut h, name, file)
}

/// Adds `src` as `name`, recursively, in sorted order; symlinks stay symlinks.
fn add_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &Path,
    src: &Path,
) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |p: &Path| ImageError::io("cannot add to the build context", p);
    let mut h = header(EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, name, std::io::empty())
        .map_err(io(src))?;
    let mut entries = std::fs::read_dir(src)
        .map_err(io(src))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(src))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let target = name.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            add_tree(tar, &target, &path)?;
        } else if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&path).map_err(io(&path))?;
            let mut h = header(EntryType::Symlink, 0o777, 0);
            tar.append_link(&mut h, &target, &link).map_err(io(&path))?;
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            add_file(tar, &target, &path, mode).map_err(io(&path))?;
        }
    }
    Ok(())
}
