//! Optional HTTP Basic authentication for the REST API.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::error::RestError;

/// Expected credentials.
#[derive(Clone)]
pub struct BasicAuth {
    expected: Vec<u8>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BasicAuth(..)")
    }
}

impl BasicAuth {
    /// Parses `USER:PASSWORD`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((user, pass)) if !user.is_empty() && !pass.is_empty() => Ok(Self {
                expected: s.as_bytes().to_vec(),
            }),
            _ => Err("basic auth must be USER:PASSWORD, both non-empty".into()),
        }
    }

    fn accepts(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some(value) = header.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(encoded) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        constant_time_eq(&given, &self.expected)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: passes requests with the right credentials (or all, when none are configured).
pub async fn require(
    State(auth): State<Arc<Option<BasicAuth>>>,
    req: Request,
    next: Next,
) -> Response {
    match auth.as_ref() {
        Some(a) if !a.accepts(req.headers().get(http::header::AUTHORIZATION)) => {
            RestError::unauthorized().into_response()
        }
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_credentials() {
        let a = BasicAuth::parse("ann:s3cret").expect("valid");
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:s3cret")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:wrong")
        );
        assert!(a.accepts(Some(&http::HeaderValue::from_str(&good).expect("ascii"))));
        assert!(!a.accepts(Some(&http::HeaderValue::from_str(&bad).expect("ascii"))));
        assert!(!a.accepts(None));
        assert!(BasicAuth::parse("nopassword").is_err());
        assert!(BasicAuth::parse(":x").is_err());
    }
}
