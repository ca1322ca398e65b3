//! The host's error type and its mapping onto gRPC status codes (DESIGN.md §3.3).

use tonic::Status;

/// Everything that can go wrong in the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A request field is wrong; the message says which and how.
    #[error("{0}")]
    InvalidArgument(String),
    /// No sandbox with that id on this host.
    #[error("sandbox {0} not found: list sandboxes with `agent-runtime sandbox ls`")]
    SandboxNotFound(String),
    /// The cap on concurrent sandboxes is reached.
    #[error("sandbox limit reached ({0} running): destroy one or start the host with a larger --max-sandboxes")]
    TooManySandboxes(usize),
    /// The container runtime failed.
    #[error("docker: {0}")]
    Backend(String),
    /// The sandbox image could not be built or found.
    #[error("sandbox image: {0}")]
    Image(String),
    /// sandboxd did not come up or speaks another protocol.
    #[error("sandbox {id} did not become ready: {reason}")]
    NotReady {
        /// The sandbox.
        id: String,
        /// Why.
        reason: String,
    },
    /// Local I/O on the host (state directory).
    #[error("{context}: {source}")]
    Io {
        /// What the host was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl HostError {
    /// Wraps an I/O error with what the host was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<HostError> for Status {
    fn from(e: HostError) -> Self {
        let msg = e.to_string();
        match e {
            HostError::InvalidArgument(_) => Status::invalid_argument(msg),
            HostError::SandboxNotFound(_) => Status::not_found(msg),
            HostError::TooManySandboxes(_) => Status::resource_exhausted(msg),
            HostError::NotReady { .. } => Status::unavailable(msg),
            HostError::Backend(_) | HostError::Image(_) | HostError::Io { .. } => {
                Status::internal(msg)
            }
        }
    }
}
