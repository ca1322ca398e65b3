//! The error codes front ends report (DESIGN.md §3.2, §3.3) and the one table that maps a gRPC
//! status onto them. Messages and HTTP statuses stay with each front end; the code is decided
//! here.

use tonic::{Code, Status};

use agent_runtime_proto::closed_set;

closed_set!(
    /// An error code as MCP results and REST bodies carry it (`"code": "TIMEOUT"`).
    ErrorCode, "error code" {
        /// The arguments cannot work (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE).
        BadRequest = "BAD_REQUEST",
        /// Something named does not exist (NOT_FOUND).
        NotFound = "NOT_FOUND",
        /// The context named does not exist (NOT_FOUND of a context call).
        ContextNotFound = "CONTEXT_NOT_FOUND",
        /// The call ran out of time (DEADLINE_EXCEEDED, or the client's own deadline).
        Timeout = "TIMEOUT",
        /// A limit was reached: the host's cap, the pool, a size (RESOURCE_EXHAUSTED).
        ResourceExhausted = "RESOURCE_EXHAUSTED",
        /// Policy or credentials refused it (PERMISSION_DENIED, UNAUTHENTICATED).
        PermissionDenied = "PERMISSION_DENIED",
        /// A front end's own credentials check failed (REST Basic auth); no gRPC status maps
        /// here.
        Unauthorized = "UNAUTHORIZED",
        /// The sandbox does not offer this call (UNIMPLEMENTED).
        Unimplemented = "UNIMPLEMENTED",
        /// A front end could not reach the host at all; no gRPC status maps here.
        Unavailable = "UNAVAILABLE",
        /// Anything else, UNAVAILABLE and a plain CANCELLED included.
        Internal = "INTERNAL",
    }
);

impl ErrorCode {
    /// The code of a failed call: the one status → code table of every front end.
    pub fn from_status(status: &Status) -> Self {
        if deadline_passed(status) {
            return Self::Timeout;
        }
        match status.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => Self::BadRequest,
            Code::NotFound => Self::NotFound,
            Code::DeadlineExceeded => Self::Timeout,
            Code::ResourceExhausted => Self::ResourceExhausted,
            Code::PermissionDenied | Code::Unauthenticated => Self::PermissionDenied,
            Code::Unimplemented => Self::Unimplemented,
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::AlreadyExists
            | Code::Aborted
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss => Self::Internal,
        }
    }

    /// The code of a failed call about one context: NOT_FOUND becomes CONTEXT_NOT_FOUND.
    pub fn from_context_status(status: &Status) -> Self {
        Self::from_status(status).for_context()
    }

    /// This code for a call about one context: NOT_FOUND becomes CONTEXT_NOT_FOUND.
    pub fn for_context(self) -> Self {
        match self {
            Self::NotFound => Self::ContextNotFound,
            other => other,
        }
    }
}

/// Whether the call's own deadline ran out: tonic reports its client-side deadline as CANCELLED
/// with a `TimeoutExpired` source, not as DEADLINE_EXCEEDED.
pub fn deadline_passed(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let cases = [
            (Status::invalid_argument("x"), ErrorCode::BadRequest),
            (Status::failed_precondition("x"), ErrorCode::BadRequest),
            (Status::out_of_range("x"), ErrorCode::BadRequest),
            (Status::not_found("x"), ErrorCode::NotFound),
            (Status::deadline_exceeded("x"), ErrorCode::Timeout),
            (
                Status::resource_exhausted("x"),
                ErrorCode::ResourceExhausted,
            ),
            (Status::permission_denied("x"), ErrorCode::PermissionDenied),
            (Status::unauthenticated("x"), ErrorCode::PermissionDenied),
            (Status::unimplemented("x"), ErrorCode::Unimplemented),
            (Status::unavailable("x"), ErrorCode::Internal),
            (Status::cancelled("client went away"), ErrorCode::Internal),
            (Status::internal("x"), ErrorCode::Internal),
            (Status::unknown("x"), ErrorCode::Internal),
        ];
        for (status, code) in cases {
            assert_eq!(ErrorCode::from_status(&status), code, "{status:?}");
        }
    }

    #[test]
    fn a_client_deadline_is_a_timeout() {
        let s = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(s.code(), Code::Cancelled);
        assert!(deadline_passed(&s));
        assert_eq!(ErrorCode::from_status(&s), ErrorCode::Timeout);
        assert!(!deadline_passed(&Status::cancelled("gone")));
    }

    #[test]
    fn context_calls_say_context_not_found() {
        let nf = Status::not_found("no context ctx-1");
        assert_eq!(
            ErrorCode::from_context_status(&nf),
            ErrorCode::ContextNotFound
        );
        assert_eq!(
            ErrorCode::from_context_status(&Status::internal("x")),
            ErrorCode::Internal
        );
    }

    #[test]
    fn wire_names_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(c.as_str().parse::<ErrorCode>().ok(), Some(*c));
            let json = serde_json::to_string(c).ok();
            assert_eq!(json, Some(format!("\"{}\"", c.as_str())));
        }
        assert!("NOPE".parse::<ErrorCode>().is_err());
    }
}
