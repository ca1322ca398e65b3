//! The host's error type and its mapping onto gRPC status codes (DESIGN.md §3.3).

use tonic::Status;

const MIB: u64 = 1024 * 1024;

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
    /// Creating one more sandbox would promise more memory than the host's budget.
    #[error(
        "memory budget exhausted: {sandboxes} sandboxes hold {} MiB, this one asks {} MiB, the \
         budget is {} MiB: destroy a sandbox, ask for less memory, or start the host with a \
         larger --memory-budget",
        in_use / MIB, requested / MIB, budget / MIB
    )]
    MemoryBudget {
        /// Memory the live sandboxes were given, in bytes.
        in_use: u64,
        /// How many live sandboxes.
        sandboxes: usize,
        /// Memory asked for, in bytes.
        requested: u64,
        /// The budget, in bytes.
        budget: u64,
    },
    /// The host's disk has too little room for another workspace.
    #[error(
        "the host's disk holding {path} has {} MiB free, too little for another {} MiB \
         workspace and a {} MiB reserve: free disk space, destroy sandboxes, or start the host \
         with a smaller --workspace-size",
        free / MIB, needed / MIB, reserve / MIB
    )]
    HostDisk {
        /// The state directory.
        path: String,
        /// Free bytes.
        free: u64,
        /// Workspace size.
        needed: u64,
        /// Bytes kept free for the host.
        reserve: u64,
    },
    /// The sandbox's daemon or container died.
    #[error("sandbox {id} is dead ({reason}): destroy it and create a new one")]
    Dead {
        /// The sandbox.
        id: String,
        /// What happened.
        reason: String,
    },
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
            HostError::TooManySandboxes(_)
            | HostError::MemoryBudget { .. }
            | HostError::HostDisk { .. } => Status::resource_exhausted(msg),
            HostError::Dead { .. } => Status::failed_precondition(msg),
            HostError::NotReady { .. } => Status::unavailable(msg),
            HostError::Backend(_) | HostError::Image(_) | HostError::Io { .. } => {
                Status::internal(msg)
            }
        }
    }
}
