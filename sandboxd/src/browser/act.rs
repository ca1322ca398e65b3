//! The machinery every browser call shares: act, wait for the page to settle, and report where the
//! browser is and what happened meanwhile; a dialog that blocks an action ends the call early; a
//! Playwright error that says the browser died marks it for a restart.

use std::future::Future;
use std::time::Duration;

use agent_runtime_proto::sets::Settled as How;
use agent_runtime_proto::v1 as pb;
use playwright_rs::protocol::Page;
use playwright_rs::server::channel_owner::ChannelOwner as _;

use super::error::{BrowserError, Result};
use super::session::{Browser, Turn};
use super::settle::{self, Settled};

/// How long reading the title may take (a dialog blocks the page's scripts).
const TITLE_WAIT: Duration = Duration::from_secs(2);

/// Where the browser is after a call.
pub(super) struct Location {
    pub(super) url: String,
    pub(super) title: String,
}

impl Browser {
    /// Runs an action, waits for the page to settle, and reports. A confirm or prompt that the
    /// action opens ends the call early (the action finishes once BrowserDialog answers it).
    pub(super) async fn act<F>(
        &self,
        turn: Turn<'_>,
        action: F,
    ) -> Result<pb::BrowserActionResponse>
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
                    settled: How::DialogOpen.into(),
                    events: self.shared.take_events(),
                });
            }
        }
        let mut settled = settle::after(&page, &before).await;
        // A popup the action opened becomes the active tab, and this reply says so.
        let mut turn = turn;
        let active = self
            .sync_tabs(&mut turn.state)
            .await
            .unwrap_or(page.clone());
        drop(turn);
        if active.guid() != page.guid() {
            settled.title = None;
        }
        self.respond(&active, settled).await
    }

    /// The reply to an action: where the browser is, how the page settled, the events.
    pub(super) async fn respond(
        &self,
        page: &Page,
        settled: Settled,
    ) -> Result<pb::BrowserActionResponse> {
        let at = match settled.title {
            Some(title) => Location {
                url: page.url(),
                title,
            },
            None => self.location(page).await,
        };
        Ok(pb::BrowserActionResponse {
            url: at.url,
            title: at.title,
            navigated: settled.navigated,
            settled: settled.how.into(),
            events: self.shared.take_events(),
        })
    }

    /// The page's URL and title (empty when the page cannot say in time).
    pub(super) async fn location(&self, page: &Page) -> Location {
        let title = tokio::time::timeout(TITLE_WAIT, page.title())
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        Location {
            url: page.url(),
            title,
        }
    }

    /// Page scripts are blocked while a confirm or prompt is open.
    pub(super) fn no_dialog(&self) -> Result<()> {
        if self.shared.dialog_pending() {
            return Err(BrowserError::DialogOpen);
        }
        Ok(())
    }

    /// True while an action a dialog interrupted is still running.
    pub(super) fn blocked_running(&self) -> bool {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|h| !h.is_finished())
    }

    /// A Playwright error, noting a dead browser so the next call restarts it.
    pub(super) fn classify(&self, err: playwright_rs::Error) -> BrowserError {
        self.crash_aware(err.into())
    }

    /// The error as given, or, when it says the browser died, marked for a restart and saying so.
    pub(super) fn crash_aware(&self, err: BrowserError) -> BrowserError {
        match err.as_crash() {
            Some(crashed) => {
                self.shared.mark_crashed();
                crashed
            }
            None => err,
        }
    }
}
