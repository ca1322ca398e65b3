//! Recent refusals the host reported alongside the 403 it carried (`EgressFrame.denial`). A
//! browser navigation that failed on one can then say why: through a CONNECT tunnel Chromium
//! sees only `net::ERR_TUNNEL_CONNECTION_FAILED`, never the host's words.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals kept.
pub const KEEP: usize = 64;
/// How long a refusal explains a failure.
pub const FRESH: Duration = Duration::from_secs(60);
/// Longest host name and reason kept (the host sends one line; this only bounds memory).
const MAX_HOST: usize = 255;
const MAX_REASON: usize = 1024;

/// One refusal.
#[derive(Clone, Debug)]
struct Denial {
    host: String,
    reason: String,
    at: Instant,
}

/// A bounded ring of recent refusals, newest last.
#[derive(Debug)]
pub struct Denials(Mutex<VecDeque<Denial>>);

impl Default for Denials {
    fn default() -> Self {
        Self::new()
    }
}

impl Denials {
    /// An empty ring.
    pub const fn new() -> Self {
        Self(Mutex::new(VecDeque::new()))
    }

    /// Records that a connection to `host` was refused for `reason`.
    pub fn record(&self, host: &str, reason: &str) {
        self.record_at(host, reason, Instant::now());
    }

    fn record_at(&self, host: &str, reason: &str, at: Instant) {
        let host = normalize(host);
        let reason = reason.lines().next().unwrap_or("").trim();
        if host.is_empty() || reason.is_empty() {
            return;
        }
        let denial = Denial {
            host: truncate(&host, MAX_HOST),
            reason: truncate(reason, MAX_REASON),
            at,
        };
        let mut ring = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(denial);
    }

    /// The reason of the latest refusal of `host` in the last [`FRESH`] seconds.
    pub fn reason_for(&self, host: &str) -> Option<String> {
        self.reason_at(host, Instant::now())
    }

    /// The reason of the latest refusal recorded at or after `since`, whatever its host.
    pub fn reason_since(&self, since: Instant) -> Option<String> {
        let ring = self.0.lock().unwrap_or_else(|p| p.into_inner());
        ring.back()
            .filter(|d| d.at >= since)
            .map(|d| d.reason.clone())
    }

    fn reason_at(&self, host: &str, now: Instant) -> Option<String> {
        let host = normalize(host);
        let ring = self.0.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter()
            .rev()
            .take_while(|d| now.saturating_duration_since(d.at) <= FRESH)
            .find(|d| d.host == host)
            .map(|d| d.reason.clone())
    }
}

/// The daemon's ring: the Carry pumps write it, the browser reads it.
pub fn recent_denials() -> &'static Denials {
    static RECENT: Denials = Denials::new();
    &RECENT
}

/// Host names compare without case, brackets (`[::1]`) or a final dot.
fn normalize(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REASON: &str =
        "blocked by the sandbox's egress policy: evil.test is not in allow_domains [allowed.test]";

    #[test]
    fn the_latest_fresh_refusal_of_a_host_is_found() {
        let ring = Denials::new();
        let t0 = Instant::now();
        ring.record_at("Evil.Test.", "old reason", t0);
        ring.record_at("evil.test", REASON, t0 + Duration::from_secs(1));
        ring.record_at("other.test", "other", t0 + Duration::from_secs(2));
        let now = t0 + Duration::from_secs(3);
        assert_eq!(ring.reason_at("EVIL.test", now).as_deref(), Some(REASON));
        assert_eq!(ring.reason_at("nowhere.test", now), None);
        // Stale after a minute.
        let later = t0 + Duration::from_secs(62);
        assert_eq!(ring.reason_at("evil.test", later), None);
        assert_eq!(
            ring.reason_at("other.test", later).as_deref(),
            Some("other")
        );
        assert_eq!(
            ring.reason_since(t0 + Duration::from_secs(2)).as_deref(),
            Some("other")
        );
        assert_eq!(ring.reason_since(t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn the_ring_is_bounded_and_keeps_one_line() {
        let ring = Denials::new();
        for i in 0..(KEEP + 10) {
            ring.record(&format!("h{i}.test"), "refused\nsecond line");
        }
        assert_eq!(ring.0.lock().map(|r| r.len()).unwrap_or(0), KEEP);
        assert_eq!(ring.reason_for("h0.test"), None);
        assert_eq!(
            ring.reason_for(&format!("h{}.test", KEEP + 9)).as_deref(),
            Some("refused")
        );
        ring.record("[::1]", "v6");
        assert_eq!(ring.reason_for("::1").as_deref(), Some("v6"));
        ring.record("", "no host");
        ring.record("x.test", "  ");
        assert_eq!(ring.reason_for("x.test"), None);
    }
}
