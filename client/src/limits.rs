//! The run timeout check, shared with sandboxd through the proto crate: 0 means the default
//! (30 s), at most an hour.

use std::time::Duration;

pub use agent_runtime_proto::limits::{DEFAULT_RUN_TIMEOUT, MAX_RUN_TIMEOUT};

use crate::error::ClientError;

/// Checks a run timeout in seconds (see `agent_runtime_proto::limits::run_timeout`).
pub fn run_timeout(seconds: f64) -> Result<Duration, ClientError> {
    agent_runtime_proto::limits::run_timeout(seconds).map_err(ClientError::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_with_the_protocols_one_message() {
        assert_eq!(run_timeout(0.0), Ok(DEFAULT_RUN_TIMEOUT));
        assert_eq!(
            run_timeout(7200.0).map_err(|e| e.to_string()),
            Err(
                "timeout must be between 0 (meaning the default, 30 s) and 3600 seconds, got \
                 7200"
                    .to_owned()
            )
        );
    }
}
