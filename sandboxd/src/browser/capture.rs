//! Calls that read the page without changing it: the seed snapshot, the aria outline with refs,
//! a screenshot.

use agent_runtime_proto::v1 as pb;
use base64::Engine as _;
use playwright_rs::{ScreenshotOptions, ScreenshotType};

use super::error::Result;
use super::session::Browser;
use super::snapshot::{self, OUTLINE_DEFAULT_CHARS};

/// Largest aria outline budget.
const OUTLINE_MAX_CHARS: usize = 200_000;

impl Browser {
    /// The seed snapshot of the active tab.
    pub async fn snapshot(&self) -> Result<pb::BrowserSnapshotResponse> {
        let mut turn = self.turn().await?;
        self.no_dialog()?;
        let page = turn.page.clone();
        let snap = snapshot::snapshot(&page, &mut turn.state.refs)
            .await
            .map_err(|e| self.crash_aware(e))?;
        let at = self.location(&page).await;
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
