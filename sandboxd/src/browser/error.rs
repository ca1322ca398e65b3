//! What a browser call can fail with, in words an agent can act on. Every reading of a
//! Playwright message happens here, so a driver upgrade that rewords one breaks a test here.

use std::collections::HashMap;
use std::time::Instant;

use crate::egress::{recent_denials, Denials};

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
    /// The page navigated (or fell to Chromium's error page after a failed load) while the call
    /// ran, taking the call's document with it.
    #[error(
        "{0}: the page navigated while the call ran (after a page that did not load, Chromium \
         shows its error page for a moment); retry the call, with a new snapshot if it used a ref"
    )]
    Navigating(String),
    /// The sandbox's egress policy refused the page: the host's reason, word for word.
    #[error("{0}")]
    Denied(String),
    /// The element cannot take the action now (hidden, disabled, read-only, covered): which
    /// element, why, and what to do.
    #[error("{0}")]
    NotActionable(String),
    /// Anything Playwright reported.
    #[error("{0}")]
    Playwright(String),
}

/// What Playwright says when the browser, its page or its driver is gone.
const CRASHED: [&str; 5] = [
    "Target crashed",
    "Browser has been closed",
    "browser has disconnected",
    "Target page, context or browser has been closed",
    "Channel closed",
];
/// Chromium's prefix for a page that did not load (`net::ERR_CONNECTION_REFUSED`).
const NET_ERROR: &str = "net::ERR_";
/// Chromium's errors for a proxy that refused or failed a request: a CONNECT answered with
/// anything but 200 (the host's 403, sandboxd's 503), or no proxy at all.
const PROXY_FAILURES: [&str; 3] = [
    "net::ERR_TUNNEL_CONNECTION_FAILED",
    "net::ERR_PROXY_",
    "net::ERR_HTTPS_PROXY_",
];
/// The header the host's egress proxy sets on the 403 of a refusal (plain-HTTP requests, where
/// Chromium shows the proxy's answer as the page).
const EGRESS_HEADER: &str = "x-agent-runtime-egress";
/// The reason when the host's own words are not at hand.
const POLICY: &str = "blocked by the sandbox's egress policy";
/// A key name Playwright does not know.
const UNKNOWN_KEY: &str = "Unknown key";
/// The page or its context closed while a script ran (not a fault of the script).
const CLOSED: &str = "has been closed";
/// Fill on an element that is not an input, textarea or contenteditable.
const NOT_FILLABLE: &str = "not an <input>";
/// The call-log line naming the element that covers the target.
const COVERED: &str = "intercepts pointer events";
/// A navigation replaced the document a call was working in.
const NAVIGATED: [&str; 2] = [
    "Execution context was destroyed",
    "interrupted by another navigation",
];

impl BrowserError {
    /// An invalid-argument error from anything printable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// When this error says the browser crashed or was closed: the error the caller gets instead,
    /// saying that the next call starts it anew (the caller marks it for that restart).
    pub(super) fn as_crash(&self) -> Option<Self> {
        match self {
            Self::Playwright(m) if CRASHED.iter().any(|d| m.contains(d)) => {
                Some(Self::Playwright(format!(
                    "{m}; the browser crashed or was closed: the next browser call starts it anew"
                )))
            }
            _ => None,
        }
    }

    /// True when a page did not load (a network error: Chromium then shows its error page).
    pub(super) fn is_load_failure(&self) -> bool {
        matches!(self, Self::Playwright(m) if m.contains(NET_ERROR))
    }

    /// A failed goto: a network error is the caller's and says what does load.
    pub(super) fn for_goto(self, url: &str) -> Self {
        match self {
            Self::Playwright(m) if m.contains(NET_ERROR) => Self::invalid(format!(
                "{url} did not load ({}); a sandbox reaches the web only through the host's \
                 egress proxy, and only the sites its policy allows (none by default); pages \
                 served inside the sandbox on 127.0.0.1 and file:// paths always load",
                m.split_whitespace()
                    .find(|w| w.starts_with(NET_ERROR))
                    .unwrap_or("network error")
            )),
            other => other,
        }
    }

    /// A navigation (to `url`, or the URL the message names) that failed at the egress proxy
    /// because the policy refused it: [`BrowserError::Denied`] with the host's reason, from the
    /// refusals the host reported for that host name or, failing that, since `since` (a redirect
    /// to a refused site fails under the first URL's name).
    pub(super) fn for_policy(self, url: &str, since: Instant) -> Self {
        self.for_policy_in(url, since, recent_denials())
    }

    fn for_policy_in(self, url: &str, since: Instant, denials: &Denials) -> Self {
        match &self {
            Self::Playwright(m) if PROXY_FAILURES.iter().any(|p| m.contains(p)) => {
                let url = url_in(m).unwrap_or(url);
                host_of(url)
                    .and_then(|host| denials.reason_for(&host))
                    .or_else(|| denials.reason_since(since))
                    .map_or(self, Self::Denied)
            }
            _ => self,
        }
    }

    /// A failed key press: an unknown key name is the caller's, with the names that work.
    pub(super) fn for_press(self) -> Self {
        match self {
            Self::Playwright(m) if m.contains(UNKNOWN_KEY) => Self::invalid(format!(
                "{m}; use Playwright key names such as Enter, Tab, ArrowDown, Escape, Backspace, \
                 Control+a"
            )),
            other => other,
        }
    }

    /// A failed evaluate: the script's own error is the caller's, without our wrapper's stack; a
    /// page that closed meanwhile stays the browser's.
    pub(super) fn for_script(self) -> Self {
        match self {
            Self::Playwright(m) if !m.contains(CLOSED) => {
                let head = m.split(" at ").next().unwrap_or(&m).trim().to_string();
                Self::invalid(format!("the script failed: {head}"))
            }
            other => other,
        }
    }

    /// True when a page is the egress proxy's refusal: a 403 with the host's header.
    pub(super) fn is_refusal(status: u16, headers: &HashMap<String, String>) -> bool {
        status == 403
            && headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(EGRESS_HEADER) && v.trim() == "denied")
    }

    /// The refusal of `url` by the egress proxy, whose page said `body`: the host's reason, from
    /// its recent refusals or else the page's first line.
    pub(super) fn refused(url: &str, body: &str) -> Self {
        Self::refused_in(url, body, recent_denials())
    }

    fn refused_in(url: &str, body: &str, denials: &Denials) -> Self {
        let line = body.lines().next().unwrap_or("").trim();
        let reason = host_of(url)
            .and_then(|host| denials.reason_for(&host))
            .or_else(|| (!line.is_empty()).then(|| line.chars().take(1024).collect()))
            .unwrap_or_else(|| POLICY.to_string());
        Self::Denied(reason)
    }
}

/// The URL a Chromium network error names (`net::ERR_X at https://a.test/`).
fn url_in(message: &str) -> Option<&str> {
    let at = message.find(NET_ERROR)?;
    let mut words = message[at..].split_whitespace();
    words.find(|w| *w == "at")?;
    words.next()
}

/// The host name of a URL.
fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok()?.host_str().map(str::to_string)
}

impl BrowserError {
    /// The same error with Playwright's internal element names (`aria-ref=e14`), which the agent
    /// never saw, replaced by the ref it gave.
    pub(super) fn naming(self, agent_ref: Option<&str>) -> Self {
        let Some(id) = agent_ref else { return self };
        let rename = |m: String| rename_aria_refs(&m, id);
        match self {
            Self::Timeout(m) => Self::Timeout(rename(m)),
            Self::Playwright(m) => Self::Playwright(rename(m)),
            Self::Navigating(m) => Self::Navigating(rename(m)),
            other => other,
        }
    }
}

/// `message` with every `aria-ref=<name>` and `agent-runtime-el=<key>` (in any quoting)
/// replaced by `id`.
fn rename_aria_refs(message: &str, id: &str) -> String {
    ["aria-ref=", "agent-runtime-el="]
        .iter()
        .fold(message.to_string(), |m, mark| rename_one(&m, mark, id))
}

/// `message` with every `<mark><name>` replaced by `id`.
fn rename_one(message: &str, mark: &str, id: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(mark) {
        out.push_str(&rest[..at]);
        let after = &rest[at + mark.len()..];
        let end = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        out.push_str(id);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// True when a fill failed because the element takes no text that way (a button, a custom
/// widget): typing after a click is the fallback.
pub(super) fn cannot_fill(message: &str) -> bool {
    message.contains(NOT_FILLABLE)
}

impl From<playwright_rs::Error> for BrowserError {
    fn from(err: playwright_rs::Error) -> Self {
        let full = err.to_string();
        let mut text = tidy(&full);
        // Playwright retries until the timeout when another element covers the target; its
        // call log names that element, which is what the agent needs to know.
        if let Some(cover) = full.lines().find(|l| l.contains(COVERED)) {
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
            // A closed page is a crash or a closed tab (see `as_crash`), not a navigation.
            _ if NAVIGATED.iter().any(|n| text.contains(n)) && !text.contains(CLOSED) => {
                Self::Navigating(text)
            }
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
        // A JavaScript stack (`    at Frame._… (/opt/…/frames.js:12:3)`) tells an agent nothing.
        .filter(|l| !l.trim_start().starts_with("at "))
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
            BrowserError::StaleRef(_)
            | BrowserError::NoDialog
            | BrowserError::DialogOpen
            | BrowserError::Navigating(_)
            | BrowserError::NotActionable(_) => tonic::Status::failed_precondition(message),
            BrowserError::Timeout(_) => tonic::Status::deadline_exceeded(message),
            BrowserError::Launch(_) => tonic::Status::unavailable(message),
            BrowserError::Denied(_) => tonic::Status::permission_denied(message),
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
    fn playwright_element_names_become_the_agents_ref() {
        let e = BrowserError::Timeout(
            "locator.click: Timeout 5000ms exceeded. waiting for locator('aria-ref=f1e14')".into(),
        );
        assert_eq!(
            e.naming(Some("ref_7")).to_string(),
            "locator.click: Timeout 5000ms exceeded. waiting for locator('ref_7')"
        );
        let e = BrowserError::Playwright("[selector: aria-ref=e3]".into());
        assert_eq!(e.naming(None).to_string(), "[selector: aria-ref=e3]");
        // The page scan's keys too.
        let e = BrowserError::Playwright(
            "waiting for locator('agent-runtime-el=k12') and aria-ref=e3".into(),
        );
        assert_eq!(
            e.naming(Some("ref_2")).to_string(),
            "waiting for locator('ref_2') and ref_2"
        );
    }

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

    /// A Playwright error as the driver reports a failed call.
    fn server_error(message: &str) -> BrowserError {
        playwright_rs::Error::ServerError(message.into()).into()
    }

    /// The message of an invalid-argument error, or a note of what it was instead.
    fn invalid_text(err: &BrowserError) -> String {
        match err {
            BrowserError::InvalidArgument(m) => m.clone(),
            other => format!("not InvalidArgument: {other:?}"),
        }
    }

    #[test]
    fn timeouts_are_found_in_the_message_too() {
        let b = server_error("page.goto: Timeout 30000ms exceeded.\nCall log:\n  - navigating");
        assert!(
            matches!(&b, BrowserError::Timeout(m) if m == "page.goto: Timeout 30000ms exceeded."),
            "{b:?}"
        );
        let s: tonic::Status = b.into();
        assert_eq!(s.code(), tonic::Code::DeadlineExceeded);
        assert!(matches!(
            server_error("locator.click: Element is detached"),
            BrowserError::Playwright(m) if m == "locator.click: Element is detached"
        ));
    }

    #[test]
    fn every_crash_message_marks_a_restart() {
        for message in [
            "page.goto: Target crashed",
            "browserContext.newPage: Browser has been closed",
            "browser has disconnected",
            "locator.click: Target page, context or browser has been closed",
        ] {
            let crashed = server_error(message).as_crash().map(|e| e.to_string());
            let crashed = crashed.unwrap_or_default();
            assert!(crashed.starts_with(message), "{message}: {crashed}");
            assert!(
                crashed.ends_with("the next browser call starts it anew"),
                "{crashed}"
            );
        }
        let closed: BrowserError = playwright_rs::Error::ChannelClosed.into();
        assert!(closed.as_crash().is_some(), "{closed:?}");
        let detached = server_error("locator.click: Element is detached");
        assert!(detached.as_crash().is_none());
        assert!(BrowserError::Timeout("Target crashed".into())
            .as_crash()
            .is_none());
    }

    #[test]
    fn a_page_that_did_not_load_is_the_callers_and_says_what_loads() {
        let b = server_error("page.goto: net::ERR_CONNECTION_REFUSED at http://example.com/")
            .for_goto("http://example.com/");
        let m = invalid_text(&b);
        assert!(
            m.starts_with(
                "http://example.com/ did not load (net::ERR_CONNECTION_REFUSED); a sandbox \
                 reaches the web only through the host's egress proxy"
            ),
            "{m}"
        );
        assert!(matches!(
            server_error("page.goto: Target crashed").for_goto("http://x/"),
            BrowserError::Playwright(_)
        ));
    }

    #[test]
    fn a_navigation_under_a_call_says_to_retry_without_a_stack() {
        let err = server_error(
            "Execution context was destroyed, most likely because of a navigation\n    at \
             Frame._evaluate (/opt/playwright-driver/package/lib/server/frames.js:12:3)\n    at \
             async Page.click (/opt/x.js:1:1)",
        );
        assert!(matches!(err, BrowserError::Navigating(_)), "{err:?}");
        let m = err.to_string();
        assert!(!m.contains("frames.js") && !m.contains(" at "), "{m}");
        assert!(m.contains("retry the call"), "{m}");
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::FailedPrecondition
        );
        let interrupted = server_error(
            "page.goto: Navigation to \"file:///x\" is interrupted by another navigation to \
             \"chrome-error://chromewebdata/\"",
        );
        assert!(
            matches!(interrupted, BrowserError::Navigating(_)),
            "{interrupted:?}"
        );
        // A page that closed is a crash or a closed tab, not a navigation.
        assert!(matches!(
            server_error("Execution context was destroyed: Target page has been closed"),
            BrowserError::Playwright(_)
        ));
    }

    #[test]
    fn unknown_keys_are_the_callers_and_name_the_keys_that_work() {
        let m = invalid_text(&server_error("keyboard.press: Unknown key: \"Entr\"").for_press());
        assert!(
            m.starts_with("keyboard.press: Unknown key: \"Entr\"; use Playwright key names"),
            "{m}"
        );
        assert!(m.contains("Enter, Tab, ArrowDown"), "{m}");
        assert!(matches!(
            BrowserError::NoDialog.for_press(),
            BrowserError::NoDialog
        ));
    }

    #[test]
    fn script_errors_are_the_callers_without_our_stack() {
        let b = server_error("ReferenceError: nope is not defined at eval (eval at <anonymous>)");
        let m = invalid_text(&b.for_script());
        assert_eq!(m, "the script failed: ReferenceError: nope is not defined");
        let closed = server_error("Execution context was destroyed: Target page has been closed");
        assert!(matches!(closed.for_script(), BrowserError::Playwright(_)));
    }

    #[test]
    fn only_elements_that_take_no_fill_fall_back_to_typing() {
        assert!(cannot_fill(
            "locator.fill: Error: Element is not an <input>, <textarea> or [contenteditable] element"
        ));
        assert!(!cannot_fill("locator.fill: Timeout 5000ms exceeded."));
    }

    #[test]
    fn each_error_has_its_status_code() {
        let codes = [
            (BrowserError::invalid("x"), tonic::Code::InvalidArgument),
            (
                BrowserError::UnknownRef("ref_9".into()),
                tonic::Code::NotFound,
            ),
            (
                BrowserError::NoMatch {
                    selector: "#a".into(),
                    waited_ms: 5000,
                },
                tonic::Code::NotFound,
            ),
            (
                BrowserError::StaleRef("ref_1".into()),
                tonic::Code::FailedPrecondition,
            ),
            (BrowserError::DialogOpen, tonic::Code::FailedPrecondition),
            (BrowserError::NoDialog, tonic::Code::FailedPrecondition),
            (
                BrowserError::Timeout("t".into()),
                tonic::Code::DeadlineExceeded,
            ),
            (BrowserError::Launch("l".into()), tonic::Code::Unavailable),
            (
                BrowserError::Denied("d".into()),
                tonic::Code::PermissionDenied,
            ),
            (BrowserError::Playwright("p".into()), tonic::Code::Internal),
        ];
        for (err, code) in codes {
            assert_eq!(tonic::Status::from(err).code(), code);
        }
    }

    const REASON: &str =
        "blocked by the sandbox's egress policy: evil.test is not in allow_domains [allowed.test]";

    #[test]
    fn a_tunnel_the_policy_refused_says_the_hosts_reason() {
        let denials = Denials::new();
        let since = Instant::now();
        let failed =
            || server_error("page.goto: net::ERR_TUNNEL_CONNECTION_FAILED at https://evil.test/x");
        // No refusal on record: the error stays what it was (and for_goto explains it).
        assert!(matches!(
            failed().for_policy_in("https://evil.test/x", since, &denials),
            BrowserError::Playwright(_)
        ));
        denials.record("evil.test", REASON);
        let b = failed().for_policy_in("https://evil.test/x", since, &denials);
        assert!(
            matches!(&b, BrowserError::Denied(m) if m == REASON),
            "{b:?}"
        );
        let s: tonic::Status = b.into();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert_eq!(s.message(), REASON);
        // A redirect from an allowed site fails under the first URL: the refusal since the
        // navigation started explains it.
        let redirected =
            server_error("page.goto: net::ERR_TUNNEL_CONNECTION_FAILED at https://allowed.test/");
        assert!(matches!(
            redirected.for_policy_in("https://allowed.test/", since, &denials),
            BrowserError::Denied(_)
        ));
        // Errors that are not the proxy's are left alone.
        let refused = server_error("page.goto: net::ERR_CONNECTION_REFUSED at http://evil.test/");
        assert!(matches!(
            refused.for_policy_in("http://evil.test/", since, &denials),
            BrowserError::Playwright(_)
        ));
        assert_eq!(
            url_in("page.goto: net::ERR_PROXY_CONNECTION_FAILED at http://a.test/p?q=1"),
            Some("http://a.test/p?q=1")
        );
    }

    #[test]
    fn a_403_page_from_the_egress_proxy_is_a_refusal() {
        let marked = HashMap::from([("X-Agent-Runtime-Egress".to_string(), "denied".to_string())]);
        assert!(BrowserError::is_refusal(403, &marked));
        // A site's own 403, or the header on another status, is a page like any other.
        assert!(!BrowserError::is_refusal(403, &HashMap::new()));
        assert!(!BrowserError::is_refusal(200, &marked));

        let denials = Denials::new();
        let body = format!("{REASON}\n");
        let b = BrowserError::refused_in("http://evil.test/", &body, &denials);
        assert!(
            matches!(&b, BrowserError::Denied(m) if m == REASON),
            "{b:?}"
        );
        denials.record("evil.test", "from the ring");
        let b = BrowserError::refused_in("http://evil.test/", &body, &denials);
        assert!(
            matches!(&b, BrowserError::Denied(m) if m == "from the ring"),
            "{b:?}"
        );
        let b = BrowserError::refused_in("http://a.test/", "", &denials);
        assert!(
            matches!(&b, BrowserError::Denied(m) if m == POLICY),
            "{b:?}"
        );
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
