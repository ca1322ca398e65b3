//! Errors of the bridge: host connection failures and tool failures (which become `isError`
//! tool results, never protocol errors).

use agent_runtime_client::{deadline_passed, ErrorCode};
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
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::ContextNotFound => ErrorCode::ContextNotFound,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::Unimplemented(_) => ErrorCode::Unimplemented,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The code as results carry it (`"TIMEOUT"`).
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The error of `code` with `message` (a code no tool reports is INTERNAL).
    fn with_code(code: ErrorCode, message: String) -> Self {
        match code {
            ErrorCode::ContextNotFound => Self::ContextNotFound,
            ErrorCode::BadRequest => Self::BadRequest(message),
            ErrorCode::NotFound => Self::NotFound(message),
            ErrorCode::Timeout => Self::Timeout(message),
            ErrorCode::ResourceExhausted => Self::ResourceExhausted(message),
            ErrorCode::PermissionDenied => Self::PermissionDenied(message),
            ErrorCode::Unimplemented => Self::Unimplemented(message),
            ErrorCode::Unavailable => Self::Unavailable(message),
            ErrorCode::Unauthorized | ErrorCode::Internal => Self::Internal(message),
        }
    }

    /// A failed call `rpc` (e.g. "BrowserPress"): the code from the one status table
    /// ([`ErrorCode::from_status`]), or UNAVAILABLE when the host itself could not be reached;
    /// the message says what a model can do next.
    pub fn from_status(rpc: &str, status: &Status) -> Self {
        let code = if host_unreachable(status) {
            ErrorCode::Unavailable
        } else {
            ErrorCode::from_status(status)
        };
        Self::with_code(code, message(rpc, code, status))
    }

    /// A failed call about one context: NOT_FOUND is CONTEXT_NOT_FOUND (the context, or its
    /// sandbox, is gone).
    pub fn from_context_status(rpc: &str, status: &Status) -> Self {
        match Self::from_status(rpc, status) {
            e if e.error_code() == ErrorCode::NotFound => Self::ContextNotFound,
            e => e,
        }
    }
}

/// What a failed call's result says: what happened and what to do.
fn message(rpc: &str, code: ErrorCode, status: &Status) -> String {
    let msg = status.message();
    match (code, status.code()) {
        (ErrorCode::Timeout, _) if deadline_passed(status) => format!(
            "{rpc} got no answer within its deadline ({msg}): the sandbox may be overloaded or \
             stopped; retry with a short code_run, or destroy it and use a new one"
        ),
        (ErrorCode::Timeout, _) => {
            format!("{msg} (it took too long: pass a larger timeout or do less per call)")
        }
        (ErrorCode::BadRequest, _) => format!("{msg} (fix the arguments and call again)"),
        (ErrorCode::NotFound, _) => {
            format!("{msg} (check the id or path; file_list and sandbox_list show what exists)")
        }
        (ErrorCode::ResourceExhausted, _) => format!(
            "{msg} (a limit was reached: destroy sandboxes you no longer need or ask for less)"
        ),
        (ErrorCode::PermissionDenied, Code::Unauthenticated) => format!(
            "the Agent Runtime host refused the bridge's credentials ({msg}): start the bridge \
             with AGENT_RUNTIME_TOKEN set to a token from the host's --token-file"
        ),
        (ErrorCode::PermissionDenied, _) => {
            format!("{msg} (the sandbox policy forbids this; do it another way)")
        }
        (ErrorCode::Unimplemented, _) => format!(
            "{rpc} is not implemented by this sandbox yet ({msg}); use another tool (e.g. \
             code_run) to reach the goal"
        ),
        (ErrorCode::Unavailable, _) => {
            format!("the Agent Runtime host is unavailable ({msg}); retry in a few seconds")
        }
        (_, Code::Unavailable) => {
            format!(
                "{rpc} failed: {msg} (it may be starting or restarting; retry in a few seconds)"
            )
        }
        (_, Code::Cancelled) => format!("{rpc} was cancelled: {msg}"),
        _ => format!("{rpc} failed: {msg}"),
    }
}

/// Whether the bridge's own channel failed to reach the host (connection refused, reset): an
/// UNAVAILABLE that tonic made locally from a transport error. The same code arriving from the
/// host (a sandbox not ready) carries no source, and the one table reads it as INTERNAL.
fn host_unreachable(s: &Status) -> bool {
    s.code() == Code::Unavailable && std::error::Error::source(s).is_some()
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
    use agent_runtime_client::Rpc;
    use agent_runtime_proto::v1::PoolStatusRequest;

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

    #[test]
    fn codes_come_from_the_one_table() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Unimplemented,
            Code::Unavailable,
            Code::Internal,
        ] {
            let s = Status::new(code, "x");
            assert_eq!(
                ToolError::from_status("Exec", &s).error_code(),
                ErrorCode::from_status(&s),
                "{code:?}"
            );
        }
        let nf = Status::not_found("no context ctx-1");
        let e = ToolError::from_context_status("run_code", &nf);
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            ("CONTEXT_NOT_FOUND", "Context not found")
        );
    }

    #[tokio::test]
    async fn a_host_that_does_not_answer_is_unavailable() {
        // Nothing listens on port 1: the channel itself fails.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let request = tonic::Request::new(PoolStatusRequest {});
        let status = <PoolStatusRequest as Rpc>::send(channel, request)
            .await
            .err()
            .unwrap_or_else(|| Status::ok("answered"));
        let e = ToolError::from_status("PoolStatus", &status);
        assert_eq!(e.code(), "UNAVAILABLE", "{status:?}");
        assert!(e.to_string().contains("retry in a few seconds"), "{e}");
    }
}
