//! Whole-file and directory operations: ReadFile, WriteFile, ListDir, Stat, Remove, MakeDir.
//!
//! The work is blocking filesystem I/O plus hashing, so each call runs on the blocking pool, as
//! the sandbox user (`privileges::as_user`): the daemon's own privileges never reach a file the user
//! could not touch, and what it creates belongs to the user. Reads take regular files only, so a
//! FIFO or a device can never block a call.

use std::fs::{self, Metadata};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use agent_runtime_proto::sets::FileType;
use agent_runtime_proto::v1::{FileInfo, ListDirResponse, ReadFileResponse, WriteFileResponse};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::privileges;
use crate::workspace::Workspace;

/// Largest file ReadFile returns (WriteFile and ReadFile messages must fit the 80 MiB limit).
pub const READ_LIMIT: u64 = 64 * 1024 * 1024;
/// Most entries one ListDir returns.
pub const LIST_LIMIT: usize = 10_000;
/// Mode of new files when the request gives none.
pub const DEFAULT_MODE: u32 = 0o644;

/// The Files component: whole-file operations relative to the workspace.
#[derive(Clone, Debug)]
pub struct Files {
    workspace: Workspace,
}

impl Files {
    /// Files rooted at `workspace`.
    pub fn new(workspace: Workspace) -> Self {
        Self { workspace }
    }

    /// The workspace these operations resolve against.
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    /// Classifies an I/O error on `path`.
    pub fn io_error(&self, op: &'static str, path: &Path, err: std::io::Error) -> Error {
        Error::io(op, path, self.workspace.root(), err)
    }

    /// Reads a whole file of at most `max_bytes` (0: 64 MiB).
    pub async fn read(&self, path: &str, max_bytes: u64) -> Result<ReadFileResponse> {
        let path = self.workspace.resolve(path)?;
        let limit = match max_bytes {
            0 => READ_LIMIT,
            n => n.min(READ_LIMIT),
        };
        let this = self.clone();
        blocking(move || this.read_blocking(path, limit)).await
    }

    fn read_blocking(&self, path: PathBuf, limit: u64) -> Result<ReadFileResponse> {
        let err = |e| self.io_error("reading", &path, e);
        let (file, meta) = self.open_regular(&path)?;
        if meta.len() > limit {
            return Err(too_large(meta.len(), limit));
        }
        let mut content = Vec::with_capacity(meta.len() as usize);
        // One byte more than the limit tells a file that grew while we read it.
        file.take(limit + 1)
            .read_to_end(&mut content)
            .map_err(err)?;
        if content.len() as u64 > limit {
            return Err(too_large(content.len() as u64, limit));
        }
        Ok(ReadFileResponse {
            path: path.display().to_string(),
            size: content.len() as u64,
            sha256: hex::encode(Sha256::digest(&content)),
            is_text: std::str::from_utf8(&content).is_ok(),
            content,
        })
    }

    /// Writes (or appends to) a file, creating parent directories.
    pub async fn write(
        &self,
        path: &str,
        content: Vec<u8>,
        mode: u32,
        append: bool,
    ) -> Result<WriteFileResponse> {
        let path = self.workspace.resolve(path)?;
        let mode = file_mode(mode);
        let this = self.clone();
        blocking(move || this.write_blocking(path, content, mode, append)).await
    }

    fn write_blocking(
        &self,
        path: PathBuf,
        content: Vec<u8>,
        mode: u32,
        append: bool,
    ) -> Result<WriteFileResponse> {
        let err = |e| self.io_error("writing", &path, e);
        self.create_parent(&path)?;
        let size = if append {
            let (mut file, _) = self.open_checked(
                "writing",
                &path,
                fs::OpenOptions::new().append(true).create(true).mode(mode),
            )?;
            file.write_all(&content).map_err(err)?;
            file.metadata().map_err(err)?.len()
        } else {
            match TempFile::create_beside(&path, mode) {
                Ok(mut temp) => {
                    temp.file.write_all(&content).map_err(err)?;
                    temp.persist(&path).map_err(err)?;
                }
                // A writable file in a directory we may not create files in: write it in place.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && path.is_file() => {
                    let (mut file, _) = self.open_checked(
                        "writing",
                        &path,
                        fs::OpenOptions::new().write(true).truncate(true),
                    )?;
                    file.write_all(&content).map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
            content.len() as u64
        };
        Ok(WriteFileResponse {
            path: path.display().to_string(),
            size,
            sha256: hex::encode(Sha256::digest(&content)),
        })
    }

    /// Opens a regular file for reading (following symlinks, as the caller of this runs as the
    /// user). Directories are `IsADirectory`; FIFOs, sockets and devices are refused before they
    /// are opened, and again after an open that cannot block, should the path change in between.
    pub fn open_regular(&self, path: &Path) -> Result<(fs::File, Metadata)> {
        let meta = fs::metadata(path).map_err(|e| self.io_error("reading", path, e))?;
        not_special(path, &meta)?;
        self.open_checked("reading", path, fs::OpenOptions::new().read(true))
    }

    /// Opens `path` with `options` without blocking (O_NONBLOCK, so a FIFO without a peer fails
    /// or opens at once) and keeps it only when it is a regular file.
    fn open_checked(
        &self,
        op: &'static str,
        path: &Path,
        options: &mut fs::OpenOptions,
    ) -> Result<(fs::File, Metadata)> {
        let err = |e| self.io_error(op, path, e);
        let file = options
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| {
                // ENXIO: a FIFO opened for writing with no reader; say so.
                let special = (e.raw_os_error() == Some(libc::ENXIO))
                    .then(|| fs::metadata(path).ok())
                    .flatten()
                    .and_then(|meta| not_special(path, &meta).err());
                special.unwrap_or_else(|| err(e))
            })?;
        let meta = file.metadata().map_err(err)?;
        not_special(path, &meta)?;
        // Back to blocking reads (no-op for a regular file, but say what we mean).
        // SAFETY: fcntl on a descriptor we own changes only its status flags.
        unsafe {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        Ok((file, meta))
    }

    /// Creates the parent directories of `path`.
    pub fn create_parent(&self, path: &Path) -> Result<()> {
        match path.parent() {
            Some(parent) => fs::create_dir_all(parent)
                .map_err(|e| self.io_error("creating the directory", parent, e)),
            None => Ok(()),
        }
    }

    /// Lists a directory (default: the workspace), sorted by name.
    pub async fn list(&self, path: &str, include_hidden: bool) -> Result<ListDirResponse> {
        let path = self.workspace.resolve_or_root(path)?;
        let this = self.clone();
        blocking(move || this.list_blocking(path, include_hidden)).await
    }

    fn list_blocking(&self, path: PathBuf, include_hidden: bool) -> Result<ListDirResponse> {
        let err = |e| self.io_error("listing", &path, e);
        let meta = fs::metadata(&path).map_err(err)?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory(path));
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&path).map_err(err)? {
            let name = entry.map_err(err)?.file_name();
            if include_hidden || !name.as_encoded_bytes().starts_with(b".") {
                names.push(name);
            }
        }
        names.sort();
        let truncated = names.len() > LIST_LIMIT;
        names.truncate(LIST_LIMIT);
        let entries = names
            .into_iter()
            .filter_map(|name| {
                let child = path.join(&name);
                // An entry removed while we listed is simply not listed.
                let meta = fs::symlink_metadata(&child).ok()?;
                Some(file_info(&child, &meta))
            })
            .collect();
        Ok(ListDirResponse {
            path: path.display().to_string(),
            entries,
            truncated,
        })
    }

    /// Describes a path without following a final symlink.
    pub async fn stat(&self, path: &str) -> Result<FileInfo> {
        let path = self.workspace.resolve(path)?;
        let this = self.clone();
        blocking(move || {
            let meta =
                fs::symlink_metadata(&path).map_err(|e| this.io_error("reading", &path, e))?;
            Ok(file_info(&path, &meta))
        })
        .await
    }

    /// Removes a file, a symlink, an empty directory, or with `recursive` any directory.
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<()> {
        let path = self.workspace.resolve(path)?;
        let this = self.clone();
        blocking(move || {
            if this.workspace.is_root(&path) {
                return Err(Error::invalid(format!(
                    "refusing to remove the workspace root {}; remove what is inside it instead",
                    path.display()
                )));
            }
            let err = |e| this.io_error("removing", &path, e);
            let meta = fs::symlink_metadata(&path).map_err(err)?;
            if meta.is_dir() {
                if recursive {
                    fs::remove_dir_all(&path).map_err(err)
                } else {
                    fs::remove_dir(&path).map_err(err)
                }
            } else {
                fs::remove_file(&path).map_err(err)
            }
        })
        .await
    }

    /// Creates a directory and its parents; an existing directory is fine.
    pub async fn make_dir(&self, path: &str) -> Result<FileInfo> {
        let path = self.workspace.resolve(path)?;
        let this = self.clone();
        blocking(move || {
            let err = |e| this.io_error("creating the directory", &path, e);
            fs::create_dir_all(&path).map_err(err)?;
            let meta = fs::symlink_metadata(&path).map_err(err)?;
            Ok(file_info(&path, &meta))
        })
        .await
    }
}

/// Runs blocking filesystem work off the async threads, as the sandbox user (`privileges::as_user`):
/// every use is on behalf of a caller.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || privileges::as_user(work)?)
        .await
        .map_err(|e| Error::Internal(format!("file task failed: {e}")))?
}

/// Refuses what is neither a regular file nor a directory (which is `IsADirectory`).
fn not_special(path: &Path, meta: &Metadata) -> Result<()> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        return Err(Error::IsADirectory(path.to_path_buf()));
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    Err(Error::invalid(format!(
        "{} is {what}; only regular files can be read or written here (copy the data into a \
         file first)",
        path.display()
    )))
}

/// The mode bits a request asks for, 0 meaning 0644.
pub fn file_mode(mode: u32) -> u32 {
    match mode & 0o7777 {
        0 => DEFAULT_MODE,
        m => m,
    }
}

fn too_large(size: u64, limit: u64) -> Error {
    const MIB: u64 = 1024 * 1024;
    let limit = if limit.is_multiple_of(MIB) {
        format!("{} MiB", limit / MIB)
    } else {
        format!("{limit}-byte")
    };
    Error::TooLarge { size, limit }
}

/// What the API says about a path, from its (not followed) metadata.
pub fn file_info(path: &Path, meta: &Metadata) -> FileInfo {
    let kind = meta.file_type();
    let kind = if kind.is_symlink() {
        FileType::Symlink
    } else if kind.is_dir() {
        FileType::Directory
    } else if kind.is_file() {
        FileType::File
    } else {
        FileType::Other
    };
    FileInfo {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
        path: path.display().to_string(),
        r#type: kind.into(),
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        modified_at: meta
            .modified()
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .unwrap_or_default(),
    }
}

/// A temporary file beside its destination, removed unless persisted: a failed or abandoned write
/// never leaves a partial file behind. Create and persist it as the sandbox user.
pub struct TempFile {
    path: PathBuf,
    /// The open file.
    pub file: fs::File,
    mode: u32,
    persisted: bool,
}

impl TempFile {
    /// Creates `.NAME.tmp-RANDOM` in the directory of `dest`.
    pub fn create_beside(dest: &Path, mode: u32) -> std::io::Result<Self> {
        let dir = dest.parent().unwrap_or(Path::new("/"));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut suffix = [0u8; 6];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut suffix);
        let path = dir.join(format!(".{name}.tmp-{}", hex::encode(suffix)));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)?;
        Ok(Self {
            path,
            file,
            mode,
            persisted: false,
        })
    }

    /// Sets the final mode and renames the file to `dest`.
    pub fn persist(mut self, dest: &Path) -> std::io::Result<()> {
        self.file.flush()?;
        // Set explicitly, so the umask does not change what the caller asked for.
        fs::set_permissions(&self.path, fs::Permissions::from_mode(self.mode))?;
        fs::rename(&self.path, dest)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Maybe dropped outside the worker that made it: removed as the user all the same.
            let _ = privileges::as_user(|| fs::remove_file(&self.path));
        }
    }
}
