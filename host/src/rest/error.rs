//! REST errors: `{"error": "...", "code": "..."}`. The code of a failed call comes from the
//! client layer's one status table ([`ErrorCode::from_status`]); this file adds only the HTTP
//! status of each code and REST's own messages.

use agent_runtime_client::{deadline_passed, ErrorCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;

use super::api::ErrorBody;

/// An error as the REST API reports it.
#[derive(Debug)]
pub struct RestError {
    code: ErrorCode,
    message: String,
}

/// The HTTP status of each code.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound | ErrorCode::ContextNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl RestError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// 400 BAD_REQUEST.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 404 CONTEXT_NOT_FOUND, in the specification's words.
    pub fn context_not_found() -> Self {
        Self::new(ErrorCode::ContextNotFound, "Context not found")
    }

    /// 408 TIMEOUT.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Timeout, message)
    }

    /// 401 for missing or wrong credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "missing or wrong credentials: use HTTP Basic authentication",
        )
    }

    /// 404 for a path the API does not have.
    pub fn not_found_route() -> Self {
        Self::new(
            ErrorCode::NotFound,
            "no such endpoint: see /api/v1/openapi.json",
        )
    }

    /// A failed call about a context, from the host or its sandbox.
    pub fn from_status(s: &tonic::Status) -> Self {
        let message = s.message();
        match ErrorCode::from_context_status(s) {
            ErrorCode::ContextNotFound => Self::context_not_found(),
            ErrorCode::Timeout if deadline_passed(s) => Self::timeout(format!(
                "the sandbox did not answer within the call's deadline ({message}): it may be \
                 overloaded or stopped; retry, or delete the context"
            )),
            code => Self::new(code, message),
        }
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message, as the body's `error` shows it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body: `{"error": "...", "code": "..."}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            code: self.code,
        }
    }
}

impl From<crate::error::HostError> for RestError {
    fn from(e: crate::error::HostError) -> Self {
        Self::from_status(&tonic::Status::from(e))
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let status = http_status(self.code);
        let mut resp = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
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
        assert_eq!(s.code(), tonic::Code::Cancelled);
        assert_eq!(RestError::from_status(&s).code, ErrorCode::Timeout);
        assert_eq!(
            RestError::from_status(&tonic::Status::cancelled("client went away")).code,
            ErrorCode::Internal
        );
        assert_eq!(
            RestError::from_status(&tonic::Status::deadline_exceeded("slow")).code,
            ErrorCode::Timeout
        );
    }

    #[test]
    fn a_missing_context_is_named_in_the_specification_s_words() {
        let e = RestError::from_status(&tonic::Status::not_found("context ctx-1 not found"));
        assert_eq!(
            serde_json::to_value(e.body()).ok(),
            Some(serde_json::json!({"error": "Context not found", "code": "CONTEXT_NOT_FOUND"}))
        );
        assert_eq!(http_status(e.code), StatusCode::NOT_FOUND);
    }
}
