//! The browser's life: started on the first call, one browser context, tabs, restarted after a
//! crash (the caller is told), closed with the sandbox.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime_proto::sets::EventKind;
use playwright_rs::protocol::{CDPSession, Page};
use playwright_rs::server::channel_owner::ChannelOwner as _;
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::AbortHandle;

use super::error::{BrowserError, Result};
use super::events::Shared;
use super::launch::{self, Launched};
use super::refs::Refs;

/// How long closing the browser may take before its processes are left to the sandbox's end.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Longest a reading ahead may hold the turn.
const READ_AHEAD_LIMIT: Duration = Duration::from_secs(15);
/// After an action, the page is read ahead only once this long has passed with no other call (a
/// program's next call comes sooner, and never waits for a reading it did not ask for)...
const AFTER_ACTION_DELAY: Duration = Duration::from_millis(200);
/// ...and only when the page's last reading took at most this long (a big page's reading would
/// hold the renderer when the next action comes).
const AFTER_ACTION_READ_MAX: Duration = Duration::from_millis(500);

/// The sandbox's browser. Calls take turns; dialogs are answered without waiting for a turn.
pub struct Browser {
    pub(super) state: Mutex<State>,
    pub(super) shared: Arc<Shared>,
    /// Actions left running because a dialog blocked them; they end once it is answered.
    pub(super) blocked: std::sync::Mutex<Vec<AbortHandle>>,
    /// The reading of a page `goto` opened, made while the agent reads the reply (see
    /// [`Browser::read_ahead`]); the next action stops it.
    pub(super) reading_ahead: std::sync::Mutex<Option<AbortHandle>>,
}

/// Everything behind the call lock.
pub(super) struct State {
    live: Option<Live>,
    /// Refs outlive browser restarts, so none is ever reused.
    pub(super) refs: Refs,
    /// The last snapshot read in full, for its later pages and `find`; any call that may change
    /// the page drops it.
    pub(super) snapshot: Option<super::snapshot::Full>,
    /// A CDP session on a tab (its guid), for what Playwright does not offer.
    cdp: Option<(String, CDPSession)>,
    /// How long the last reading of a page took (see [`Browser::after_action`]).
    pub(super) read_cost: Option<Duration>,
    closed: bool,
}

/// A running browser and its tabs.
struct Live {
    launched: Launched,
    tabs: Vec<Page>,
    active: usize,
}

/// A call's view: the lock, and the active tab.
pub(super) struct Turn<'a> {
    pub(super) state: MutexGuard<'a, State>,
    pub(super) page: Page,
}

impl Browser {
    /// A browser that starts on first use; downloads go to `workspace/downloads`.
    pub fn new(workspace: PathBuf) -> Self {
        Self {
            state: Mutex::new(State {
                live: None,
                refs: Refs::default(),
                snapshot: None,
                cdp: None,
                read_cost: None,
                closed: false,
            }),
            shared: Arc::new(Shared::new(workspace.join("downloads"))),
            blocked: std::sync::Mutex::new(Vec::new()),
            reading_ahead: std::sync::Mutex::new(None),
        }
    }

    /// Starts the browser now, before anyone asks for it (a warm pool's `browser` shape), so
    /// the first call costs no launch.
    pub async fn prewarm(&self) {
        match self.turn().await {
            Ok(_) => tracing::info!("browser started ahead of use"),
            Err(e) => tracing::warn!(error = %e, "cannot start the browser ahead of use"),
        }
    }

    /// Takes a turn: starts the browser if needed (again, after a crash), picks up tabs the
    /// page opened, and returns the active tab.
    pub(super) async fn turn(&self) -> Result<Turn<'_>> {
        // A reading ahead would be dropped by this call anyway: it stops, and frees the turn.
        self.stop_reading_ahead();
        let mut turn = self.read_turn().await?;
        turn.state.snapshot = None;
        Ok(turn)
    }

    /// A turn for a call that only reads the page: the last snapshot stays usable.
    pub(super) async fn read_turn(&self) -> Result<Turn<'_>> {
        let mut state = self.state.lock().await;
        if state.closed {
            return Err(BrowserError::Launch("the sandbox is shutting down".into()));
        }
        let crashed = self.shared.take_crashed();
        let disconnected = state
            .live
            .as_ref()
            .is_some_and(|l| !l.launched.browser.is_connected());
        if crashed || disconnected {
            if let Some(live) = state.live.take() {
                tracing::warn!("the browser crashed; starting it anew");
                self.abort_blocked();
                close_live(live).await;
                state.refs.clear();
                state.cdp = None;
                self.shared.push(
                    EventKind::Restarted,
                    "the browser had crashed and was restarted: tabs, page state and refs are \
                     gone; open the page again and take a new snapshot"
                        .into(),
                    String::new(),
                );
            }
        }
        if state.live.is_none() {
            let started = std::time::Instant::now();
            // Chromium needs most of a default sandbox's memory: the idle spare interpreter goes.
            crate::zygote::make_room();
            let launched = launch::launch(&self.shared).await?;
            launch::wire_page(&launched.page, &self.shared).await?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "browser started"
            );
            let page = launched.page.clone();
            state.live = Some(Live {
                launched,
                tabs: vec![page],
                active: 0,
            });
            // The first tab was announced by the context too; it is not a popup.
            self.shared.take_opened();
        }
        let page = self.sync_tabs(&mut state).await?;
        Ok(Turn { state, page })
    }

    /// Adopts tabs opened since the last call (a popup becomes the active tab), drops closed
    /// ones, and returns the active tab (a new one if none is left).
    pub(super) async fn sync_tabs(&self, state: &mut State) -> Result<Page> {
        let Some(live) = state.live.as_mut() else {
            return Err(BrowserError::Launch("the browser is not running".into()));
        };
        for page in self.shared.take_opened() {
            if live.tabs.iter().any(|t| t.guid() == page.guid()) || page.is_closed() {
                continue;
            }
            launch::wire_page(&page, &self.shared).await?;
            let _ = page
                .wait_for_load_state(Some(playwright_rs::WaitUntil::DomContentLoaded))
                .await;
            self.shared.push(
                EventKind::Popup,
                format!(
                    "a new tab opened ({}) and is now the active tab; browser_tabs lists the tabs",
                    page.url()
                ),
                page.url(),
            );
            live.tabs.push(page);
            live.active = live.tabs.len() - 1;
        }
        let active_guid = live.tabs.get(live.active).map(|p| p.guid().to_string());
        let before = live.tabs.len();
        live.tabs.retain(|p| !p.is_closed());
        if live.tabs.len() != before {
            let still_there = active_guid
                .as_deref()
                .and_then(|g| live.tabs.iter().position(|p| p.guid() == g));
            match still_there {
                Some(i) => live.active = i,
                None => {
                    self.shared.push(
                        EventKind::TabClosed,
                        "the active tab closed; the last remaining tab is now active".into(),
                        String::new(),
                    );
                    live.active = live.tabs.len().saturating_sub(1);
                }
            }
        }
        self.keep_one_tab(live).await?;
        Ok(live.tabs[live.active].clone())
    }

    /// The browser always has a tab: a fresh one when the last was closed.
    async fn keep_one_tab(&self, live: &mut Live) -> Result<()> {
        if live.tabs.is_empty() {
            let page = live.launched.context.new_page().await?;
            launch::wire_page(&page, &self.shared).await?;
            // Ours, not a popup.
            self.shared.take_opened();
            live.tabs.push(page);
            live.active = 0;
        }
        Ok(())
    }

    /// Opens a tab and makes it active.
    pub(super) async fn new_tab(&self, state: &mut State) -> Result<Page> {
        let live = state
            .live
            .as_mut()
            .ok_or_else(|| BrowserError::Launch("the browser is not running".into()))?;
        let page = live.launched.context.new_page().await?;
        launch::wire_page(&page, &self.shared).await?;
        // Ours, not a popup.
        let opened = self.shared.take_opened();
        for other in opened {
            if other.guid() != page.guid() {
                self.shared.page_opened(other);
            }
        }
        live.tabs.push(page.clone());
        live.active = live.tabs.len() - 1;
        Ok(page)
    }

    /// The tabs and which one is active.
    pub(super) fn tab_list(state: &State) -> (Vec<Page>, usize) {
        match &state.live {
            Some(live) => (live.tabs.clone(), live.active),
            None => (Vec::new(), 0),
        }
    }

    /// Makes tab `index` active.
    pub(super) fn select_tab(state: &mut State, index: usize) -> Result<Page> {
        let live = state
            .live
            .as_mut()
            .ok_or_else(|| BrowserError::Launch("the browser is not running".into()))?;
        let page = live.tabs.get(index).cloned().ok_or_else(|| {
            BrowserError::invalid(format!(
                "no tab {index}: there are {} tabs (0..{}); browser_tabs lists them",
                live.tabs.len(),
                live.tabs.len().saturating_sub(1)
            ))
        })?;
        live.active = index;
        Ok(page)
    }

    /// Closes tab `index` (the active one if none); another tab becomes active.
    pub(super) async fn close_tab(&self, state: &mut State, index: Option<usize>) -> Result<()> {
        let live = state
            .live
            .as_mut()
            .ok_or_else(|| BrowserError::Launch("the browser is not running".into()))?;
        let index = index.unwrap_or(live.active);
        let page = live.tabs.get(index).cloned().ok_or_else(|| {
            BrowserError::invalid(format!(
                "no tab {index}: there are {} tabs",
                live.tabs.len()
            ))
        })?;
        page.close().await?;
        live.tabs.remove(index);
        if live.active >= index && live.active > 0 {
            live.active -= 1;
        }
        self.keep_one_tab(live).await?;
        Ok(())
    }

    /// Keeps an action that a dialog blocked; it is aborted if the browser goes away.
    pub(super) fn keep_blocked(&self, handle: AbortHandle) {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        blocked.retain(|h| !h.is_finished());
        blocked.push(handle);
    }

    fn abort_blocked(&self) {
        let blocked = std::mem::take(&mut *self.blocked.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in blocked {
            handle.abort();
        }
    }

    /// Reads the active tab in the background, once this call's turn is free, so the snapshot
    /// the agent asks for next is served from it (when nothing changed meanwhile; see
    /// `capture::unchanged_reading`) instead of waiting for the reading. Owned by this browser:
    /// the next action, another reading ahead or the shutdown stops it.
    /// Returns the reading, to wait for (dropping it leaves the reading running).
    pub(super) fn read_ahead(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.read_ahead_in(Duration::ZERO, None)
    }

    /// After an action that succeeded: reads the page ahead for the snapshot that usually comes
    /// next, once [`AFTER_ACTION_DELAY`] has passed with no other call, on a page whose last
    /// reading was quick ([`AFTER_ACTION_READ_MAX`]).
    pub fn after_action(self: &Arc<Self>) {
        // Not waited for: it starts only once the agent has gone quiet.
        drop(self.read_ahead_in(AFTER_ACTION_DELAY, Some(AFTER_ACTION_READ_MAX)));
    }

    /// [`Browser::read_ahead`] after `delay` (any call that takes a turn meanwhile stops it),
    /// and with `cheaper_than`, only when the last reading took no longer.
    fn read_ahead_in(
        self: &Arc<Self>,
        delay: Duration,
        cheaper_than: Option<Duration>,
    ) -> tokio::task::JoinHandle<()> {
        let browser = Arc::clone(self);
        let task = tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let Ok(mut turn) = browser.read_turn().await else {
                return;
            };
            if browser.shared.dialog_pending() || turn.state.snapshot.is_some() {
                return;
            }
            if let Some(max) = cheaper_than {
                if turn.state.read_cost.is_none_or(|cost| cost > max) {
                    return;
                }
            }
            let page = turn.page.clone();
            // The screenshot too, beside the end of the reading: a snapshot asked at once
            // returns it (see `capture::SHOT_KEPT`).
            let cdp = browser.cdp(&mut turn.state, &page).await.ok();
            let shot = async {
                let png = super::capture::fast_screenshot(cdp.as_ref()?).await?;
                Some(super::snapshot::Shot {
                    png,
                    at: std::time::Instant::now(),
                })
            };
            let reading = super::snapshot::read_beside(&page, &mut turn.state.refs, false, shot);
            match tokio::time::timeout(READ_AHEAD_LIMIT, reading).await {
                Ok(Ok((full, shot))) => {
                    turn.state.read_cost = Some(full.took);
                    turn.state.snapshot = Some(super::snapshot::Full { shot, ..full })
                }
                Ok(Err(e)) => {
                    let e = browser.crash_aware(e);
                    tracing::debug!(error = %e, "reading the page ahead failed");
                }
                Err(_) => tracing::debug!("reading the page ahead took too long"),
            }
        });
        let previous = self
            .reading_ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        task
    }

    fn stop_reading_ahead(&self) {
        let task = self
            .reading_ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }

    /// A CDP session on `page` (kept while it stays the tab asked about).
    pub(super) async fn cdp(&self, state: &mut State, page: &Page) -> Result<CDPSession> {
        if let Some((guid, session)) = &state.cdp {
            if guid.as_str() == page.guid() {
                return Ok(session.clone());
            }
        }
        let Some(live) = state.live.as_ref() else {
            return Err(BrowserError::Launch("the browser is not running".into()));
        };
        let session = live.launched.context.new_cdp_session(page).await?;
        state.cdp = Some((page.guid().to_string(), session.clone()));
        Ok(session)
    }

    /// Closes the browser for good (the sandbox is stopping).
    pub async fn shutdown(&self) {
        self.stop_reading_ahead();
        self.abort_blocked();
        if let Some(dialog) = self.shared.take_dialog() {
            let _ = dialog.dismiss().await;
        }
        let mut state = self.state.lock().await;
        state.closed = true;
        if let Some(live) = state.live.take() {
            close_live(live).await;
        }
    }
}

/// Closes Chromium and the driver, within a grace period.
async fn close_live(live: Live) {
    let Launched {
        playwright,
        browser,
        context,
        ..
    } = live.launched;
    let closing = async {
        let _ = context.close().await;
        let _ = browser.close().await;
    };
    if tokio::time::timeout(CLOSE_GRACE, closing).await.is_err() {
        tracing::warn!("the browser did not close within {CLOSE_GRACE:?}");
    }
    if tokio::time::timeout(CLOSE_GRACE, playwright.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the playwright driver did not stop within {CLOSE_GRACE:?}");
    }
}
