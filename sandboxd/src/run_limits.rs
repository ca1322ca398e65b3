//! The limits every run shares, one-shot (`exec`) or a cell in a context (`contexts`): how long it
//! may take, and how much of its output reaches the caller (the rest is counted, not kept).

use std::time::Duration;

use crate::error::{Error, Result};

/// Timeout when the request gives none.
pub const DEFAULT_TIMEOUT: Duration = agent_runtime_proto::limits::DEFAULT_RUN_TIMEOUT;
/// Per-stream output cap when the request gives none.
pub const DEFAULT_MAX_OUTPUT: u64 = 10 * 1024 * 1024;

/// A request's timeout: the protocol's one check (0 is the default, at most 3600 s).
pub(crate) fn timeout_from(seconds: f64) -> Result<Duration> {
    agent_runtime_proto::limits::run_timeout(seconds)
        .map_err(|e| Error::invalid(format!("timeout_seconds: {e}")))
}

/// One output stream's accounting against its cap: what the program wrote, what the caller got.
#[derive(Debug)]
pub(crate) struct OutputCap {
    cap: u64,
    /// Bytes the program wrote.
    total: u64,
    /// Bytes forwarded to the caller.
    sent: u64,
}

impl OutputCap {
    /// Nothing written yet; at most `cap` bytes will be forwarded.
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            cap,
            total: 0,
            sent: 0,
        }
    }

    /// Counts `bytes` just produced and returns the part that still fits under the cap.
    pub(crate) fn admit(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.total += bytes.len() as u64;
        let room = self.cap.saturating_sub(self.sent);
        let take = (bytes.len() as u64).min(room) as usize;
        self.sent += take as u64;
        (take > 0).then(|| bytes[..take].to_vec())
    }

    /// Bytes the program wrote, kept or not.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// True when some output was dropped.
    pub(crate) fn truncated(&self) -> bool {
        self.total > self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_default_and_are_bounded() {
        assert_eq!(timeout_from(0.0).ok(), Some(DEFAULT_TIMEOUT));
        assert_eq!(timeout_from(1.5).ok(), Some(Duration::from_millis(1500)));
        assert!(timeout_from(-1.0).is_err());
        assert!(timeout_from(3600.5).is_err());
        assert!(timeout_from(f64::NAN).is_err());
    }

    #[test]
    fn output_past_the_cap_is_counted_not_kept() {
        let mut out = OutputCap::new(10);
        assert_eq!(out.admit(&[b'x'; 6]).map(|b| b.len()), Some(6));
        assert_eq!(out.admit(&[b'y'; 6]), Some(vec![b'y'; 4]));
        assert_eq!(out.admit(&[b'z'; 6]), None);
        assert_eq!((out.total(), out.sent, out.truncated()), (18, 10, true));
        assert!(!OutputCap::new(10).truncated());
    }
}
