//! The one error type of sandboxd and its mapping onto gRPC status codes (DESIGN.md §3.3).

use std::io;
use std::path::{Path, PathBuf};

/// Everything a sandboxd call can fail with; the message is what the caller reads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (bad language, path, timeout, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A path that does not exist.
    #[error("no such file or directory: {}", .0.display())]
    NotFound(PathBuf),
    /// The OS refused access (permissions or a read-only filesystem).
    #[error(
        "permission denied: {} (the sandbox user can write only under {} and /tmp)",
        .path.display(),
        .workspace.display()
    )]
    PermissionDenied {
        /// The path that was refused.
        path: PathBuf,
        /// The workspace, named so the caller knows where writing works.
        workspace: PathBuf,
    },
    /// A file operation was given a directory.
    #[error("is a directory: {}", .0.display())]
    IsADirectory(PathBuf),
    /// A directory operation was given something else.
    #[error("not a directory: {}", .0.display())]
    NotADirectory(PathBuf),
    /// The path is already taken.
    #[error("already exists: {}", .0.display())]
    AlreadyExists(PathBuf),
    /// Removing a directory that still has entries without `recursive`.
    #[error("directory not empty: {} (pass recursive)", .0.display())]
    DirectoryNotEmpty(PathBuf),
    /// A file too large for a whole-file read.
    #[error("file is {size} bytes, over the {limit} ReadFile limit; use Download")]
    TooLarge {
        /// Size of the file.
        size: u64,
        /// The limit, human-readable ("64 MiB").
        limit: String,
    },
    /// An uploaded file whose hash is not the announced one; nothing was kept.
    #[error("sha256 mismatch: expected {expected}, received {actual}; the upload was discarded")]
    ChecksumMismatch {
        /// The hash the client announced.
        expected: String,
        /// The hash of the bytes received.
        actual: String,
    },
    /// The interpreter could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The interpreter.
        program: &'static str,
        /// Why it failed.
        source: io::Error,
    },
    /// Any other I/O failure.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done ("reading", "writing", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A context id this sandbox does not have (never created, or deleted).
    #[error("context {0} not found; ListContexts shows the contexts that exist")]
    ContextNotFound(String),
    /// The sandbox already runs as many contexts as it allows.
    #[error(
        "this sandbox already has {0} contexts, the most it allows; delete one (DeleteContext) \
         and retry"
    )]
    TooManyContexts(usize),
    /// A Jupyter kernel did not come up.
    #[error(
        "the python kernel did not start: {reason}; its stderr ends with: {}",
        if .stderr.trim().is_empty() { "(nothing)" } else { .stderr.as_str() }
    )]
    KernelStart {
        /// What went wrong.
        reason: String,
        /// The last lines the kernel wrote to stderr.
        stderr: String,
    },
    /// Talking to a running kernel failed.
    #[error("kernel error: {0}")]
    Kernel(String),
    /// A run id this sandbox does not know (never started, or forgotten long after it ended).
    #[error("run {0} not found; ListRuns shows the runs this sandbox knows")]
    RunNotFound(String),
    /// A run cannot take this input or terminal call (the message says why).
    #[error("{0}")]
    RunInput(String),
    /// A call this daemon does not serve yet.
    #[error("{0} arrives with contexts/browser support")]
    Unimplemented(&'static str),
    /// A bug or a dead worker task.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Classifies an I/O error on `path` into the variant a person understands.
    pub fn io(op: &'static str, path: &Path, workspace: &Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match source.raw_os_error() {
            Some(libc::ENOENT) => return Self::NotFound(path),
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => {
                return Self::PermissionDenied {
                    path,
                    workspace: workspace.to_path_buf(),
                }
            }
            Some(libc::EISDIR) => return Self::IsADirectory(path),
            Some(libc::ENOTDIR) => return Self::NotADirectory(path),
            Some(libc::EEXIST) => return Self::AlreadyExists(path),
            Some(libc::ENOTEMPTY) => return Self::DirectoryNotEmpty(path),
            _ => {}
        }
        match source.kind() {
            io::ErrorKind::NotFound => Self::NotFound(path),
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                Self::PermissionDenied {
                    path,
                    workspace: workspace.to_path_buf(),
                }
            }
            io::ErrorKind::IsADirectory => Self::IsADirectory(path),
            io::ErrorKind::NotADirectory => Self::NotADirectory(path),
            io::ErrorKind::AlreadyExists => Self::AlreadyExists(path),
            io::ErrorKind::DirectoryNotEmpty => Self::DirectoryNotEmpty(path),
            _ => Self::Io { op, path, source },
        }
    }

    /// An invalid-argument error from anything printable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::InvalidArgument(_)
            | Error::IsADirectory(_)
            | Error::NotADirectory(_)
            | Error::ChecksumMismatch { .. } => tonic::Status::invalid_argument(message),
            Error::NotFound(_) | Error::ContextNotFound(_) | Error::RunNotFound(_) => {
                tonic::Status::not_found(message)
            }
            Error::RunInput(_) => tonic::Status::failed_precondition(message),
            Error::TooManyContexts(_) => tonic::Status::resource_exhausted(message),
            Error::KernelStart { .. } => tonic::Status::unavailable(message),
            Error::PermissionDenied { .. } => tonic::Status::permission_denied(message),
            Error::AlreadyExists(_) => tonic::Status::already_exists(message),
            Error::DirectoryNotEmpty(_) => tonic::Status::failed_precondition(message),
            Error::TooLarge { .. } => tonic::Status::resource_exhausted(message),
            Error::Unimplemented(_) => tonic::Status::unimplemented(message),
            // EAGAIN from fork: the sandbox's process limit is reached (e.g. by a fork bomb).
            Error::Spawn { ref source, .. } if source.raw_os_error() == Some(libc::EAGAIN) => {
                tonic::Status::resource_exhausted(format!(
                    "{message}: the sandbox's process limit is reached; wait for running commands \
                     to finish or kill them, then retry"
                ))
            }
            Error::Spawn { .. } | Error::Io { .. } | Error::Kernel(_) | Error::Internal(_) => {
                tonic::Status::internal(message)
            }
        }
    }
}

/// Result with sandboxd's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(errno: i32) -> tonic::Status {
        let err = Error::io(
            "writing",
            Path::new("/etc/passwd"),
            Path::new("/workspace"),
            io::Error::from_raw_os_error(errno),
        );
        err.into()
    }

    #[test]
    fn io_errors_map_to_the_codes_a_caller_expects() {
        let s = status_of(libc::ENOENT);
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "no such file or directory: /etc/passwd");

        for errno in [libc::EACCES, libc::EROFS] {
            let s = status_of(errno);
            assert_eq!(s.code(), tonic::Code::PermissionDenied);
            assert_eq!(
                s.message(),
                "permission denied: /etc/passwd (the sandbox user can write only under /workspace and /tmp)"
            );
        }
        assert_eq!(status_of(libc::EISDIR).code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status_of(libc::ENOTDIR).code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(status_of(libc::EEXIST).code(), tonic::Code::AlreadyExists);
        assert_eq!(
            status_of(libc::ENOTEMPTY).code(),
            tonic::Code::FailedPrecondition
        );
        let s = status_of(libc::ENOSPC);
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(s.message().starts_with("writing /etc/passwd: "), "{s:?}");
    }
}
