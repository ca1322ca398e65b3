//! After every action: wait for the navigation it caused, or for the DOM to settle, and say which.

use std::time::Duration;

use agent_runtime_proto::sets::Settled as How;
use playwright_rs::protocol::Page;
use playwright_rs::WaitUntil;

use super::js;
use super::refs::document_token;

/// Default time an action (click, fill, ...) may take.
pub const ACTION_TIMEOUT_MS: f64 = 5_000.0;
/// Default time a navigation may take.
pub const NAVIGATION_TIMEOUT_MS: f64 = 30_000.0;
/// The DOM counts as settled after this long without a mutation...
const DOM_QUIET_MS: u64 = 150;
/// ...or the wait gives up after this long.
const DOM_MAX_MS: u64 = 2_000;
/// How long a load that an action started may take before the call returns anyway.
const LOAD_WAIT: Duration = Duration::from_secs(10);

/// Where the page was before an action.
pub struct Before {
    url: String,
    document: Option<String>,
    /// DOM mutations the document had had (-1: unknown).
    mutations: i64,
}

/// What the action led to.
pub struct Settled {
    /// The URL changed or a new document loaded.
    pub navigated: bool,
    /// Navigation (still loading or not), DOM settled or still changing, or page busy.
    pub how: How,
    /// The page's title, when the settling read it (saves the reply a round trip).
    pub title: Option<String>,
}

/// What `js::SETTLE_BEFORE` says.
#[derive(serde::Deserialize)]
struct Seen {
    document: String,
    count: i64,
}

/// Notes the page's URL, document and DOM mutations before an action.
pub async fn before(page: &Page) -> Before {
    let seen = page
        .evaluate::<(), Seen>(js::SETTLE_BEFORE, None)
        .await
        .ok();
    Before {
        url: page.url(),
        mutations: seen.as_ref().map_or(-1, |s| s.count),
        document: seen.map(|s| s.document),
    }
}

#[derive(serde::Serialize)]
struct SettleArgs {
    quiet: u64,
    max: u64,
}

#[derive(serde::Serialize)]
struct AfterArgs<'a> {
    quiet: u64,
    max: u64,
    count: i64,
    doc: Option<&'a str>,
}

/// What `js::SETTLE_AFTER` says.
#[derive(serde::Deserialize)]
struct After {
    same: bool,
    settled: bool,
    #[serde(default)]
    title: Option<String>,
}

/// Waits for what the action started, and reports it. An action that changed nothing in the
/// DOM returns after the page's next frame; one that changed it, once the changes stop.
pub async fn after(page: &Page, before: &Before) -> Settled {
    let url_changed = page.url() != before.url;
    let new_document = if url_changed {
        match (&before.document, &document_token(page).await.ok()) {
            (Some(a), Some(b)) => a != b,
            // The page was mid-navigation when asked: it is loading a new document.
            (_, None) => true,
            (None, Some(_)) => false,
        }
    } else {
        let args = AfterArgs {
            quiet: DOM_QUIET_MS,
            max: DOM_MAX_MS,
            count: before.mutations,
            doc: before.document.as_deref(),
        };
        let wait = page.evaluate::<AfterArgs, After>(js::SETTLE_AFTER, Some(&args));
        match tokio::time::timeout(Duration::from_millis(DOM_MAX_MS + 1_000), wait).await {
            Ok(Ok(After {
                same: true,
                settled,
                title,
            })) => {
                return Settled {
                    navigated: false,
                    how: if settled {
                        How::DomSettled
                    } else {
                        How::DomChanging
                    },
                    title,
                }
            }
            // Another document, or the page is between two (the call was cut short).
            Ok(_) => true,
            // A dialog blocks the page.
            Err(_) => {
                return Settled {
                    navigated: false,
                    how: How::PageBusy,
                    title: None,
                }
            }
        }
    };
    let loaded = tokio::time::timeout(LOAD_WAIT, page.wait_for_load_state(Some(WaitUntil::Load)))
        .await
        .is_ok_and(|r| r.is_ok());
    // A hash change keeps the document: it has nothing to load.
    Settled {
        navigated: true,
        how: if loaded || !new_document {
            How::Navigation
        } else {
            How::NavigationLoading
        },
        title: None,
    }
}

/// Waits until the DOM stops changing (or gives up), and says which.
pub async fn dom_settle(page: &Page) -> How {
    let args = SettleArgs {
        quiet: DOM_QUIET_MS,
        max: DOM_MAX_MS,
    };
    let wait = page.evaluate::<SettleArgs, bool>(js::DOM_SETTLE, Some(&args));
    match tokio::time::timeout(Duration::from_millis(DOM_MAX_MS + 1_000), wait).await {
        Ok(Ok(true)) => How::DomSettled,
        Ok(Ok(false)) => How::DomChanging,
        // A dialog blocks the page, or it navigated meanwhile.
        _ => How::PageBusy,
    }
}
