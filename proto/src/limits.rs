//! The one check of a run's timeout (Exec, RunCode; MCP `code_run`/`run_code`, REST execute):
//! 0 means the default, 30 s; at most an hour. sandboxd enforces it and clients check it with the
//! same function before they call, so both say the same thing.

use std::time::Duration;

/// Timeout of a run when the caller gives none (or 0).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest timeout a run may ask for.
pub const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// A run timeout outside 0 (the default) to the maximum.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error(
    "timeout must be between 0 (meaning the default, {} s) and {} seconds, got {got}",
    DEFAULT_RUN_TIMEOUT.as_secs(),
    MAX_RUN_TIMEOUT.as_secs()
)]
pub struct BadRunTimeout {
    /// What was given, in seconds.
    pub got: f64,
}

/// Checks a run timeout in seconds: 0 is the default, anything else must be finite, positive and
/// at most [`MAX_RUN_TIMEOUT`]. Returns the timeout the run gets.
pub fn run_timeout(seconds: f64) -> Result<Duration, BadRunTimeout> {
    if seconds == 0.0 {
        return Ok(DEFAULT_RUN_TIMEOUT);
    }
    if !seconds.is_finite() || seconds < 0.0 || seconds > MAX_RUN_TIMEOUT.as_secs_f64() {
        return Err(BadRunTimeout { got: seconds });
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_the_default_and_the_range_is_bounded() {
        assert_eq!(run_timeout(0.0), Ok(DEFAULT_RUN_TIMEOUT));
        assert_eq!(run_timeout(1.5), Ok(Duration::from_millis(1500)));
        assert_eq!(run_timeout(3600.0), Ok(MAX_RUN_TIMEOUT));
        for bad in [-1.0, 3600.5, f64::NAN, f64::INFINITY] {
            assert!(run_timeout(bad).is_err(), "{bad}");
        }
        let msg = run_timeout(7200.0).expect_err("too long").to_string();
        assert!(msg.contains("between 0") && msg.contains("3600"), "{msg}");
    }
}
