//! Calls that act on the page as a whole: open a URL, go back/forward/reload, scroll, press a key,
//! wait for something, evaluate a script.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_runtime_proto::sets::{NavigateAction, Settled as How};
use agent_runtime_proto::v1 as pb;
use playwright_rs::{GotoOptions, PressOptions, WaitForOptions, WaitForState};

use super::error::{BrowserError, Result};
use super::js;
use super::refs::Target;
use super::session::Browser;
use super::settle::{self, Settled, ACTION_TIMEOUT_MS};

/// Longest wait BrowserWait accepts.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// Default wait for text or a URL.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Largest evaluate result returned, in characters.
const EVALUATE_LIMIT: usize = 200_000;
/// How long an evaluated script may run.
const EVALUATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `goto` waits, after the page loaded, for its reading (see [`Browser::read_ahead`]);
/// the reading goes on after that, for the snapshot.
const READ_WAIT: Duration = Duration::from_secs(2);
/// Chromium's error page, shown after a page that did not load.
const ERROR_PAGE: &str = "chrome-error://**";
/// How long a failed goto waits for the error page to commit.
const ERROR_PAGE_WAIT: Duration = Duration::from_secs(2);
/// URL schemes the browser opens.
const SCHEMES: [&str; 5] = ["http", "https", "file", "about", "data"];

impl Browser {
    /// Opens `url` in the active tab, and starts reading it for the snapshot that usually
    /// follows (see [`Browser::read_ahead`]).
    pub async fn goto(self: &Arc<Self>, req: pb::BrowserGotoRequest) -> Result<pb::BrowserPage> {
        let url = check_url(&req.url)?;
        let timeout = if req.timeout_seconds > 0.0 {
            Duration::from_secs_f64(req.timeout_seconds.min(300.0))
        } else {
            Duration::from_millis(settle::NAVIGATION_TIMEOUT_MS as u64)
        };
        let turn = self.turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let options = GotoOptions::new().timeout(timeout);
        let started = Instant::now();
        let response = match page.goto(&url, Some(options)).await {
            Ok(response) => response,
            Err(e) => {
                let err = self.classify(e);
                if err.is_load_failure() {
                    // Chromium commits its error page just after the failure; once it has, the
                    // next call is not cut short by that navigation.
                    let wait = GotoOptions::new().timeout(ERROR_PAGE_WAIT);
                    let _ = page.wait_for_url(ERROR_PAGE, Some(wait)).await;
                }
                return Err(err.for_policy(&url, started).for_goto(&url));
            }
        };
        if let Some(r) = response.filter(|r| BrowserError::is_refusal(r.status(), r.headers())) {
            let body = r.body().await.unwrap_or_default();
            return Err(BrowserError::refused(
                r.url(),
                &String::from_utf8_lossy(&body),
            ));
        }
        let at = self.location(&page).await;
        drop(turn);
        // The reply waits for the page's reading (as long as READ_WAIT): the snapshot that
        // nearly always comes next is then served at once, and a page that is still being read
        // is never handed over as ready.
        let reading = self.read_ahead();
        let wait = READ_WAIT.min(timeout.saturating_sub(started.elapsed()));
        let _ = tokio::time::timeout(wait, reading).await;
        Ok(pb::BrowserPage {
            url: at.url,
            title: at.title,
            settled: How::Navigation.into(),
            events: self.shared.take_events(),
        })
    }

    /// Back, forward or reload.
    pub async fn navigate(
        &self,
        req: pb::BrowserNavigateRequest,
    ) -> Result<pb::BrowserActionResponse> {
        let action: NavigateAction =
            req.action
                .trim()
                .to_ascii_lowercase()
                .parse()
                .map_err(|_| {
                    BrowserError::invalid(format!(
                        "unknown navigate action {:?}; use back, forward or reload",
                        req.action
                    ))
                })?;
        let turn = self.turn().await?;
        let page = turn.page.clone();
        let (started, at) = (Instant::now(), page.url());
        self.act(turn, async move {
            match action {
                NavigateAction::Back => page.go_back(None).await.map(|_| ()),
                NavigateAction::Forward => page.go_forward(None).await.map(|_| ()),
                NavigateAction::Reload => page.reload(None).await.map(|_| ()),
            }
        })
        .await
        .map_err(|e| e.for_policy(&at, started))
    }

    /// Scrolls an element into view, or the page by (dx, dy).
    pub async fn scroll(&self, req: pb::BrowserScrollRequest) -> Result<pb::BrowserActionResponse> {
        let target = Target::optional(req.target.as_ref())?;
        let turn = self.turn().await?;
        let page = turn.page.clone();
        match target {
            Some(t) => {
                let locator = t.resolve(&turn.page, &turn.state.refs).await?;
                self.act(
                    turn,
                    async move { locator.scroll_into_view_if_needed().await },
                )
                .await
            }
            None => {
                let (dx, dy) = (req.dx, req.dy);
                self.act(turn, async move {
                    page.evaluate::<(i32, i32), ()>(
                        "([dx, dy]) => { if (dx === 0 && dy === 0) dy = Math.round(window.innerHeight * 0.9); window.scrollBy(dx, dy); }",
                        Some(&(dx, dy)),
                    )
                    .await
                })
                .await
            }
        }
    }

    /// Presses a key, on an element or on whatever has focus.
    pub async fn press(&self, req: pb::BrowserPressRequest) -> Result<pb::BrowserActionResponse> {
        let key = req.key.trim().to_string();
        if key.is_empty() {
            return Err(BrowserError::invalid(
                "give a key: \"Enter\", \"Tab\", \"ArrowDown\", \"Escape\", \"Control+a\", a letter, ...",
            ));
        }
        let target = Target::optional(req.target.as_ref())?;
        let turn = self.turn().await?;
        let locator = match &target {
            Some(t) => Some(t.resolve(&turn.page, &turn.state.refs).await?),
            None => None,
        };
        let page = turn.page.clone();
        self.act(turn, async move {
            match locator {
                Some(l) => {
                    let options = PressOptions::builder().timeout(ACTION_TIMEOUT_MS).build();
                    l.press(&key, Some(options)).await
                }
                None => page.keyboard().press(&key, None).await,
            }
        })
        .await
        .map_err(BrowserError::for_press)
    }

    /// Waits for text to appear or go, for the URL, or for a time.
    pub async fn wait(&self, req: pb::BrowserWaitRequest) -> Result<pb::BrowserActionResponse> {
        let given = [
            !req.text.is_empty(),
            !req.text_gone.is_empty(),
            !req.url.is_empty(),
            req.seconds > 0.0,
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(BrowserError::invalid(
                "give exactly one of text, text_gone, url or seconds",
            ));
        }
        let limit = if req.timeout_seconds > 0.0 {
            Duration::from_secs_f64(req.timeout_seconds).min(MAX_WAIT)
        } else {
            DEFAULT_WAIT
        };
        let turn = self.turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        if req.seconds > 0.0 {
            let pause = Duration::from_secs_f64(req.seconds).min(MAX_WAIT);
            return self
                .act(turn, async move {
                    tokio::time::sleep(pause).await;
                    Ok(())
                })
                .await;
        }
        let ms = limit.as_millis() as f64;
        let what;
        let result = if !req.url.is_empty() {
            what = format!("the URL to match {:?}", req.url);
            let pattern = url_pattern(&req.url);
            page.wait_for_url(&pattern, Some(GotoOptions::new().timeout(limit)))
                .await
        } else {
            let (text, state) = if req.text.is_empty() {
                (&req.text_gone, WaitForState::Hidden)
            } else {
                (&req.text, WaitForState::Visible)
            };
            what = if req.text.is_empty() {
                format!("the text {text:?} to disappear")
            } else {
                format!("the text {text:?} to appear")
            };
            let options = WaitForOptions::builder().state(state).timeout(ms).build();
            page.get_by_text(text, false)
                .first()
                .wait_for(Some(options))
                .await
        };
        if let Err(e) = result {
            return Err(match self.classify(e) {
                BrowserError::Timeout(_) => BrowserError::Timeout(format!(
                    "waited {:.1} s for {what}; it did not happen. Take a snapshot to see the page",
                    limit.as_secs_f64()
                )),
                other => other,
            });
        }
        let settled = Settled {
            navigated: false,
            how: settle::dom_settle(&page).await,
            title: None,
        };
        self.respond(&page, settled).await
    }

    /// Evaluates JavaScript in the page (or with an element) and returns the result as JSON.
    pub async fn evaluate(
        &self,
        req: pb::BrowserEvaluateRequest,
    ) -> Result<pb::BrowserEvaluateResponse> {
        let source = req.expression.trim().to_string();
        if source.is_empty() {
            return Err(BrowserError::invalid(
                "give an expression (document.title) or a function (() => location.href)",
            ));
        }
        let target = Target::optional(req.target.as_ref())?;
        let turn = self.turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let run = async {
            match &target {
                Some(t) => {
                    let locator = t.resolve(&turn.page, &turn.state.refs).await?;
                    Ok(locator
                        .evaluate::<String, _>(js::EVALUATE_ELEMENT, Some(&source))
                        .await?)
                }
                None => Ok(page
                    .evaluate::<String, String>(js::EVALUATE_PAGE, Some(&source))
                    .await?),
            }
        };
        let json: String = match tokio::time::timeout(EVALUATE_TIMEOUT, run).await {
            Ok(r) => r.map_err(BrowserError::for_script)?,
            Err(_) => {
                return Err(BrowserError::Timeout(format!(
                    "the script ran longer than {} s; it may still be running in the page",
                    EVALUATE_TIMEOUT.as_secs()
                )))
            }
        };
        if json.chars().count() > EVALUATE_LIMIT {
            return Err(BrowserError::invalid(format!(
                "the result is {} characters, over the {EVALUATE_LIMIT} limit; return less \
                 (e.g. slice it, or pick fields)",
                json.chars().count()
            )));
        }
        let at = self.location(&page).await;
        drop(turn);
        Ok(pb::BrowserEvaluateResponse {
            result_json: json,
            url: at.url,
            title: at.title,
            events: self.shared.take_events(),
        })
    }
}

/// Checks a URL and fills in a scheme for bare hosts and absolute paths.
pub(super) fn check_url(raw: &str) -> Result<String> {
    let url = raw.trim();
    if url.is_empty() {
        return Err(BrowserError::invalid("give a url"));
    }
    // `name:rest` is a scheme unless `rest` starts with a port (`localhost:8000/x`).
    let has_scheme = url.split_once(':').is_some_and(|(scheme, rest)| {
        scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && !rest.starts_with(|c: char| c.is_ascii_digit())
    });
    let url = if url.starts_with('/') {
        format!("file://{url}")
    } else if !has_scheme {
        format!("http://{url}")
    } else {
        url.to_string()
    };
    let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
    if !SCHEMES.contains(&scheme.as_str()) {
        return Err(BrowserError::invalid(format!(
            "cannot open {scheme}: URLs; use http(s)://, file://, about: or data:"
        )));
    }
    Ok(url)
}

/// A URL to wait for: a glob as given, or any URL containing the text.
fn url_pattern(raw: &str) -> String {
    if raw.contains('*') || raw.contains("://") {
        raw.to_string()
    } else {
        format!("**{raw}**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_completed() {
        assert_eq!(
            check_url("/workspace/a.html").expect("file"),
            "file:///workspace/a.html"
        );
        assert_eq!(
            check_url("127.0.0.1:8000").expect("bare"),
            "http://127.0.0.1:8000"
        );
        assert_eq!(check_url("about:blank").expect("about"), "about:blank");
        assert!(check_url("javascript:alert(1)").is_err());
        assert!(check_url("chrome://settings").is_err());
        assert_eq!(
            check_url("localhost:8000/x").expect("port"),
            "http://localhost:8000/x"
        );
        assert!(check_url("  ").is_err());
    }

    #[test]
    fn url_waits_match_substrings_or_globs() {
        assert_eq!(url_pattern("done"), "**done**");
        assert_eq!(url_pattern("**/done"), "**/done");
    }
}
