//! The sandbox's headless Chromium: the four seed tools (browser_goto, browser_click,
//! browser_type, browser_snapshot) and the extended ones. Each is one gRPC call; a sandbox whose
//! daemon lacks a call answers UNIMPLEMENTED, which becomes an `isError` result saying so.

use std::time::Duration;

use agent_runtime_client::{NavigateAction, TabAction};
use agent_runtime_proto::v1::{
    BrowserActionResponse, BrowserAriaSnapshotRequest, BrowserAriaSnapshotResponse,
    BrowserClickRequest, BrowserDialogRequest, BrowserEvaluateRequest, BrowserEvaluateResponse,
    BrowserEvent, BrowserFindRequest, BrowserFindResponse, BrowserGotoRequest, BrowserHoverRequest,
    BrowserNavigateRequest, BrowserPage, BrowserPoint, BrowserPressRequest,
    BrowserScreenshotRequest, BrowserScreenshotResponse, BrowserScrollRequest,
    BrowserSelectOptionRequest, BrowserSnapshotRequest, BrowserSnapshotResponse,
    BrowserTabsRequest, BrowserTabsResponse, BrowserTarget, BrowserTypeRequest,
    BrowserUploadFileRequest, BrowserWaitRequest,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::call::{Reply, SandboxRef};
use crate::error::ToolError;
use crate::host_conn::RUN_MARGIN;
use crate::results::{insert_if, json_ok, json_with_image_field, Outcome, ToolResult};
use crate::server::Bridge;

/// An element: a ref from browser_snapshot, or a CSS selector.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Target {
    #[serde(default)]
    pub ref_id: Option<String>,
    // A CSS selector (Playwright's text=Next too); the name says enough for the schema.
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

/// Arguments of browser_goto.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GotoArgs {
    /// http(s)://… or file:///workspace/…
    pub url: String,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of element tools (click, hover).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ElementArgs {
    #[serde(flatten)]
    target: Target,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_click: an element, or a point of the screenshot.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ClickArgs {
    #[serde(flatten)]
    target: Target,
    /// Screenshot pixels from the left (with y).
    #[serde(default)]
    pub x: Option<f64>,
    #[serde(default)]
    pub y: Option<f64>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_type.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TypeArgs {
    #[serde(flatten)]
    target: Target,
    pub text: String,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_snapshot.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SnapshotArgs {
    /// Default 12000.
    #[serde(default)]
    pub max_chars: Option<u32>,
    /// Page of the last snapshot (same refs).
    #[serde(default)]
    pub page: Option<u32>,
    /// Elements after this ref.
    #[serde(default)]
    pub after_ref: Option<String>,
    /// Default: on page 1.
    #[serde(default)]
    pub screenshot: Option<bool>,
    // Each element line's box, ` at (x,y) WxH` (no description: tools/list stays small).
    #[serde(default)]
    pub boxes: Option<bool>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_find.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct FindArgs {
    pub query: String,
    /// Default 20.
    #[serde(default)]
    pub max_results: Option<u32>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_aria_snapshot.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct AriaArgs {
    /// Default 20000.
    #[serde(default)]
    pub max_chars: Option<u32>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_press.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PressArgs {
    pub key: String,
    /// Optional element to focus first.
    #[serde(flatten)]
    target: Target,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_scroll.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ScrollArgs {
    /// Scroll this element into view instead (dx/dy ignored).
    #[serde(flatten)]
    target: Target,
    #[serde(default)]
    pub dx: Option<i32>,
    #[serde(default)]
    pub dy: Option<i32>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_navigate.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NavigateArgs {
    pub action: NavigateAction,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_wait.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct WaitArgs {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub text_gone: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Default 30 s.
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_select_option.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SelectArgs {
    #[serde(flatten)]
    target: Target,
    pub values: Vec<String>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_evaluate.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EvaluateArgs {
    /// Expression, or function of the element.
    pub expression: String,
    /// Optional element passed to the function.
    #[serde(flatten)]
    target: Target,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_tabs.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TabsArgs {
    pub action: TabAction,
    /// For select/close.
    #[serde(default)]
    pub index: Option<u32>,
    /// For new.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_dialog.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DialogArgs {
    /// true: OK; false: Cancel.
    pub accept: bool,
    #[serde(default)]
    pub prompt_text: Option<String>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_upload_file.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UploadArgs {
    #[serde(flatten)]
    target: Target,
    pub paths: Vec<String>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of browser_screenshot.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ScreenshotArgs {
    #[serde(default)]
    pub full_page: bool,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Deadline of a browser call: the sandbox's own navigation timeout (30 s) plus a margin, so
/// the sandbox's error, which says what timed out, arrives first.
fn browser_deadline<T>(_: &T) -> Duration {
    Duration::from_secs(30) + RUN_MARGIN
}

/// browser_wait may wait up to its own timeout (or `seconds`) before answering.
fn wait_deadline(r: &BrowserWaitRequest) -> Duration {
    let timeout = if r.timeout_seconds > 0.0 {
        r.timeout_seconds
    } else {
        30.0
    };
    Duration::from_secs_f64(r.seconds.max(timeout).clamp(0.0, 3600.0)) + RUN_MARGIN
}

crate::call::calls! {
    BrowserGotoRequest { deadline: browser_deadline, }
    BrowserClickRequest { deadline: browser_deadline, }
    BrowserTypeRequest { deadline: browser_deadline, }
    BrowserSnapshotRequest { deadline: browser_deadline, }
    BrowserAriaSnapshotRequest { deadline: browser_deadline, }
    BrowserFindRequest { deadline: browser_deadline, }
    BrowserPressRequest { deadline: browser_deadline, }
    BrowserScrollRequest { deadline: browser_deadline, }
    BrowserNavigateRequest { deadline: browser_deadline, }
    BrowserWaitRequest { deadline: wait_deadline, }
    BrowserSelectOptionRequest { deadline: browser_deadline, }
    BrowserHoverRequest { deadline: browser_deadline, }
    BrowserEvaluateRequest { deadline: browser_deadline, }
    BrowserTabsRequest { deadline: browser_deadline, }
    BrowserDialogRequest { deadline: browser_deadline, }
    BrowserUploadFileRequest { deadline: browser_deadline, }
    BrowserScreenshotRequest { deadline: browser_deadline, }
}

/// `v` plus `events` when something happened (a dialog, a popup, a download, a restart).
fn with_events(mut v: Value, events: &[BrowserEvent]) -> Value {
    let events: Vec<Value> = events
        .iter()
        .map(|e| json!({ "kind": e.kind, "message": e.message }))
        .collect();
    insert_if(&mut v, !events.is_empty(), "events", Value::Array(events));
    v
}

/// `{url, title}`, plus `events` when something happened.
impl Reply for BrowserPage {
    fn reply(self) -> Outcome {
        json_ok(with_events(
            json!({ "url": self.url, "title": self.title }),
            &self.events,
        ))
    }
}

/// `{url, title, navigated}`, plus `events`.
impl Reply for BrowserActionResponse {
    fn reply(self) -> Outcome {
        json_ok(with_events(
            json!({ "url": self.url, "title": self.title, "navigated": self.navigated }),
            &self.events,
        ))
    }
}

/// `{url, title, screenshot, text, elements}` as structured content; the screenshot as an image
/// block and, in the text, a note in its place; `page`, `pages` and `more` when it did not all fit.
impl Reply for BrowserSnapshotResponse {
    fn reply(self) -> Outcome {
        let mut v = json!({
            "url": self.url,
            "title": self.title,
            "screenshot": self.screenshot,
            "text": self.text,
            "elements": self.elements,
        });
        insert_if(&mut v, self.pages > 1, "page", json!(self.page));
        insert_if(&mut v, self.pages > 1, "pages", json!(self.pages));
        insert_if(&mut v, !self.more.is_empty(), "more", json!(self.more));
        json_with_image_field(with_events(v, &self.events), "screenshot")
    }
}

/// `{url, title, elements, text, matches}`.
impl Reply for BrowserFindResponse {
    fn reply(self) -> Outcome {
        json_ok(with_events(
            json!({ "url": self.url, "title": self.title, "elements": self.elements,
                    "text": self.text, "matches": self.matches }),
            &self.events,
        ))
    }
}

/// `{url, title, snapshot}`, plus `truncated` and `total_chars` when cut.
impl Reply for BrowserAriaSnapshotResponse {
    fn reply(self) -> Outcome {
        let mut v = json!({ "url": self.url, "title": self.title, "snapshot": self.snapshot });
        insert_if(&mut v, self.truncated, "truncated", json!(true));
        insert_if(
            &mut v,
            self.truncated,
            "total_chars",
            json!(self.total_chars),
        );
        json_ok(with_events(v, &self.events))
    }
}

/// `{result, url, title}`: the result as JSON when it parses, else as text.
impl Reply for BrowserEvaluateResponse {
    fn reply(self) -> Outcome {
        let result: Value =
            serde_json::from_str(&self.result_json).unwrap_or(Value::String(self.result_json));
        json_ok(with_events(
            json!({ "result": result, "url": self.url, "title": self.title }),
            &self.events,
        ))
    }
}

/// `{tabs: [{index, url, title, active}]}`.
impl Reply for BrowserTabsResponse {
    fn reply(self) -> Outcome {
        let tabs: Vec<Value> = self
            .tabs
            .iter()
            .map(
                |t| json!({ "index": t.index, "url": t.url, "title": t.title, "active": t.active }),
            )
            .collect();
        json_ok(with_events(json!({ "tabs": tabs }), &self.events))
    }
}

/// `{url, title, width, height, screenshot}`: structured content carries the base64 PNG, the
/// text a note in its place, and the PNG goes out as an image block.
impl Reply for BrowserScreenshotResponse {
    fn reply(self) -> Outcome {
        json_with_image_field(
            with_events(
                json!({ "url": self.url, "title": self.title, "width": self.width,
                        "height": self.height, "screenshot": self.png }),
                &self.events,
            ),
            "screenshot",
        )
    }
}

/// `text` trimmed, or a bad request saying what to give.
fn non_empty(text: String, hint: &str) -> Result<String, ToolError> {
    if text.trim().is_empty() {
        return Err(ToolError::BadRequest(hint.to_owned()));
    }
    Ok(text)
}

#[tool_router(router = browser_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(description = "Open a URL.")]
    async fn browser_goto(&self, Parameters(a): Parameters<GotoArgs>) -> ToolResult {
        let url = non_empty(
            a.url,
            "url is empty: give a full URL such as https://example.com/",
        );
        let req = url.map(|url| BrowserGotoRequest {
            url,
            timeout_seconds: 0.0,
        });
        self.answer(&a.sandbox, req).await
    }

    #[tool(
        description = "Click an element (ref_id from browser_snapshot, or selector) or the point x, y."
    )]
    async fn browser_click(&self, Parameters(a): Parameters<ClickArgs>) -> ToolResult {
        let req = match (a.x, a.y) {
            (None, None) => a.target.required().map(|t| BrowserClickRequest {
                selector: t.selector,
                ref_id: t.ref_id,
                target: None,
                point: None,
            }),
            (Some(x), Some(y)) if !a.target.given() => Ok(BrowserClickRequest {
                point: Some(BrowserPoint { x, y }),
                ..Default::default()
            }),
            (Some(_), Some(_)) => Err(ToolError::BadRequest(
                "give either x and y or an element (ref_id or selector), not both".into(),
            )),
            _ => Err(ToolError::BadRequest(
                "give both x and y (viewport pixels, as in the screenshot)".into(),
            )),
        };
        self.answer(&a.sandbox, req).await
    }

    #[tool(description = "Replace a field's value with text.")]
    async fn browser_type(&self, Parameters(a): Parameters<TypeArgs>) -> ToolResult {
        let req = a.target.required().map(|t| BrowserTypeRequest {
            selector: t.selector,
            ref_id: t.ref_id,
            text: a.text,
            target: None,
        });
        self.answer(&a.sandbox, req).await
    }

    #[tool(
        description = "The page: url, title, text, elements with refs ([ref_1] button \"OK\"), screenshot; paged (see more).",
        annotations(read_only_hint = true)
    )]
    async fn browser_snapshot(&self, Parameters(a): Parameters<SnapshotArgs>) -> ToolResult {
        let page = a.page.unwrap_or(0);
        let after_ref = a.after_ref.unwrap_or_default();
        let first = page <= 1 && after_ref.trim().is_empty();
        let req = BrowserSnapshotRequest {
            max_chars: a.max_chars.unwrap_or(0),
            page,
            after_ref,
            no_screenshot: !a.screenshot.unwrap_or(first),
            boxes: a.boxes.unwrap_or(false),
        };
        self.answer(&a.sandbox, Ok(req)).await
    }

    #[tool(
        description = "Elements (with refs) and text matching words, without paging.",
        annotations(read_only_hint = true)
    )]
    async fn browser_find(&self, Parameters(a): Parameters<FindArgs>) -> ToolResult {
        let query = non_empty(a.query, "query is empty: give words such as \"search box\"");
        let req = query.map(|query| BrowserFindRequest {
            query,
            max_results: a.max_results.unwrap_or(0),
        });
        self.answer(&a.sandbox, req).await
    }

    #[tool(
        description = "Accessibility tree with refs, incl. iframes.",
        annotations(read_only_hint = true)
    )]
    async fn browser_aria_snapshot(&self, Parameters(a): Parameters<AriaArgs>) -> ToolResult {
        let req = BrowserAriaSnapshotRequest {
            max_chars: a.max_chars.unwrap_or(0),
        };
        self.answer(&a.sandbox, Ok(req)).await
    }

    #[tool(description = "Press a key (\"Enter\", \"Control+a\") on an element or the page.")]
    async fn browser_press(&self, Parameters(a): Parameters<PressArgs>) -> ToolResult {
        let key = non_empty(a.key, "key is empty: give e.g. \"Enter\" or \"Control+a\"");
        let req = key.map(|key| BrowserPressRequest {
            target: a.target.optional(),
            key,
        });
        self.answer(&a.sandbox, req).await
    }

    #[tool(description = "Scroll by dx/dy pixels (none: a screen down), or an element into view.")]
    async fn browser_scroll(&self, Parameters(a): Parameters<ScrollArgs>) -> ToolResult {
        let req = BrowserScrollRequest {
            target: a.target.optional(),
            dx: a.dx.unwrap_or(0),
            dy: a.dy.unwrap_or(0),
        };
        self.answer(&a.sandbox, Ok(req)).await
    }

    #[tool(description = "Go back, forward, or reload.")]
    async fn browser_navigate(&self, Parameters(a): Parameters<NavigateArgs>) -> ToolResult {
        let req = BrowserNavigateRequest {
            action: a.action.as_str().into(),
        };
        self.answer(&a.sandbox, Ok(req)).await
    }

    #[tool(
        description = "Wait for text, text_gone (to vanish), a url (glob or substring), or seconds."
    )]
    async fn browser_wait(&self, Parameters(a): Parameters<WaitArgs>) -> ToolResult {
        let given = [
            a.text.is_some(),
            a.text_gone.is_some(),
            a.url.is_some(),
            a.seconds.is_some(),
        ];
        let req = if given.iter().filter(|g| **g).count() == 1 {
            Ok(BrowserWaitRequest {
                text: a.text.unwrap_or_default(),
                text_gone: a.text_gone.unwrap_or_default(),
                url: a.url.unwrap_or_default(),
                seconds: a.seconds.unwrap_or(0.0),
                timeout_seconds: a.timeout.unwrap_or(0.0),
            })
        } else {
            Err(ToolError::BadRequest(
                "give exactly one of text, text_gone, url or seconds".into(),
            ))
        };
        self.answer(&a.sandbox, req).await
    }

    #[tool(description = "Select options of a <select> by value or label.")]
    async fn browser_select_option(&self, Parameters(a): Parameters<SelectArgs>) -> ToolResult {
        let req = a.target.required().map(|t| BrowserSelectOptionRequest {
            target: Some(t),
            values: a.values,
        });
        self.answer(&a.sandbox, req).await
    }

    #[tool(description = "Hover over an element.")]
    async fn browser_hover(&self, Parameters(a): Parameters<ElementArgs>) -> ToolResult {
        let req = a
            .target
            .required()
            .map(|t| BrowserHoverRequest { target: Some(t) });
        self.answer(&a.sandbox, req).await
    }

    #[tool(description = "Run JavaScript in the page; result as JSON.")]
    async fn browser_evaluate(&self, Parameters(a): Parameters<EvaluateArgs>) -> ToolResult {
        let req = BrowserEvaluateRequest {
            expression: a.expression,
            target: a.target.optional(),
        };
        self.answer(&a.sandbox, Ok(req)).await
    }

    #[tool(description = "List, open, select or close tabs.")]
    async fn browser_tabs(&self, Parameters(a): Parameters<TabsArgs>) -> ToolResult {
        let req = BrowserTabsRequest {
            action: a.action.as_str().into(),
            index: a.index,
            url: a.url.unwrap_or_default(),
        };
        self.answer(&a.sandbox, Ok(req)).await
    }

    #[tool(description = "Answer a pending confirm()/prompt().")]
    async fn browser_dialog(&self, Parameters(a): Parameters<DialogArgs>) -> ToolResult {
        let req = BrowserDialogRequest {
            accept: a.accept,
            prompt_text: a.prompt_text.unwrap_or_default(),
        };
        self.answer(&a.sandbox, Ok(req)).await
    }

    #[tool(description = "Set the files of an <input type=file> to sandbox paths.")]
    async fn browser_upload_file(&self, Parameters(a): Parameters<UploadArgs>) -> ToolResult {
        let req = a.target.required().and_then(|t| {
            if a.paths.is_empty() {
                return Err(ToolError::BadRequest(
                    "paths is empty: give files in the sandbox (write them with file_write)".into(),
                ));
            }
            Ok(BrowserUploadFileRequest {
                target: Some(t),
                paths: a.paths,
            })
        });
        self.answer(&a.sandbox, req).await
    }

    #[tool(
        description = "PNG of the viewport or full_page.",
        annotations(read_only_hint = true)
    )]
    async fn browser_screenshot(&self, Parameters(a): Parameters<ScreenshotArgs>) -> ToolResult {
        let req = BrowserScreenshotRequest {
            full_page: a.full_page,
        };
        self.answer(&a.sandbox, Ok(req)).await
    }
}
