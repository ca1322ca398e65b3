//! Every browser call: find the element, act, wait for the page to settle, report where the
//! browser is and what happened meanwhile.

use std::future::Future;
use std::time::Duration;

use agent_runtime_proto::v1 as pb;
use base64::Engine as _;
use playwright_rs::protocol::Page;
use playwright_rs::{ClickOptions, FillOptions, GotoOptions, ScreenshotOptions, ScreenshotType};
use playwright_rs::{HoverOptions, PressOptions, SelectOption, WaitForOptions, WaitForState};
use serde::Deserialize;

use super::error::{BrowserError, Result};
use super::js;
use super::refs::Target;
use super::session::{Browser, Turn};
use super::settle::{self, Settled, ACTION_TIMEOUT_MS};
use super::snapshot::{self, OUTLINE_DEFAULT_CHARS};

/// Longest wait BrowserWait accepts.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// Default wait for text or a URL.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// How long reading the title may take (a dialog blocks the page's scripts).
const TITLE_WAIT: Duration = Duration::from_secs(2);
/// Largest evaluate result returned, in characters.
const EVALUATE_LIMIT: usize = 200_000;
/// How long an evaluated script may run.
const EVALUATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest aria outline budget.
const OUTLINE_MAX_CHARS: usize = 200_000;
/// URL schemes the browser opens.
const SCHEMES: [&str; 5] = ["http", "https", "file", "about", "data"];

/// Where the browser is after a call.
struct Where {
    url: String,
    title: String,
}

impl Browser {
    /// Opens `url` in the active tab.
    pub async fn goto(&self, req: pb::BrowserGotoRequest) -> Result<pb::BrowserPage> {
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
        if let Err(e) = page.goto(&url, Some(options)).await {
            let err = self.classify(e);
            return Err(match err {
                BrowserError::Playwright(m) if m.contains("net::ERR_") => {
                    BrowserError::invalid(format!(
                    "{url} did not load ({}); sandboxes have no network: open pages served inside \
                     the sandbox on 127.0.0.1, or file:// paths",
                    m.split_whitespace()
                        .find(|w| w.starts_with("net::ERR_"))
                        .unwrap_or("network error")
                ))
                }
                other => other,
            });
        }
        let at = self.where_(&page).await;
        drop(turn);
        Ok(pb::BrowserPage {
            url: at.url,
            title: at.title,
            settled: "navigation".into(),
            events: self.shared.take_events(),
        })
    }

    /// Clicks an element.
    pub async fn click(&self, req: pb::BrowserClickRequest) -> Result<pb::BrowserClickResponse> {
        let target = Target::from_fields(&req.selector, &req.ref_id)?;
        let turn = self.turn().await?;
        let locator = target.resolve(&turn.page, &turn.state.refs).await?;
        let options = ClickOptions::builder().timeout(ACTION_TIMEOUT_MS).build();
        let r = self
            .act(turn, async move { locator.click(Some(options)).await })
            .await?;
        Ok(pb::BrowserClickResponse {
            url: r.url,
            title: r.title,
            navigated: r.navigated,
            settled: r.settled,
            events: r.events,
        })
    }

    /// Replaces an input's text (or types into any other focusable element).
    pub async fn type_text(&self, req: pb::BrowserTypeRequest) -> Result<pb::BrowserPage> {
        let target = Target::from_fields(&req.selector, &req.ref_id)?;
        let turn = self.turn().await?;
        let locator = target.resolve(&turn.page, &turn.state.refs).await?;
        let page = turn.page.clone();
        let text = req.text;
        let r = self
            .act(turn, async move {
                let options = FillOptions::builder().timeout(ACTION_TIMEOUT_MS).build();
                match locator.fill(&text, Some(options)).await {
                    Err(e) if e.to_string().contains("not an <input>") => {
                        locator.click(None).await?;
                        page.keyboard().type_text(&text, None).await
                    }
                    other => other,
                }
            })
            .await?;
        Ok(pb::BrowserPage {
            url: r.url,
            title: r.title,
            settled: r.settled,
            events: r.events,
        })
    }

    /// The seed snapshot of the active tab.
    pub async fn snapshot(&self) -> Result<pb::BrowserSnapshotResponse> {
        let mut turn = self.turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let snap = snapshot::snapshot(&page, &mut turn.state.refs)
            .await
            .map_err(|e| self.crash_aware(e))?;
        let at = self.where_(&page).await;
        drop(turn);
        Ok(pb::BrowserSnapshotResponse {
            url: at.url,
            title: at.title,
            screenshot: snap.screenshot,
            text: snap.text,
            elements: snap.elements,
            events: self.shared.take_events(),
        })
    }

    /// Playwright's aria outline with our refs.
    pub async fn aria_snapshot(
        &self,
        req: pb::BrowserAriaSnapshotRequest,
    ) -> Result<pb::BrowserAriaSnapshotResponse> {
        let max = match req.max_chars as usize {
            0 => OUTLINE_DEFAULT_CHARS,
            n => n.min(OUTLINE_MAX_CHARS),
        };
        let mut turn = self.turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let (snapshot, truncated, total) = snapshot::outline(&page, &mut turn.state.refs, max)
            .await
            .map_err(|e| self.crash_aware(e))?;
        let at = self.where_(&page).await;
        Ok(pb::BrowserAriaSnapshotResponse {
            url: at.url,
            title: at.title,
            snapshot,
            truncated,
            total_chars: total as u32,
            events: self.shared.take_events(),
        })
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
        .map_err(|e| match e {
            BrowserError::Playwright(m) if m.contains("Unknown key") => {
                BrowserError::invalid(format!(
                "{m}; use Playwright key names such as Enter, Tab, ArrowDown, Escape, Backspace, \
                 Control+a"
            ))
            }
            other => other,
        })
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

    /// Back, forward or reload.
    pub async fn navigate(
        &self,
        req: pb::BrowserNavigateRequest,
    ) -> Result<pb::BrowserActionResponse> {
        let action = req.action.trim().to_ascii_lowercase();
        if !["back", "forward", "reload"].contains(&action.as_str()) {
            return Err(BrowserError::invalid(format!(
                "unknown navigate action {:?}; use back, forward or reload",
                req.action
            )));
        }
        let turn = self.turn().await?;
        let page = turn.page.clone();
        self.act(turn, async move {
            match action.as_str() {
                "back" => page.go_back(None).await.map(|_| ()),
                "forward" => page.go_forward(None).await.map(|_| ()),
                _ => page.reload(None).await.map(|_| ()),
            }
        })
        .await
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
        };
        self.respond(&page, settled).await
    }

    /// Selects options of a `<select>` by value or label.
    pub async fn select_option(
        &self,
        req: pb::BrowserSelectOptionRequest,
    ) -> Result<pb::BrowserActionResponse> {
        if req.values.is_empty() {
            return Err(BrowserError::invalid(
                "give the option values or labels to select",
            ));
        }
        let target = Target::required(req.target.as_ref())?;
        let turn = self.turn().await?;
        let locator = target.resolve(&turn.page, &turn.state.refs).await?;
        #[derive(Deserialize)]
        struct Found {
            error: Option<String>,
            #[serde(default)]
            values: Vec<Option<String>>,
            #[serde(default)]
            labels: Vec<String>,
        }
        let found: Found = locator
            .evaluate(js::OPTION_VALUES, Some(&req.values))
            .await?;
        if let Some(error) = found.error {
            return Err(BrowserError::invalid(error));
        }
        let mut values = Vec::new();
        for (wanted, value) in req.values.iter().zip(found.values) {
            match value {
                Some(v) => values.push(SelectOption::Value(v)),
                None => {
                    return Err(BrowserError::invalid(format!(
                        "the select has no option {wanted:?}; its options are {:?}",
                        found.labels
                    )))
                }
            }
        }
        self.act(turn, async move {
            locator
                .select_option_multiple(&values, None)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Moves the mouse over an element.
    pub async fn hover(&self, req: pb::BrowserHoverRequest) -> Result<pb::BrowserActionResponse> {
        let target = Target::required(req.target.as_ref())?;
        let turn = self.turn().await?;
        let locator = target.resolve(&turn.page, &turn.state.refs).await?;
        let options = HoverOptions::builder().timeout(ACTION_TIMEOUT_MS).build();
        self.act(turn, async move { locator.hover(Some(options)).await })
            .await
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
            Ok(r) => r.map_err(|e: BrowserError| match e {
                BrowserError::Playwright(m) if !m.contains("has been closed") => {
                    // Keep the error, drop the stack of our wrapper.
                    let head = m.split(" at ").next().unwrap_or(&m).trim().to_string();
                    BrowserError::invalid(format!("the script failed: {head}"))
                }
                other => other,
            })?,
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
        let at = self.where_(&page).await;
        drop(turn);
        Ok(pb::BrowserEvaluateResponse {
            result_json: json,
            url: at.url,
            title: at.title,
            events: self.shared.take_events(),
        })
    }

    /// Lists, opens, selects or closes tabs.
    pub async fn tabs(&self, req: pb::BrowserTabsRequest) -> Result<pb::BrowserTabsResponse> {
        let action = req.action.trim().to_ascii_lowercase();
        let mut turn = self.turn().await?;
        match action.as_str() {
            "" | "list" => {}
            "new" => {
                let page = self.new_tab(&mut turn.state).await?;
                if !req.url.is_empty() {
                    let url = check_url(&req.url)?;
                    page.goto(&url, None).await.map_err(|e| self.classify(e))?;
                }
            }
            "select" => {
                let index = req
                    .index
                    .ok_or_else(|| BrowserError::invalid("select needs the tab's index"))?;
                let page = Self::select_tab(&mut turn.state, index as usize)?;
                let _ = page.bring_to_front().await;
            }
            "close" => {
                self.close_tab(&mut turn.state, req.index.map(|i| i as usize))
                    .await?;
            }
            other => {
                return Err(BrowserError::invalid(format!(
                    "unknown tabs action {other:?}; use list, new, select or close"
                )))
            }
        }
        let (pages, active) = Self::tab_list(&turn.state);
        let mut tabs = Vec::with_capacity(pages.len());
        for (i, page) in pages.iter().enumerate() {
            let at = self.where_(page).await;
            tabs.push(pb::BrowserTab {
                index: i as u32,
                url: at.url,
                title: at.title,
                active: i == active,
            });
        }
        drop(turn);
        Ok(pb::BrowserTabsResponse {
            tabs,
            events: self.shared.take_events(),
        })
    }

    /// Answers the open confirm or prompt.
    pub async fn dialog(&self, req: pb::BrowserDialogRequest) -> Result<pb::BrowserActionResponse> {
        let dialog = self.shared.take_dialog().ok_or(BrowserError::NoDialog)?;
        let kind = dialog.type_().to_string();
        let message = dialog.message().to_string();
        let answered = if req.accept {
            let text = (kind == "prompt").then_some(req.prompt_text.as_str());
            dialog.accept(text).await
        } else {
            dialog.dismiss().await
        };
        answered.map_err(|e| self.classify(e))?;
        self.shared.push(
            super::events::kind::DIALOG,
            format!(
                "{kind} {message:?} {}",
                if req.accept { "accepted" } else { "dismissed" }
            ),
            kind,
        );
        // The action the dialog interrupted now finishes; give it a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.blocked_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let turn = self.turn().await?;
        let page = turn.page.clone();
        let settled = Settled {
            navigated: false,
            how: settle::dom_settle(&page).await,
        };
        drop(turn);
        self.respond(&page, settled).await
    }

    /// Gives an `<input type=file>` files from the workspace.
    pub async fn upload_file(
        &self,
        req: pb::BrowserUploadFileRequest,
        workspace: &crate::paths::Workspace,
    ) -> Result<pb::BrowserActionResponse> {
        if req.paths.is_empty() {
            return Err(BrowserError::invalid(
                "give the paths of the files to upload",
            ));
        }
        let mut files = Vec::new();
        for raw in &req.paths {
            let path = workspace
                .resolve(raw)
                .map_err(|e| BrowserError::invalid(e.to_string()))?;
            if !path.starts_with(workspace.root()) {
                return Err(BrowserError::invalid(format!(
                    "{raw} is outside {}; uploads come from the workspace",
                    workspace.root().display()
                )));
            }
            // Looked at as the sandbox user; the driver, which reads the file, runs as that user.
            let is_file = crate::privileges::as_user(|| path.is_file())
                .map_err(|e| BrowserError::Launch(e.to_string()))?;
            if !is_file {
                return Err(BrowserError::invalid(format!(
                    "{} is not a file; write it first (file_write) or check the path",
                    path.display()
                )));
            }
            files.push(path);
        }
        let target = Target::required(req.target.as_ref())?;
        let turn = self.turn().await?;
        let locator = target.resolve(&turn.page, &turn.state.refs).await?;
        self.act(turn, async move {
            let refs: Vec<&std::path::PathBuf> = files.iter().collect();
            locator.set_input_files_multiple(&refs, None).await
        })
        .await
    }

    /// A PNG of the viewport or of the whole page.
    pub async fn screenshot(
        &self,
        req: pb::BrowserScreenshotRequest,
    ) -> Result<pb::BrowserScreenshotResponse> {
        let turn = self.turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let png = page
            .screenshot(
                ScreenshotOptions::builder()
                    .screenshot_type(ScreenshotType::Png)
                    .full_page(req.full_page)
                    .build(),
            )
            .await
            .map_err(|e| self.classify(e))?;
        let (width, height) = png_size(&png);
        let at = self.where_(&page).await;
        Ok(pb::BrowserScreenshotResponse {
            png: base64::engine::general_purpose::STANDARD.encode(&png),
            url: at.url,
            title: at.title,
            width,
            height,
            events: self.shared.take_events(),
        })
    }

    /// Runs an action, waits for the page to settle, and reports. A confirm or prompt that the
    /// action opens ends the call early (the action finishes once BrowserDialog answers it).
    async fn act<F>(&self, turn: Turn<'_>, action: F) -> Result<pb::BrowserActionResponse>
    where
        F: Future<Output = playwright_rs::Result<()>> + Send + 'static,
    {
        self.no_dialog()?;
        let page = turn.page.clone();
        let before = settle::before(&page).await;
        let dialog = self.shared.dialog_waiting.notified();
        tokio::pin!(dialog);
        dialog.as_mut().enable();
        let mut task = tokio::spawn(action);
        let finished = tokio::select! {
            r = &mut task => Some(r),
            () = &mut dialog => None,
        };
        match finished {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => return Err(self.classify(e)),
            Some(Err(e)) => {
                return Err(BrowserError::Playwright(format!("the action failed: {e}")))
            }
            None => {
                self.keep_blocked(task.abort_handle());
                drop(turn);
                return Ok(pb::BrowserActionResponse {
                    url: page.url(),
                    title: String::new(),
                    navigated: false,
                    settled: "dialog open".into(),
                    events: self.shared.take_events(),
                });
            }
        }
        let settled = settle::after(&page, &before).await;
        // A popup the action opened becomes the active tab, and this reply says so.
        let mut turn = turn;
        let page = self.sync_tabs(&mut turn.state).await.unwrap_or(page);
        drop(turn);
        self.respond(&page, settled).await
    }

    async fn respond(&self, page: &Page, settled: Settled) -> Result<pb::BrowserActionResponse> {
        let at = self.where_(page).await;
        Ok(pb::BrowserActionResponse {
            url: at.url,
            title: at.title,
            navigated: settled.navigated,
            settled: settled.how.to_string(),
            events: self.shared.take_events(),
        })
    }

    async fn where_(&self, page: &Page) -> Where {
        let title = tokio::time::timeout(TITLE_WAIT, page.title())
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        Where {
            url: page.url(),
            title,
        }
    }

    /// Page scripts are blocked while a confirm or prompt is open.
    fn no_dialog(&self) -> Result<()> {
        if self.shared.dialog_pending() {
            return Err(BrowserError::DialogOpen);
        }
        Ok(())
    }

    fn blocked_running(&self) -> bool {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|h| !h.is_finished())
    }

    /// A Playwright error, noting a dead browser so the next call restarts it.
    fn classify(&self, err: playwright_rs::Error) -> BrowserError {
        self.crash_aware(err.into())
    }

    fn crash_aware(&self, err: BrowserError) -> BrowserError {
        if let BrowserError::Playwright(m) = &err {
            let dead = [
                "Target crashed",
                "Browser has been closed",
                "browser has disconnected",
                "Target page, context or browser has been closed",
                "Channel closed",
            ];
            if dead.iter().any(|d| m.contains(d)) {
                self.shared.mark_crashed();
                return BrowserError::Playwright(format!(
                    "{m}; the browser crashed or was closed: the next browser call starts it anew"
                ));
            }
        }
        err
    }
}

/// Checks a URL and fills in a scheme for bare hosts and absolute paths.
fn check_url(raw: &str) -> Result<String> {
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

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    let read = |at: usize| {
        png.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0)
    };
    (read(16), read(20))
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

    #[test]
    fn png_sizes_come_from_the_header() {
        let mut png = vec![0u8; 24];
        png[16..20].copy_from_slice(&1280u32.to_be_bytes());
        png[20..24].copy_from_slice(&720u32.to_be_bytes());
        assert_eq!(png_size(&png), (1280, 720));
        assert_eq!(png_size(&[]), (0, 0));
    }
}
