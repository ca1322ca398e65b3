//! The one check of a run's timeout (Exec, RunCode, MCP `code_run`/`run_code`, REST execute):
//! 0 means the default, 30 s; at most an hour. sandboxd enforces the same bounds.

use std::time::Duration;

use crate::error::ClientError;

/// Timeout of a run when the caller gives none (or 0).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest timeout a run may ask for.
pub const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Checks a run timeout in seconds: 0 is the default, anything else must be finite, positive and
/// at most [`MAX_RUN_TIMEOUT`]. Returns the timeout the run gets.
pub fn run_timeout(seconds: f64) -> Result<Duration, ClientError> {
    if seconds == 0.0 {
        return Ok(DEFAULT_RUN_TIMEOUT);
    }
    if !seconds.is_finite() || seconds < 0.0 || seconds > MAX_RUN_TIMEOUT.as_secs_f64() {
        return Err(ClientError::Timeout {
            got: seconds,
            default: DEFAULT_RUN_TIMEOUT.as_secs(),
            max: MAX_RUN_TIMEOUT.as_secs(),
        });
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_the_default() {
        assert_eq!(run_timeout(0.0), Ok(DEFAULT_RUN_TIMEOUT));
        assert_eq!(run_timeout(-0.0), Ok(DEFAULT_RUN_TIMEOUT));
    }

    #[test]
    fn accepts_the_range() {
        assert_eq!(run_timeout(0.5), Ok(Duration::from_millis(500)));
        assert_eq!(run_timeout(3600.0), Ok(MAX_RUN_TIMEOUT));
    }

    #[test]
    fn refuses_the_rest_with_one_message() {
        for bad in [-1.0, 3600.5, f64::NAN, f64::INFINITY] {
            assert!(run_timeout(bad).is_err(), "{bad}");
        }
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
