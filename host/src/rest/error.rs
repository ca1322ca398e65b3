//! REST errors: `{"error": "...", "code": "..."}` with the §3.2 codes and HTTP statuses.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use tonic::Code;

use super::api::ErrorBody;

/// An error as the REST API reports it.
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl RestError {
    /// 400 BAD_REQUEST.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    /// 404 CONTEXT_NOT_FOUND, in the specification's words.
    pub fn context_not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "CONTEXT_NOT_FOUND",
            message: "Context not found".into(),
        }
    }

    /// 408 TIMEOUT.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "TIMEOUT",
            message: message.into(),
        }
    }

    /// 500 INTERNAL.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL",
            message: message.into(),
        }
    }

    /// 401 for missing or wrong credentials.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "UNAUTHORIZED",
            message: "missing or wrong credentials: use HTTP Basic authentication".into(),
        }
    }

    /// 404 for a path the API does not have.
    pub fn not_found_route() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "NOT_FOUND",
            message: "no such endpoint: see /api/v1/openapi.json".into(),
        }
    }

    /// Maps a status from the host or a sandbox onto the REST codes.
    pub fn from_status(s: &tonic::Status) -> Self {
        let message = s.message().to_owned();
        if deadline_passed(s) {
            return Self::timeout(format!(
                "the sandbox did not answer within the call's deadline ({message}): it may be \
                 overloaded or stopped; retry, or delete the context"
            ));
        }
        match s.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                Self::bad_request(message)
            }
            Code::NotFound => Self::context_not_found(),
            Code::DeadlineExceeded => Self::timeout(message),
            Code::ResourceExhausted => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "RESOURCE_EXHAUSTED",
                message,
            },
            Code::PermissionDenied => Self {
                status: StatusCode::FORBIDDEN,
                code: "PERMISSION_DENIED",
                message,
            },
            Code::Unavailable => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "INTERNAL",
                message,
            },
            _ => Self::internal(message),
        }
    }
}

/// Whether the call's own deadline ran out: tonic reports its client-side deadline as CANCELLED
/// with a `TimeoutExpired` source, not as DEADLINE_EXCEEDED.
fn deadline_passed(s: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl From<crate::error::HostError> for RestError {
    fn from(e: crate::error::HostError) -> Self {
        Self::from_status(&tonic::Status::from(e))
    }
}

impl RestError {
    /// The message, as the body's `error` shows it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body: `{"error": "...", "code": "..."}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            code: self.code.to_owned(),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"agent-runtime\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_deadline_is_a_timeout() {
        let s = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(s.code(), Code::Cancelled);
        assert_eq!(RestError::from_status(&s).code, "TIMEOUT");
        assert_eq!(
            RestError::from_status(&tonic::Status::cancelled("client went away")).code,
            "INTERNAL"
        );
        assert_eq!(
            RestError::from_status(&tonic::Status::deadline_exceeded("slow")).code,
            "TIMEOUT"
        );
    }
}
