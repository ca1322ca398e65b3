//! The sandbox's headless Chromium: the four seed tools (browser_goto, browser_click,
//! browser_type, browser_snapshot) and the extended ones. Each is one gRPC call; a sandbox whose
//! daemon lacks a call answers UNIMPLEMENTED, which becomes an `isError` result saying so.

use std::time::Duration;

use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{
    BrowserActionResponse, BrowserAriaSnapshotRequest, BrowserClickRequest, BrowserDialogRequest,
    BrowserEvaluateRequest, BrowserEvent, BrowserGotoRequest, BrowserHoverRequest,
    BrowserNavigateRequest, BrowserPressRequest, BrowserScreenshotRequest, BrowserScrollRequest,
    BrowserSelectOptionRequest, BrowserSnapshotRequest, BrowserTabsRequest, BrowserTarget,
    BrowserTypeRequest, BrowserUploadFileRequest, BrowserWaitRequest,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ToolError;
use crate::host_conn::{with_sandbox, HostChannel, RUN_MARGIN};
use crate::ids::SandboxId;
use crate::results::{insert_if, json_ok, json_with_images, respond, Outcome, ToolResult};
use crate::server::Bridge;

/// An element: a ref from browser_snapshot, or a CSS selector.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Target {
    /// A ref from the last snapshot, e.g. "ref_3" (preferred).
    #[serde(default)]
    pub ref_id: Option<String>,
    /// A CSS selector (Playwright's `text=Next` works too).
    #[serde(default)]
    pub selector: Option<String>,
}

impl Target {
    fn given(&self) -> bool {
        self.ref_id.as_deref().is_some_and(|s| !s.trim().is_empty())
            || self
                .selector
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty())
    }

    /// The target, required.
    fn required(&self) -> Result<BrowserTarget, ToolError> {
        if !self.given() {
            return Err(ToolError::BadRequest(
                "give ref_id (from browser_snapshot, e.g. \"ref_3\") or a CSS selector".into(),
            ));
        }
        Ok(self.proto())
    }

    /// The target when given.
    fn optional(&self) -> Option<BrowserTarget> {
        self.given().then(|| self.proto())
    }

    fn proto(&self) -> BrowserTarget {
        BrowserTarget {
            selector: self.selector.clone().unwrap_or_default(),
            ref_id: self.ref_id.clone().unwrap_or_default(),
        }
    }
}

/// Only the sandbox.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct NoArgs {
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_goto.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GotoArgs {
    /// The URL (http(s)://, or file:///workspace/… for files in the sandbox).
    pub url: String,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of element tools (click, hover).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ElementArgs {
    #[serde(flatten)]
    target: Target,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_type.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TypeArgs {
    #[serde(flatten)]
    target: Target,
    /// The text to type (replaces the field's value).
    pub text: String,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_aria_snapshot.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct AriaArgs {
    /// Most characters to return (default 20000).
    #[serde(default)]
    pub max_chars: Option<u32>,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_press.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PressArgs {
    /// Key or chord: "Enter", "Tab", "ArrowDown", "Control+a".
    pub key: String,
    /// Optional element to focus first.
    #[serde(flatten)]
    target: Target,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_scroll.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ScrollArgs {
    /// Scroll this element into view instead (dx/dy ignored).
    #[serde(flatten)]
    target: Target,
    /// Pixels right.
    #[serde(default)]
    pub dx: Option<i32>,
    /// Pixels down (both 0: one screen down).
    #[serde(default)]
    pub dy: Option<i32>,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Where browser_navigate goes.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NavAction {
    /// History back.
    Back,
    /// History forward.
    Forward,
    /// Reload the page.
    Reload,
}

/// Arguments of browser_navigate.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NavigateArgs {
    /// "back", "forward" or "reload".
    pub action: NavAction,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_wait.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct WaitArgs {
    /// Wait for this text to appear.
    #[serde(default)]
    pub text: Option<String>,
    /// Wait for this text to disappear.
    #[serde(default)]
    pub text_gone: Option<String>,
    /// Wait for the URL to match (glob or substring).
    #[serde(default)]
    pub url: Option<String>,
    /// Or just wait this many seconds.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Give up after this many seconds (default 30).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_select_option.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SelectArgs {
    #[serde(flatten)]
    target: Target,
    /// Option values or labels to select.
    pub values: Vec<String>,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_evaluate.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EvaluateArgs {
    /// A JS expression (`document.title`) or function (`(el) => el.value`).
    pub expression: String,
    /// Optional element passed to the function.
    #[serde(flatten)]
    target: Target,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// What browser_tabs does.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TabAction {
    /// List tabs.
    List,
    /// Open a tab.
    New,
    /// Switch to a tab.
    Select,
    /// Close a tab.
    Close,
}

/// Arguments of browser_tabs.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TabsArgs {
    /// "list", "new", "select" or "close".
    pub action: TabAction,
    /// Tab index for select/close.
    #[serde(default)]
    pub index: Option<u32>,
    /// URL for new.
    #[serde(default)]
    pub url: Option<String>,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_dialog.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DialogArgs {
    /// true: OK; false: Cancel.
    pub accept: bool,
    /// The answer to a prompt().
    #[serde(default)]
    pub prompt_text: Option<String>,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_upload_file.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UploadArgs {
    #[serde(flatten)]
    target: Target,
    /// Files in the sandbox (relative to /workspace).
    pub paths: Vec<String>,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of browser_screenshot.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ScreenshotArgs {
    /// The whole page instead of the viewport.
    #[serde(default)]
    pub full_page: bool,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Deadline of a browser call: the sandbox's own navigation timeout (30 s) plus a margin, so
/// the sandbox's error, which says what timed out, arrives first.
const BROWSER_DEADLINE: Duration = Duration::from_secs(30);

/// A browser request with its deadline.
fn browser_call<T>(sb: &SandboxId, msg: T) -> Result<tonic::Request<T>, ToolError> {
    let mut req = with_sandbox(sb, msg)?;
    req.set_timeout(BROWSER_DEADLINE + RUN_MARGIN);
    Ok(req)
}

fn events_json(events: &[BrowserEvent]) -> Value {
    Value::Array(
        events
            .iter()
            .map(|e| json!({ "kind": e.kind, "message": e.message }))
            .collect(),
    )
}

/// `v` plus `events` when something happened (a dialog, a popup, a download, a restart).
fn with_events(mut v: Value, events: &[BrowserEvent]) -> Value {
    insert_if(&mut v, !events.is_empty(), "events", events_json(events));
    v
}

/// `{url, title}`, plus `events` when something happened.
fn page_json(url: String, title: String, events: &[BrowserEvent]) -> Value {
    with_events(json!({ "url": url, "title": title }), events)
}

fn action_json(r: BrowserActionResponse) -> Value {
    with_events(
        json!({ "url": r.url, "title": r.title, "navigated": r.navigated }),
        &r.events,
    )
}

fn status(rpc: &'static str) -> impl Fn(tonic::Status) -> ToolError {
    move |s| ToolError::from_status(rpc, &s)
}

#[tool_router(router = browser_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(description = "Open a URL in the sandbox's browser.")]
    async fn browser_goto(&self, Parameters(a): Parameters<GotoArgs>) -> ToolResult {
        respond(self.goto(a).await)
    }

    #[tool(description = "Click an element by ref_id (from browser_snapshot) or CSS selector.")]
    async fn browser_click(&self, Parameters(a): Parameters<ElementArgs>) -> ToolResult {
        respond(self.click(a).await)
    }

    #[tool(
        description = "Type text into a field by ref_id (from browser_snapshot) or CSS selector."
    )]
    async fn browser_type(&self, Parameters(a): Parameters<TypeArgs>) -> ToolResult {
        respond(self.type_text(a).await)
    }

    #[tool(
        description = "The page now: url, title, text, interactive elements with refs ([ref_1] button \"OK\") and a screenshot.",
        annotations(read_only_hint = true)
    )]
    async fn browser_snapshot(&self, Parameters(a): Parameters<NoArgs>) -> ToolResult {
        respond(self.snapshot(a).await)
    }

    #[tool(
        description = "Accessibility outline of the page (roles, names, refs), incl. iframes.",
        annotations(read_only_hint = true)
    )]
    async fn browser_aria_snapshot(&self, Parameters(a): Parameters<AriaArgs>) -> ToolResult {
        respond(self.aria(a).await)
    }

    #[tool(description = "Press a key or chord, on an element or the page.")]
    async fn browser_press(&self, Parameters(a): Parameters<PressArgs>) -> ToolResult {
        respond(self.press(a).await)
    }

    #[tool(description = "Scroll the page by dx/dy pixels, or an element into view.")]
    async fn browser_scroll(&self, Parameters(a): Parameters<ScrollArgs>) -> ToolResult {
        respond(self.scroll(a).await)
    }

    #[tool(description = "Go back, forward, or reload.")]
    async fn browser_navigate(&self, Parameters(a): Parameters<NavigateArgs>) -> ToolResult {
        respond(self.navigate(a).await)
    }

    #[tool(description = "Wait for text to appear or vanish, for the URL, or for seconds.")]
    async fn browser_wait(&self, Parameters(a): Parameters<WaitArgs>) -> ToolResult {
        respond(self.wait(a).await)
    }

    #[tool(description = "Select options of a <select> by value or label.")]
    async fn browser_select_option(&self, Parameters(a): Parameters<SelectArgs>) -> ToolResult {
        respond(self.select(a).await)
    }

    #[tool(description = "Move the mouse over an element.")]
    async fn browser_hover(&self, Parameters(a): Parameters<ElementArgs>) -> ToolResult {
        respond(self.hover(a).await)
    }

    #[tool(description = "Evaluate JavaScript in the page; returns the result as JSON.")]
    async fn browser_evaluate(&self, Parameters(a): Parameters<EvaluateArgs>) -> ToolResult {
        respond(self.evaluate(a).await)
    }

    #[tool(description = "List, open, select or close browser tabs.")]
    async fn browser_tabs(&self, Parameters(a): Parameters<TabsArgs>) -> ToolResult {
        respond(self.tabs(a).await)
    }

    #[tool(description = "Accept or dismiss the confirm()/prompt() dialog the page waits on.")]
    async fn browser_dialog(&self, Parameters(a): Parameters<DialogArgs>) -> ToolResult {
        respond(self.dialog(a).await)
    }

    #[tool(description = "Set the files of an <input type=file> from sandbox paths.")]
    async fn browser_upload_file(&self, Parameters(a): Parameters<UploadArgs>) -> ToolResult {
        respond(self.upload(a).await)
    }

    #[tool(
        description = "PNG screenshot of the viewport or full page.",
        annotations(read_only_hint = true)
    )]
    async fn browser_screenshot(&self, Parameters(a): Parameters<ScreenshotArgs>) -> ToolResult {
        respond(self.screenshot(a).await)
    }
}

impl Bridge {
    async fn browser(
        &self,
        sandbox_id: Option<&str>,
    ) -> Result<(SandboxId, SandboxClient<HostChannel>), ToolError> {
        let sandbox = self.session.resolve(sandbox_id).await?;
        let client = self.session.host().sandbox().await?;
        Ok((sandbox, client))
    }

    async fn goto(&self, a: GotoArgs) -> Outcome {
        if a.url.trim().is_empty() {
            return Err(ToolError::BadRequest(
                "url is empty: give a full URL such as https://example.com/".into(),
            ));
        }
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserGotoRequest {
            url: a.url,
            timeout_seconds: 0.0,
        };
        let r = c
            .browser_goto(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserGoto"))?
            .into_inner();
        json_ok(page_json(r.url, r.title, &r.events))
    }

    async fn click(&self, a: ElementArgs) -> Outcome {
        let t = a.target.required()?;
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserClickRequest {
            selector: t.selector,
            ref_id: t.ref_id,
        };
        let r = c
            .browser_click(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserClick"))?
            .into_inner();
        json_ok(with_events(
            json!({ "url": r.url, "title": r.title, "navigated": r.navigated }),
            &r.events,
        ))
    }

    async fn type_text(&self, a: TypeArgs) -> Outcome {
        let t = a.target.required()?;
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserTypeRequest {
            selector: t.selector,
            ref_id: t.ref_id,
            text: a.text,
        };
        let r = c
            .browser_type(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserType"))?
            .into_inner();
        json_ok(page_json(r.url, r.title, &r.events))
    }

    async fn snapshot(&self, a: NoArgs) -> Outcome {
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let r = c
            .browser_snapshot(browser_call(&sb, BrowserSnapshotRequest {})?)
            .await
            .map_err(status("BrowserSnapshot"))?
            .into_inner();
        let png = r.screenshot.clone();
        json_with_images(
            with_events(
                json!({
                    "url": r.url,
                    "title": r.title,
                    "screenshot": r.screenshot,
                    "text": r.text,
                    "elements": r.elements,
                }),
                &r.events,
            ),
            vec![png],
        )
    }

    async fn aria(&self, a: AriaArgs) -> Outcome {
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserAriaSnapshotRequest {
            max_chars: a.max_chars.unwrap_or(0),
        };
        let r = c
            .browser_aria_snapshot(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserAriaSnapshot"))?
            .into_inner();
        let mut v = json!({ "url": r.url, "title": r.title, "snapshot": r.snapshot });
        insert_if(&mut v, r.truncated, "truncated", json!(true));
        insert_if(&mut v, r.truncated, "total_chars", json!(r.total_chars));
        json_ok(with_events(v, &r.events))
    }

    async fn press(&self, a: PressArgs) -> Outcome {
        if a.key.trim().is_empty() {
            return Err(ToolError::BadRequest(
                "key is empty: give e.g. \"Enter\" or \"Control+a\"".into(),
            ));
        }
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserPressRequest {
            target: a.target.optional(),
            key: a.key,
        };
        let r = c
            .browser_press(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserPress"))?
            .into_inner();
        json_ok(action_json(r))
    }

    async fn scroll(&self, a: ScrollArgs) -> Outcome {
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserScrollRequest {
            target: a.target.optional(),
            dx: a.dx.unwrap_or(0),
            dy: a.dy.unwrap_or(0),
        };
        let r = c
            .browser_scroll(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserScroll"))?
            .into_inner();
        json_ok(action_json(r))
    }

    async fn navigate(&self, a: NavigateArgs) -> Outcome {
        let action = match a.action {
            NavAction::Back => "back",
            NavAction::Forward => "forward",
            NavAction::Reload => "reload",
        };
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserNavigateRequest {
            action: action.into(),
        };
        let r = c
            .browser_navigate(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserNavigate"))?
            .into_inner();
        json_ok(action_json(r))
    }

    async fn wait(&self, a: WaitArgs) -> Outcome {
        let given = [
            a.text.is_some(),
            a.text_gone.is_some(),
            a.url.is_some(),
            a.seconds.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(ToolError::BadRequest(
                "give exactly one of text, text_gone, url or seconds".into(),
            ));
        }
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserWaitRequest {
            text: a.text.unwrap_or_default(),
            text_gone: a.text_gone.unwrap_or_default(),
            url: a.url.unwrap_or_default(),
            seconds: a.seconds.unwrap_or(0.0),
            timeout_seconds: a.timeout.unwrap_or(0.0),
        };
        // It may wait up to its own timeout (or `seconds`) before answering.
        let waits = req.seconds.max(if req.timeout_seconds > 0.0 {
            req.timeout_seconds
        } else {
            30.0
        });
        let mut call = browser_call(&sb, req)?;
        call.set_timeout(Duration::from_secs_f64(waits.clamp(0.0, 3600.0)) + RUN_MARGIN);
        let r = c
            .browser_wait(call)
            .await
            .map_err(status("BrowserWait"))?
            .into_inner();
        json_ok(action_json(r))
    }

    async fn select(&self, a: SelectArgs) -> Outcome {
        let t = a.target.required()?;
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserSelectOptionRequest {
            target: Some(t),
            values: a.values,
        };
        let r = c
            .browser_select_option(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserSelectOption"))?
            .into_inner();
        json_ok(action_json(r))
    }

    async fn hover(&self, a: ElementArgs) -> Outcome {
        let t = a.target.required()?;
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserHoverRequest { target: Some(t) };
        let r = c
            .browser_hover(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserHover"))?
            .into_inner();
        json_ok(action_json(r))
    }

    async fn evaluate(&self, a: EvaluateArgs) -> Outcome {
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserEvaluateRequest {
            expression: a.expression,
            target: a.target.optional(),
        };
        let r = c
            .browser_evaluate(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserEvaluate"))?
            .into_inner();
        let result: Value =
            serde_json::from_str(&r.result_json).unwrap_or(Value::String(r.result_json));
        json_ok(with_events(
            json!({ "result": result, "url": r.url, "title": r.title }),
            &r.events,
        ))
    }

    async fn tabs(&self, a: TabsArgs) -> Outcome {
        let action = match a.action {
            TabAction::List => "list",
            TabAction::New => "new",
            TabAction::Select => "select",
            TabAction::Close => "close",
        };
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserTabsRequest {
            action: action.into(),
            index: a.index,
            url: a.url.unwrap_or_default(),
        };
        let r = c
            .browser_tabs(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserTabs"))?
            .into_inner();
        let tabs: Vec<Value> = r
            .tabs
            .iter()
            .map(
                |t| json!({ "index": t.index, "url": t.url, "title": t.title, "active": t.active }),
            )
            .collect();
        json_ok(with_events(json!({ "tabs": tabs }), &r.events))
    }

    async fn dialog(&self, a: DialogArgs) -> Outcome {
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserDialogRequest {
            accept: a.accept,
            prompt_text: a.prompt_text.unwrap_or_default(),
        };
        let r = c
            .browser_dialog(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserDialog"))?
            .into_inner();
        json_ok(action_json(r))
    }

    async fn upload(&self, a: UploadArgs) -> Outcome {
        let t = a.target.required()?;
        if a.paths.is_empty() {
            return Err(ToolError::BadRequest(
                "paths is empty: give files in the sandbox (write them with file_write)".into(),
            ));
        }
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserUploadFileRequest {
            target: Some(t),
            paths: a.paths,
        };
        let r = c
            .browser_upload_file(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserUploadFile"))?
            .into_inner();
        json_ok(action_json(r))
    }

    async fn screenshot(&self, a: ScreenshotArgs) -> Outcome {
        let (sb, mut c) = self.browser(a.sandbox_id.as_deref()).await?;
        let req = BrowserScreenshotRequest {
            full_page: a.full_page,
        };
        let r = c
            .browser_screenshot(browser_call(&sb, req)?)
            .await
            .map_err(status("BrowserScreenshot"))?
            .into_inner();
        // The PNG goes out as an image block only; repeating it as base64 text would waste tokens.
        json_with_images(
            with_events(
                json!({ "url": r.url, "title": r.title, "width": r.width, "height": r.height }),
                &r.events,
            ),
            vec![r.png],
        )
    }
}
