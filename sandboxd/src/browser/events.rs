//! What happens in the browser between and during calls — dialogs, popups, downloads, crashes —
//! collected here by Playwright's event handlers and handed to the next call's reply.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use agent_runtime_proto::sets::{DialogType, EventKind};
use agent_runtime_proto::v1::BrowserEvent;
use playwright_rs::protocol::{Dialog, Download, Page};
use tokio::sync::Notify;

/// Most events kept between two calls; older ones are dropped (a page looping alerts).
const MAX_EVENTS: usize = 50;

/// State the event handlers share with the calls.
pub struct Shared {
    events: Mutex<Vec<BrowserEvent>>,
    dialog: Mutex<Option<Dialog>>,
    /// Wakes a call that waits on its action when a dialog needs an answer.
    pub dialog_waiting: Notify,
    opened: Mutex<Vec<Page>>,
    crashed: AtomicBool,
    downloads: PathBuf,
}

impl Shared {
    /// Handlers' state; downloads go to `downloads`.
    pub fn new(downloads: PathBuf) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            dialog: Mutex::new(None),
            dialog_waiting: Notify::new(),
            opened: Mutex::new(Vec::new()),
            crashed: AtomicBool::new(false),
            downloads,
        }
    }

    /// Records an event for the next reply.
    pub fn push(&self, kind: EventKind, message: String, detail: String) {
        let mut events = lock(&self.events);
        if events.len() >= MAX_EVENTS {
            events.remove(0);
        }
        events.push(BrowserEvent {
            kind: kind.into(),
            message,
            detail,
        });
    }

    /// The events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<BrowserEvent> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// An alert (or beforeunload) is accepted at once; a confirm or prompt waits for
    /// BrowserDialog, and the call that opened it returns early saying so.
    pub async fn dialog_opened(&self, dialog: Dialog) -> playwright_rs::Result<()> {
        let kind = dialog.type_().to_string();
        let message = dialog.message().to_string();
        match kind.parse() {
            Ok(DialogType::Confirm | DialogType::Prompt) => {
                self.push(
                    EventKind::Dialog,
                    format!(
                        "{kind} {message:?} is open and blocks the page: answer it with \
                         browser_dialog (accept true/false{})",
                        if kind == DialogType::Prompt.as_str() {
                            ", prompt_text"
                        } else {
                            ""
                        }
                    ),
                    kind,
                );
                let previous = lock(&self.dialog).replace(dialog);
                if let Some(previous) = previous {
                    let _ = previous.dismiss().await;
                }
                self.dialog_waiting.notify_waiters();
                Ok(())
            }
            _ => {
                let accepted = dialog.accept(None).await;
                self.push(
                    EventKind::Dialog,
                    format!("{kind} {message:?} accepted"),
                    kind.clone(),
                );
                accepted
            }
        }
    }

    /// Whether a confirm or prompt waits for an answer.
    pub fn dialog_pending(&self) -> bool {
        lock(&self.dialog).is_some()
    }

    /// Takes the dialog that waits for an answer.
    pub fn take_dialog(&self) -> Option<Dialog> {
        lock(&self.dialog).take()
    }

    /// Saves a download under /workspace/downloads and reports where. The directory is made and
    /// the name chosen as the sandbox user; the driver, which writes the file, runs as that user.
    pub async fn download_started(&self, download: Download) -> playwright_rs::Result<()> {
        let name = safe_file_name(download.suggested_filename());
        let place = {
            let dir = self.downloads.clone();
            let name = name.clone();
            as_user_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                Ok(unique_path(&dir, &name))
            })
            .await
        };
        let path = match place {
            Ok(path) => path,
            Err(e) => {
                self.push(
                    EventKind::Download,
                    format!(
                        "download {name:?} failed: cannot create {}: {e}",
                        self.downloads.display()
                    ),
                    String::new(),
                );
                return Ok(());
            }
        };
        match download.save_as(&path).await {
            Ok(()) => {
                let size = {
                    let path = path.clone();
                    as_user_blocking(move || std::fs::metadata(&path).map(|m| m.len()))
                        .await
                        .unwrap_or(0)
                };
                self.push(
                    EventKind::Download,
                    format!(
                        "downloaded {} ({size} bytes) from {}",
                        path.display(),
                        download.url()
                    ),
                    path.display().to_string(),
                );
            }
            Err(e) => self.push(
                EventKind::Download,
                format!("download {name:?} from {} failed: {e}", download.url()),
                String::new(),
            ),
        }
        Ok(())
    }

    /// A tab opened (by us or by the page); the session sorts out which.
    pub fn page_opened(&self, page: Page) {
        lock(&self.opened).push(page);
    }

    /// Tabs opened since the last call.
    pub fn take_opened(&self) -> Vec<Page> {
        std::mem::take(&mut *lock(&self.opened))
    }

    /// Chromium went away; the next call starts it anew.
    pub fn mark_crashed(&self) {
        self.crashed.store(true, Ordering::SeqCst);
    }

    /// A renderer died; Chromium restarts with the next call (the page is unusable anyway).
    pub fn page_crashed(&self) {
        self.mark_crashed();
    }

    /// Whether the browser died since it was started; clears the mark.
    pub fn take_crashed(&self) -> bool {
        self.crashed.swap(false, Ordering::SeqCst)
    }
}

/// Runs file work on the blocking pool as the sandbox user (`privileges::as_user`).
async fn as_user_blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let done = tokio::task::spawn_blocking(move || crate::privileges::as_user(work)).await;
    match done {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            e.to_string(),
        )),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A download's suggested name made safe: no directories, no hidden or empty names.
fn safe_file_name(suggested: &str) -> String {
    let base = suggested.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "download".to_string()
    } else {
        cleaned.chars().take(200).collect()
    }
}

/// `dir/name`, or `dir/name (2)`, ... when taken: a download never overwrites a file.
fn unique_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (2..)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_cannot_escape_the_directory() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("..\\x.txt"), "x.txt");
        assert_eq!(safe_file_name(".."), "download");
        assert_eq!(safe_file_name(""), "download");
        assert_eq!(safe_file_name("report.csv"), "report.csv");
    }

    #[test]
    fn downloads_never_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.csv"), "x").expect("write");
        assert_eq!(
            unique_path(dir.path(), "a.csv"),
            dir.path().join("a (2).csv")
        );
        assert_eq!(unique_path(dir.path(), "b"), dir.path().join("b"));
    }
}
