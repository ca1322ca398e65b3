//! Calls that act on one element, named by a ref or a selector: click, type, hover, select an
//! option, give a file input its files.

use agent_runtime_proto::v1 as pb;
use playwright_rs::protocol::Locator;
use playwright_rs::{ClickOptions, FillOptions, HoverOptions, Position, SelectOption};
use serde::Deserialize;

use super::error::{self, BrowserError, Result};
use super::js;
use super::refs::Target;
use super::session::Browser;
use super::settle::ACTION_TIMEOUT_MS;

impl Browser {
    /// Clicks an element, or a point of the viewport.
    pub async fn click(&self, req: pb::BrowserClickRequest) -> Result<pb::BrowserActionResponse> {
        if let Some(point) = req.point {
            let named = req
                .target
                .as_ref()
                .is_some_and(|t| !t.selector.trim().is_empty() || !t.ref_id.trim().is_empty())
                || !req.selector.trim().is_empty()
                || !req.ref_id.trim().is_empty();
            if named {
                return Err(BrowserError::invalid(
                    "give either a point (x, y) or an element (ref_id or selector), not both",
                ));
            }
            return self.click_point(point).await;
        }
        let target = Target::from_request(req.target.as_ref(), &req.selector, &req.ref_id)?;
        let turn = self.turn().await?;
        let locator = target.resolve(&turn.page, &turn.state.refs).await?;
        let found = check(&locator, &target, Action::Click).await?;
        let page = turn.page.clone();
        let mut options = ClickOptions::builder().timeout(ACTION_TIMEOUT_MS);
        let mut again = ClickOptions::builder()
            .timeout(ACTION_TIMEOUT_MS)
            .force(true);
        let mut hover = HoverOptions::builder().timeout(ACTION_TIMEOUT_MS);
        if let Some(at) = found.at {
            options = options.position(at);
            again = again.position(at);
            hover = hover.position(at);
        }
        if found.through {
            // Its own label lies over it: Playwright would wait for the field to be hit, but a
            // click there is the field's.
            options = options.force(true);
            hover = hover.force(true);
        }
        let (watching, through) = (found.watching, found.through);
        let (options, again, hover) = (options.build(), again.build(), hover.build());
        self.act(turn, async move {
            locator.click(Some(options)).await?;
            // Through its own label, the press is the label's.
            if !watching || through {
                return Ok(());
            }
            // A page can change under the pointer as it arrives (an icon swapped for its hover
            // image has no box until the image is in): the press then lands on what is under
            // the element, and the click on neither. Then the pointer goes first, as a person's
            // does, the page has a frame to react, and the press follows (not waiting for
            // stillness again: the hover did). A press that reached it is never made again.
            let reached = page
                .evaluate::<(), Reached>(js::CLICK_REACHED, None)
                .await
                .unwrap_or(Reached {
                    reached: true,
                    connected: false,
                });
            if reached.reached || !reached.connected {
                return Ok(());
            }
            tracing::debug!("the press missed the element as the page changed under the pointer; again, pointer first");
            locator.hover(Some(hover)).await?;
            let _ = page
                .evaluate::<u64, bool>(js::POINTER_SETTLE, Some(&POINTER_SETTLE_MS))
                .await;
            locator.click(Some(again)).await
        })
        .await
        .map_err(|e| e.naming(target.agent_ref().as_deref()))
    }

    /// Clicks the point `at` of the viewport, which must be inside it.
    async fn click_point(&self, at: pb::BrowserPoint) -> Result<pb::BrowserActionResponse> {
        if !(at.x.is_finite() && at.y.is_finite()) || at.x < 0.0 || at.y < 0.0 {
            return Err(BrowserError::invalid(
                "x and y are viewport pixels from its top-left corner, 0 or more",
            ));
        }
        let turn = self.turn().await?;
        let page = turn.page.clone();
        let (width, height): (f64, f64) = page
            .evaluate::<(), (f64, f64)>(js::VIEWPORT, None)
            .await
            .map_err(|e| self.classify(e))?;
        if at.x >= width || at.y >= height {
            return Err(BrowserError::invalid(format!(
                "({}, {}) is outside the viewport ({width}x{height}); scroll to bring what you \
                 want into view, then click where the new screenshot shows it",
                at.x, at.y
            )));
        }
        self.act(
            turn,
            async move { page.mouse().click(at.x, at.y, None).await },
        )
        .await
    }

    /// Replaces an input's text (or types into any other focusable element).
    pub async fn type_text(&self, req: pb::BrowserTypeRequest) -> Result<pb::BrowserPage> {
        let target = Target::from_request(req.target.as_ref(), &req.selector, &req.ref_id)?;
        let turn = self.turn().await?;
        let locator = target.resolve(&turn.page, &turn.state.refs).await?;
        check(&locator, &target, Action::Type).await?;
        let page = turn.page.clone();
        let text = req.text;
        let r = self
            .act(turn, async move {
                let options = FillOptions::builder().timeout(ACTION_TIMEOUT_MS).build();
                match locator.fill(&text, Some(options)).await {
                    Err(e) if error::cannot_fill(&e.to_string()) => {
                        locator.click(None).await?;
                        page.keyboard().type_text(&text, None).await
                    }
                    other => other,
                }
            })
            .await
            .map_err(|e| e.naming(target.agent_ref().as_deref()))?;
        Ok(pb::BrowserPage {
            url: r.url,
            title: r.title,
            settled: r.settled,
            events: r.events,
        })
    }

    /// Moves the mouse over an element.
    pub async fn hover(&self, req: pb::BrowserHoverRequest) -> Result<pb::BrowserActionResponse> {
        let target = Target::required(req.target.as_ref())?;
        let turn = self.turn().await?;
        let locator = target.resolve(&turn.page, &turn.state.refs).await?;
        check(&locator, &target, Action::Hover).await?;
        let options = HoverOptions::builder().timeout(ACTION_TIMEOUT_MS).build();
        self.act(turn, async move { locator.hover(Some(options)).await })
            .await
            .map_err(|e| e.naming(target.agent_ref().as_deref()))
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

    /// Gives an `<input type=file>` files from the workspace.
    pub async fn upload_file(
        &self,
        req: pb::BrowserUploadFileRequest,
        workspace: &crate::workspace::Workspace,
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
}

/// An action [`check`] looks ahead for.
#[derive(Clone, Copy)]
enum Action {
    Click,
    Type,
    Hover,
}

/// Longest wait, after the pointer arrived for a second try, for the page to stop changing.
const POINTER_SETTLE_MS: u64 = 300;

/// What `js::CLICK_REACHED` says: whether the click's press reached the element, and whether
/// it is still on the page.
#[derive(Deserialize)]
struct Reached {
    reached: bool,
    connected: bool,
}

/// What `js::ACTION_CHECK` says.
#[derive(Deserialize)]
struct Check {
    problem: Option<String>,
    x: Option<f64>,
    y: Option<f64>,
    #[serde(default)]
    through: bool,
}

/// How to click an element [`check`] passed.
#[derive(Default)]
struct Clear {
    /// Where in its box, when not its centre.
    at: Option<Position>,
    /// Its own label lies over it: click through.
    through: bool,
    /// The check ran, so a click's press is watched (see `js::CLICK_REACHED`).
    watching: bool,
}

/// Fails at once, saying why, when the element cannot take the action (hidden, disabled,
/// read-only, covered) instead of letting Playwright wait out its timeout; else how to click it
/// (where, when its centre is on a control nested in it; through its own label). A check that
/// cannot run leaves the verdict to Playwright.
async fn check(locator: &Locator, target: &Target, action: Action) -> Result<Clear> {
    let kind = match action {
        Action::Click => "click",
        Action::Type => "type",
        Action::Hover => "hover",
    };
    let Ok(found) = locator
        .evaluate::<Check, &str>(js::ACTION_CHECK, Some(kind))
        .await
    else {
        return Ok(Clear::default());
    };
    if let Some(problem) = found.problem {
        return Err(BrowserError::NotActionable(format!(
            "{} {problem}",
            target.describe()
        )));
    }
    Ok(Clear {
        at: found.x.zip(found.y).map(|(x, y)| Position { x, y }),
        through: found.through,
        watching: true,
    })
}
