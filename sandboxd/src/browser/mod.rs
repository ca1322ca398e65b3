//! The sandbox's browser: Debian's Chromium driven through playwright-rs, started on first use,
//! one browser context per sandbox, restarted after a crash. Agents read pages through snapshots
//! (`snapshot.rs`) and act on them by ref (`refs.rs`).
//!
//! The calls: `element.rs` (click, type, hover, select, upload), `page.rs` (goto, back/forward/
//! reload, scroll, press, wait, evaluate), `tabs.rs` (tabs, dialogs), `capture.rs` (snapshots,
//! screenshots); each goes through `act.rs` (act, settle, report). Playwright's messages are read
//! in one place, `error.rs`.

mod act;
mod capture;
mod element;
mod error;
mod events;
mod js;
mod launch;
mod page;
mod refs;
mod session;
mod settle;
mod snapshot;
mod tabs;

pub use error::BrowserError;
pub use session::Browser;
