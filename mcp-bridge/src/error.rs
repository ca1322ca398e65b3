//! Errors of the bridge: host connection failures and tool failures (which become `isError`
//! tool results, never protocol errors).

use tonic::{Code, Status};

/// Finding, starting or reaching the host failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The address in AGENT_RUNTIME_ADDR (or --addr) is not a URL tonic can dial.
    #[error("invalid host address {addr:?}: {reason} (expected e.g. http://127.0.0.1:50051)")]
    BadAddress {
        /// The address given.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// No host answered and starting one was not possible or not allowed.
    #[error("no Agent Runtime host answers at {addr}: {reason}")]
    Unreachable {
        /// The address dialled.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The host the bridge started did not come up.
    #[error(
        "started `agent-runtime serve` but it did not answer at {addr}: {reason} (its log: {log})"
    )]
    SpawnFailed {
        /// The address it should listen on.
        addr: String,
        /// What went wrong.
        reason: String,
        /// Where its log went.
        log: String,
    },
    /// AGENT_RUNTIME_TOKEN holds something that cannot go into a header (the value is not shown).
    #[error("AGENT_RUNTIME_TOKEN is not a valid bearer token: use printable ASCII without spaces")]
    BadToken,
    /// A file the bridge needs (lock, log) could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What the bridge was doing.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a tool call failed; each variant maps to one spec error code.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The context is unknown (the spec fixes this message and code).
    #[error("Context not found")]
    ContextNotFound,
    /// The arguments cannot work; the message says how to fix them.
    #[error("{0}")]
    BadRequest(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The call ran out of time.
    #[error("{0}")]
    Timeout(String),
    /// A limit was reached (per-session sandbox cap, host cap, sizes).
    #[error("{0}")]
    ResourceExhausted(String),
    /// Policy refused it.
    #[error("{0}")]
    PermissionDenied(String),
    /// The sandbox does not offer this call yet.
    #[error("{0}")]
    Unimplemented(String),
    /// The host cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl ToolError {
    /// The spec's error code (DESIGN.md §3.3).
    pub fn code(&self) -> &'static str {
        match self {
            Self::ContextNotFound => "CONTEXT_NOT_FOUND",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Timeout(_) => "TIMEOUT",
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::Unimplemented(_) => "UNIMPLEMENTED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// Maps a gRPC status of call `rpc` (e.g. "BrowserPress") to a message a model can act on.
    pub fn from_status(rpc: &str, status: &Status) -> Self {
        let msg = status.message();
        if deadline_passed(status) {
            return Self::Timeout(format!(
                "{rpc} got no answer within its deadline ({msg}): the sandbox may be overloaded \
                 or stopped; retry with a short code_run, or destroy it and use a new one"
            ));
        }
        match status.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                Self::BadRequest(format!("{msg} (fix the arguments and call again)"))
            }
            Code::NotFound => Self::NotFound(format!(
                "{msg} (check the id or path; file_list and sandbox_list show what exists)"
            )),
            Code::DeadlineExceeded => Self::Timeout(format!(
                "{msg} (it took too long: pass a larger timeout or do less per call)"
            )),
            Code::ResourceExhausted => Self::ResourceExhausted(format!(
                "{msg} (a limit was reached: destroy sandboxes you no longer need or ask for less)"
            )),
            Code::Unauthenticated => Self::PermissionDenied(format!(
                "the Agent Runtime host refused the bridge's credentials ({msg}): start the \
                 bridge with AGENT_RUNTIME_TOKEN set to a token from the host's --token-file"
            )),
            Code::PermissionDenied => Self::PermissionDenied(format!(
                "{msg} (the sandbox policy forbids this; do it another way)"
            )),
            Code::Unimplemented => Self::Unimplemented(format!(
                "{rpc} is not implemented by this sandbox yet ({msg}); use another tool \
                 (e.g. code_run) to reach the goal"
            )),
            Code::Unavailable => Self::Unavailable(format!(
                "the Agent Runtime host is unavailable ({msg}); retry in a few seconds"
            )),
            Code::Cancelled => Self::Internal(format!("{rpc} was cancelled: {msg}")),
            _ => Self::Internal(format!("{rpc} failed: {msg}")),
        }
    }
}

/// Whether the call's own deadline ran out: tonic reports its client-side deadline as CANCELLED
/// with a `TimeoutExpired` source, not as DEADLINE_EXCEEDED.
fn deadline_passed(s: &Status) -> bool {
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl From<HostError> for ToolError {
    fn from(e: HostError) -> Self {
        Self::Unavailable(format!(
            "{e}; make sure Docker runs and `agent-runtime serve` can start, then retry"
        ))
    }
}

/// The bridge could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad host settings.
    #[error(transparent)]
    Host(#[from] HostError),
    /// Flags that cannot work together.
    #[error("{0}")]
    Config(String),
    /// Listening or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What the bridge was doing.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The MCP transport failed.
    #[error("MCP {0}")]
    Mcp(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_deadline_is_a_timeout() {
        let s = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(ToolError::from_status("ReadFile", &s).code(), "TIMEOUT");
        let other = Status::cancelled("client went away");
        assert_eq!(
            ToolError::from_status("ReadFile", &other).code(),
            "INTERNAL"
        );
    }
}
