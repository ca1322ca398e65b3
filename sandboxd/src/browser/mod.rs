//! The sandbox's browser: Debian's Chromium driven through playwright-rs, started on first use,
//! one browser context per sandbox, restarted after a crash. Agents read pages through snapshots
//! (`snapshot.rs`) and act on them by ref (`refs.rs`).

mod actions;
mod error;
mod events;
mod js;
mod launch;
mod refs;
mod session;
mod settle;
mod snapshot;

pub use error::BrowserError;
pub use session::Browser;
