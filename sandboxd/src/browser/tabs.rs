//! Calls on the browser's windows: list, open, select and close tabs; answer a confirm or prompt.

use std::time::Duration;

use agent_runtime_proto::sets::{DialogType, EventKind, TabAction};
use agent_runtime_proto::v1 as pb;

use super::error::{BrowserError, Result};
use super::page::check_url;
use super::session::Browser;
use super::settle::{self, Settled};

/// How long an action a dialog interrupted has to finish once the dialog is answered.
const AFTER_DIALOG: Duration = Duration::from_secs(5);

impl Browser {
    /// Lists, opens, selects or closes tabs.
    pub async fn tabs(&self, req: pb::BrowserTabsRequest) -> Result<pb::BrowserTabsResponse> {
        let action = req.action.trim().to_ascii_lowercase();
        let mut turn = self.turn().await?;
        let action = match action.as_str() {
            "" => TabAction::List,
            other => other.parse().map_err(|_| {
                BrowserError::invalid(format!(
                    "unknown tabs action {other:?}; use list, new, select or close"
                ))
            })?,
        };
        match action {
            TabAction::List => {}
            TabAction::New => {
                let page = self.new_tab(&mut turn.state).await?;
                if !req.url.is_empty() {
                    let url = check_url(&req.url)?;
                    page.goto(&url, None).await.map_err(|e| self.classify(e))?;
                }
            }
            TabAction::Select => {
                let index = req
                    .index
                    .ok_or_else(|| BrowserError::invalid("select needs the tab's index"))?;
                let page = Self::select_tab(&mut turn.state, index as usize)?;
                let _ = page.bring_to_front().await;
            }
            TabAction::Close => {
                self.close_tab(&mut turn.state, req.index.map(|i| i as usize))
                    .await?;
            }
        }
        let (pages, active) = Self::tab_list(&turn.state);
        let mut tabs = Vec::with_capacity(pages.len());
        for (i, page) in pages.iter().enumerate() {
            let at = self.location(page).await;
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
        let dialog_type = dialog.type_().to_string();
        let message = dialog.message().to_string();
        let answered = if req.accept {
            let text =
                (dialog_type == DialogType::Prompt.as_str()).then_some(req.prompt_text.as_str());
            dialog.accept(text).await
        } else {
            dialog.dismiss().await
        };
        answered.map_err(|e| self.classify(e))?;
        self.shared.push(
            EventKind::Dialog,
            format!(
                "{dialog_type} {message:?} {}",
                if req.accept { "accepted" } else { "dismissed" }
            ),
            dialog_type,
        );
        // The action the dialog interrupted now finishes; give it a moment.
        let deadline = tokio::time::Instant::now() + AFTER_DIALOG;
        while self.blocked_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let turn = self.turn().await?;
        let page = turn.page.clone();
        let settled = Settled {
            navigated: false,
            how: settle::dom_settle(&page).await,
            title: None,
        };
        drop(turn);
        self.respond(&page, settled).await
    }
}
