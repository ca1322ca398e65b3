//! What a browser call can fail with, in words an agent can act on.

/// A browser failure; the message is what the caller reads.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// The request is wrong (no target, both targets, bad key, bad action name, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A ref the browser never handed out.
    #[error(
        "unknown ref {0}: refs come from the latest browser_snapshot; take a new snapshot and use \
         a ref from it"
    )]
    UnknownRef(String),
    /// A ref whose element is gone (the page changed or navigated).
    #[error(
        "ref {0} is stale: its element is no longer on the page (the page changed or navigated); \
         take a new snapshot and use a ref from it"
    )]
    StaleRef(String),
    /// A selector that matches nothing.
    #[error(
        "no element matches selector {selector:?} (waited {waited_ms} ms); take a snapshot to see \
         the page, or use a ref"
    )]
    NoMatch {
        /// The selector given.
        selector: String,
        /// How long it waited for one to appear.
        waited_ms: u64,
    },
    /// The action or navigation did not finish in time.
    #[error("{0}")]
    Timeout(String),
    /// A confirm or prompt blocks the page.
    #[error(
        "a confirm/prompt dialog is open and blocks the page; answer it with browser_dialog first"
    )]
    DialogOpen,
    /// BrowserDialog with no dialog open.
    #[error(
        "no dialog is open; dialogs are reported in the `events` of the call that opened them"
    )]
    NoDialog,
    /// Chromium or its driver could not be started.
    #[error("the browser did not start: {0}")]
    Launch(String),
    /// Anything Playwright reported.
    #[error("{0}")]
    Playwright(String),
}

impl BrowserError {
    /// An invalid-argument error from anything printable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }
}

impl From<playwright_rs::Error> for BrowserError {
    fn from(err: playwright_rs::Error) -> Self {
        let full = err.to_string();
        let mut text = tidy(&full);
        // Playwright retries until the timeout when another element covers the target; its
        // call log names that element, which is what the agent needs to know.
        if let Some(cover) = full
            .lines()
            .find(|l| l.contains("intercepts pointer events"))
        {
            let cover = cover.trim().trim_start_matches("- ").trim();
            text = format!(
                "{text}; {cover}: the element is covered; close or move what covers it, \
                 scroll, or press Enter on the element instead"
            );
        }
        match err {
            playwright_rs::Error::Timeout(_) | playwright_rs::Error::NavigationTimeout { .. } => {
                Self::Timeout(text)
            }
            _ if text.contains("Timeout ") && text.contains("exceeded") => Self::Timeout(text),
            _ => Self::Playwright(text),
        }
    }
}

/// Playwright messages carry a call log after the first lines; keep the useful head.
fn tidy(message: &str) -> String {
    let head: Vec<&str> = message
        .lines()
        .take_while(|l| !l.trim_start().starts_with("Call log:"))
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .collect();
    let text = head
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let text = text
        .trim_start_matches("Server error: ")
        .trim_start_matches("Protocol error: ")
        .to_string();
    if text.chars().count() > 600 {
        text.chars().take(600).collect::<String>() + "…"
    } else {
        text
    }
}

impl From<BrowserError> for tonic::Status {
    fn from(err: BrowserError) -> Self {
        let message = err.to_string();
        match err {
            BrowserError::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            BrowserError::UnknownRef(_) | BrowserError::NoMatch { .. } => {
                tonic::Status::not_found(message)
            }
            BrowserError::StaleRef(_) | BrowserError::NoDialog | BrowserError::DialogOpen => {
                tonic::Status::failed_precondition(message)
            }
            BrowserError::Timeout(_) => tonic::Status::deadline_exceeded(message),
            BrowserError::Launch(_) => tonic::Status::unavailable(message),
            BrowserError::Playwright(_) => tonic::Status::internal(message),
        }
    }
}

/// Result with the browser's error.
pub type Result<T, E = BrowserError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_logs_are_cut_and_whitespace_folded() {
        let m = "Error: locator.click: Target closed\nCall log:\n  - waiting for x\n";
        assert_eq!(tidy(m), "Error: locator.click: Target closed");
    }

    #[test]
    fn covered_elements_are_named() {
        let e = playwright_rs::Error::Timeout(
            "locator.click: Timeout 5000ms exceeded.\nCall log:\n  - <button id=\"two\">TWO</button> intercepts pointer events\n".into(),
        );
        let b: BrowserError = e.into();
        let m = b.to_string();
        assert!(
            m.contains("intercepts pointer events") && m.contains("covered"),
            "{m}"
        );
        assert!(matches!(b, BrowserError::Timeout(_)));
    }

    #[test]
    fn stale_refs_say_what_to_do() {
        let s: tonic::Status = BrowserError::StaleRef("ref_3".into()).into();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(
            s.message().contains("take a new snapshot"),
            "{}",
            s.message()
        );
    }
}
