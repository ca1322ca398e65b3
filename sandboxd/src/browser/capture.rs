//! Calls that read the page without changing it: the seed snapshot (in pages, over one reading
//! of the page), find, the aria outline with refs, a screenshot.

use agent_runtime_proto::v1 as pb;
use base64::Engine as _;
use playwright_rs::protocol::{CDPSession, Page};
use playwright_rs::{Caret, ScreenshotOptions, ScreenshotType};

use super::error::{BrowserError, Result};
use super::js;
use super::refs::document_token;
use super::session::{Browser, State};
use super::snapshot::{self, Full, BUDGET_RANGE, DEFAULT_BUDGET, OUTLINE_DEFAULT_CHARS};

/// Largest aria outline budget.
const OUTLINE_MAX_CHARS: usize = 200_000;
/// Matches `find` returns of each kind by default.
const FIND_DEFAULT: usize = 20;
/// How old a screenshot taken ahead (with `goto`'s reading ahead) may be for a snapshot to
/// return it instead of taking one: the page has had no DOM change or scroll since, and shows
/// nothing that moves without one; this bounds what the check cannot see (an animated image in
/// CSS, a late web font).
const SHOT_KEPT: std::time::Duration = std::time::Duration::from_secs(1);

impl Browser {
    /// A page of the seed snapshot of the active tab. Page 1 reads the page anew, unless the
    /// last reading (a snapshot's, or the one `goto` starts) is of the same document with no DOM
    /// change and no action since; later pages (and `after_ref`) are served from that reading
    /// while the page has not been acted on. The screenshot is taken now, unless the reading
    /// ahead took one under a second ago and nothing has changed or moved since.
    pub async fn snapshot(
        &self,
        req: pb::BrowserSnapshotRequest,
    ) -> Result<pb::BrowserSnapshotResponse> {
        let budget = match req.max_chars as usize {
            0 => DEFAULT_BUDGET,
            n => n.clamp(BUDGET_RANGE.0, BUDGET_RANGE.1),
        };
        let after_ref = Some(req.after_ref.trim()).filter(|r| !r.is_empty());
        let continuing = req.page > 1 || after_ref.is_some();
        let mut turn = self.read_turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let cdp = if req.no_screenshot {
            None
        } else {
            self.cdp(&mut turn.state, &page).await.ok()
        };
        let shot = async {
            if req.no_screenshot {
                return Ok(String::new());
            }
            if let Some(cdp) = &cdp {
                if let Some(png) = fast_screenshot(cdp).await {
                    return Ok(png);
                }
            }
            page.screenshot(
                ScreenshotOptions::builder()
                    .screenshot_type(ScreenshotType::Png)
                    // Hiding the caret adds and removes a style in every frame: DOM changes
                    // that would make the page look changed since its last reading.
                    .caret(Caret::Initial)
                    .build(),
            )
            .await
            .map(|png| base64::engine::general_purpose::STANDARD.encode(png))
            .map_err(BrowserError::from)
        };
        let kept = if continuing {
            kept_reading(&page, &mut turn.state).await
        } else {
            unchanged_reading(&page, &mut turn.state).await
        };
        let renewed = continuing && kept.is_none();
        // A reading without boxes cannot give them: read again (the refs stay).
        let kept = kept.filter(|full| full.boxes || !req.boxes);
        let (full, png) = match kept {
            // A screenshot the reading ahead took is this one while it is fresh and nothing
            // moved since (see `unchanged_reading`).
            Some(mut full) => match full.shot.take() {
                Some(ahead) if !req.no_screenshot && ahead.at.elapsed() <= SHOT_KEPT => {
                    tracing::debug!(
                        age_ms = ahead.at.elapsed().as_millis() as u64,
                        "the screenshot taken ahead is this snapshot's"
                    );
                    (full, Ok(ahead.png))
                }
                _ => (full, shot.await),
            },
            None => {
                let read = snapshot::read_beside(&page, &mut turn.state.refs, req.boxes, shot)
                    .await
                    .map_err(|e| self.crash_aware(e))?;
                turn.state.read_cost = Some(read.0.took);
                read
            }
        };
        let png = png.map_err(|e| self.crash_aware(e))?;
        let served = if req.boxes {
            snapshot::serve(&full.with_boxes(), budget, req.page as usize, after_ref)
        } else {
            snapshot::serve(&full, budget, req.page as usize, after_ref)
        };
        turn.state.snapshot = Some(full);
        let mut served = served?;
        if renewed {
            served.more = format!(
                "the page changed since the snapshot you are paging through, so this is a new                  one (refs from the old one may be stale). {}",
                served.more
            );
        }
        let at = self.location(&page).await;
        drop(turn);
        Ok(pb::BrowserSnapshotResponse {
            url: at.url,
            title: at.title,
            screenshot: png,
            text: served.text,
            elements: served.elements,
            events: self.shared.take_events(),
            page: served.page as u32,
            pages: served.pages as u32,
            more: served.more,
        })
    }

    /// The elements and text passages of the active tab that match a query, from the last
    /// snapshot's reading while the page has not been acted on, else from a new one.
    pub async fn find(&self, req: pb::BrowserFindRequest) -> Result<pb::BrowserFindResponse> {
        if req.query.trim().is_empty() {
            return Err(BrowserError::invalid(
                "query is empty: give words from an element's label or the text, e.g. \"search\"",
            ));
        }
        let limit = match req.max_results as usize {
            0 => FIND_DEFAULT,
            n => n.min(500),
        };
        let mut turn = self.read_turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let full = match kept_reading(&page, &mut turn.state).await {
            Some(full) => full,
            None => snapshot::read(&page, &mut turn.state.refs)
                .await
                .map_err(|e| self.crash_aware(e))?,
        };
        let found = snapshot::find(&full, &req.query, limit);
        turn.state.snapshot = Some(full);
        let at = self.location(&page).await;
        drop(turn);
        Ok(pb::BrowserFindResponse {
            url: at.url,
            title: at.title,
            elements: found.elements.join("\n"),
            text: found.passages.join("\n"),
            matches: found.matches as u32,
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
        let mut turn = self.read_turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let (snapshot, truncated, total) = snapshot::outline(&page, &mut turn.state.refs, max)
            .await
            .map_err(|e| self.crash_aware(e))?;
        let at = self.location(&page).await;
        Ok(pb::BrowserAriaSnapshotResponse {
            url: at.url,
            title: at.title,
            snapshot,
            truncated,
            total_chars: total as u32,
            events: self.shared.take_events(),
        })
    }

    /// A PNG of the viewport or of the whole page.
    pub async fn screenshot(
        &self,
        req: pb::BrowserScreenshotRequest,
    ) -> Result<pb::BrowserScreenshotResponse> {
        let turn = self.read_turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let png = page
            .screenshot(
                ScreenshotOptions::builder()
                    .screenshot_type(ScreenshotType::Png)
                    .full_page(req.full_page)
                    .caret(Caret::Initial)
                    .build(),
            )
            .await
            .map_err(|e| self.classify(e))?;
        let (width, height) = png_size(&png);
        let at = self.location(&page).await;
        Ok(pb::BrowserScreenshotResponse {
            png: base64::engine::general_purpose::STANDARD.encode(&png),
            url: at.url,
            title: at.title,
            width,
            height,
            events: self.shared.take_events(),
        })
    }
}

/// The last reading of the page, when it is still of the page's current document.
async fn kept_reading(page: &Page, state: &mut State) -> Option<Full> {
    let full = state.snapshot.take()?;
    let now = document_token(page).await.ok()?;
    (now == full.document).then_some(full)
}

/// The viewport as a base64 PNG straight from Chromium, encoded for speed rather than size (about
/// twice as fast as Playwright's screenshot, a quarter larger), and without the caret hidden
/// (see above); None when Chromium says no (Playwright's is taken instead).
pub(super) async fn fast_screenshot(cdp: &CDPSession) -> Option<String> {
    let params = serde_json::json!({"format": "png", "optimizeForSpeed": true});
    let shot = cdp
        .send("Page.captureScreenshot", Some(params))
        .await
        .ok()?;
    // The driver wraps Chromium's answer as `{ result }`.
    let shot = shot.get("result").unwrap_or(&shot);
    shot.get("data")
        .and_then(serde_json::Value::as_str)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
}

/// What `js::PAGE_STILL` says of the page now.
#[derive(serde::Deserialize)]
struct Now {
    document: String,
    count: i64,
    moving: bool,
}

/// The last reading of the page, when nothing changed since: the same document, no DOM mutation
/// or scroll (see `js::PAGE_FACTS`), and no action (an action drops it). Its screenshot is kept
/// only when nothing on the page can move without a DOM mutation (see `js::PAGE_STILL`).
async fn unchanged_reading(page: &Page, state: &mut State) -> Option<Full> {
    let mut full = state.snapshot.take()?;
    let now: Now = page.evaluate::<(), Now>(js::PAGE_STILL, None).await.ok()?;
    if now.moving {
        full.shot = None;
    }
    (full.mutations >= 0 && now.document == full.document && now.count == full.mutations)
        .then_some(full)
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
    fn png_sizes_come_from_the_header() {
        let mut png = vec![0u8; 24];
        png[16..20].copy_from_slice(&1280u32.to_be_bytes());
        png[20..24].copy_from_slice(&720u32.to_be_bytes());
        assert_eq!(png_size(&png), (1280, 720));
        assert_eq!(png_size(&[]), (0, 0));
    }
}
