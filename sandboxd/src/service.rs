//! The `Sandbox` gRPC service: thin handlers that hand each call to its component.

use std::sync::Arc;

use agent_runtime_proto::v1 as pb;
use agent_runtime_proto::v1::sandbox_server::Sandbox;
use agent_runtime_proto::v1::{
    BrowserClickRequest, BrowserGotoRequest, BrowserPage, BrowserSnapshotRequest,
    BrowserSnapshotResponse, BrowserTypeRequest, Context, CreateContextRequest,
    DeleteContextRequest, DeleteContextResponse, DownloadRequest, ExecRequest, FileInfo,
    HelloRequest, HelloResponse, InterruptRequest, InterruptResponse, ListContextsRequest,
    ListContextsResponse, ListDirRequest, ListDirResponse, MakeDirRequest, ReadFileRequest,
    ReadFileResponse, RemoveRequest, RemoveResponse, RestartContextRequest, RunCodeRequest,
    StatRequest, UploadRequest, UploadResponse, WriteFileRequest, WriteFileResponse,
};
use tonic::{Request, Response, Status, Streaming};

use tracing::Instrument as _;

use crate::browser::Browser;
use crate::contexts::Contexts;
use crate::exec::Exec;
use crate::files::Files;
use crate::run_events::EventStream;
use crate::transfer::{self, DownloadStream};

/// What this daemon can do, reported by Hello.
pub const CAPABILITIES: [&str; 5] = ["exec", "files", "contexts", "browser", "runs"];

/// The `Sandbox` service; each concern lives in its own component.
#[derive(Clone)]
pub struct SandboxService {
    exec: Arc<Exec>,
    files: Arc<Files>,
    contexts: Arc<Contexts>,
    browser: Arc<Browser>,
    identity: Option<crate::identity::Identity>,
}

impl SandboxService {
    /// A service made of its components.
    pub fn new(
        exec: Arc<Exec>,
        files: Arc<Files>,
        contexts: Arc<Contexts>,
        browser: Arc<Browser>,
    ) -> Self {
        Self {
            exec,
            files,
            contexts,
            browser,
            identity: None,
        }
    }

    /// Proves `identity` in `Hello` (see `crate::identity`).
    pub fn with_identity(mut self, identity: Option<crate::identity::Identity>) -> Self {
        self.identity = identity;
        self
    }

    /// A browser action's reply; the snapshot that usually follows is read while the caller
    /// reads it (see `Browser::after_action`).
    fn acted<T>(&self, reply: T) -> Reply<T> {
        self.browser.after_action();
        Ok(Response::new(reply))
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Sandbox for SandboxService {
    async fn hello(&self, request: Request<HelloRequest>) -> Reply<HelloResponse> {
        let nonce = request.into_inner().nonce;
        Ok(Response::new(HelloResponse {
            protocol: agent_runtime_proto::PROTOCOL.to_string(),
            daemon_version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            sandbox_id: self
                .identity
                .as_ref()
                .map(|i| i.sandbox_id.clone())
                .unwrap_or_default(),
            proof: self
                .identity
                .as_ref()
                .map(|i| i.hello_proof(&nonce))
                .unwrap_or_default(),
        }))
    }

    async fn configure(
        &self,
        request: Request<pb::ConfigureRequest>,
    ) -> Reply<pb::ConfigureResponse> {
        crate::environment::set(request.into_inner().env)?;
        self.exec.environment_changed();
        Ok(Response::new(pb::ConfigureResponse {}))
    }

    type ExecStream = EventStream;

    async fn exec(&self, request: Request<ExecRequest>) -> Reply<EventStream> {
        let req = request.into_inner();
        let span = tracing::debug_span!(
            "process.spawn",
            language = %req.language,
            code_bytes = req.code.len(),
            stdin_bytes = req.stdin.len(),
        );
        Ok(Response::new(self.exec.start(req).instrument(span).await?))
    }

    type AttachStream = EventStream;

    async fn attach(&self, request: Request<pb::AttachRequest>) -> Reply<EventStream> {
        let req = request.into_inner();
        let run = self.exec.runs().get(&req.run_id)?;
        Ok(Response::new(crate::runs::attach::attach(
            run,
            req.from_seq,
            req.no_wait,
            self.exec.stopping(),
        )))
    }

    async fn list_runs(&self, _: Request<pb::ListRunsRequest>) -> Reply<pb::ListRunsResponse> {
        Ok(Response::new(self.exec.runs().list()))
    }

    async fn signal(&self, request: Request<pb::SignalRequest>) -> Reply<pb::SignalResponse> {
        let req = request.into_inner();
        let signal = crate::runs::signal::parse(&req.signal)?;
        let processes = self.exec.runs().signal(&req.run_id, signal)?;
        Ok(Response::new(pb::SignalResponse { processes }))
    }

    async fn kill(&self, request: Request<pb::KillRequest>) -> Reply<pb::KillResponse> {
        let processes = self.exec.runs().kill(&request.into_inner().run_id)?;
        Ok(Response::new(pb::KillResponse { processes }))
    }

    async fn kill_all(&self, _: Request<pb::KillAllRequest>) -> Reply<pb::KillAllResponse> {
        Ok(Response::new(self.exec.runs().kill_all()))
    }

    async fn send_input(
        &self,
        request: Request<pb::SendInputRequest>,
    ) -> Reply<pb::SendInputResponse> {
        let req = request.into_inner();
        let run = self.exec.runs().get(&req.run_id)?;
        run.send_input(req.data).await?;
        Ok(Response::new(pb::SendInputResponse {}))
    }

    async fn close_input(
        &self,
        request: Request<pb::CloseInputRequest>,
    ) -> Reply<pb::CloseInputResponse> {
        let run = self.exec.runs().get(&request.into_inner().run_id)?;
        run.close_input().await?;
        Ok(Response::new(pb::CloseInputResponse {}))
    }

    async fn resize_terminal(
        &self,
        request: Request<pb::ResizeTerminalRequest>,
    ) -> Reply<pb::ResizeTerminalResponse> {
        let req = request.into_inner();
        let size = req.size.unwrap_or_default();
        let size = crate::runs::pty::Size::new(size.rows, size.cols)?;
        self.exec.runs().get(&req.run_id)?.resize(size)?;
        Ok(Response::new(pb::ResizeTerminalResponse {}))
    }

    type RunCodeStream = EventStream;

    async fn run_code(&self, request: Request<RunCodeRequest>) -> Reply<EventStream> {
        Ok(Response::new(self.contexts.run(request.into_inner())?))
    }

    async fn create_context(&self, request: Request<CreateContextRequest>) -> Reply<Context> {
        Ok(Response::new(
            self.contexts.create(request.into_inner()).await?,
        ))
    }

    async fn list_contexts(&self, _: Request<ListContextsRequest>) -> Reply<ListContextsResponse> {
        Ok(Response::new(ListContextsResponse {
            contexts: self.contexts.list(),
        }))
    }

    async fn delete_context(
        &self,
        request: Request<DeleteContextRequest>,
    ) -> Reply<DeleteContextResponse> {
        self.contexts
            .delete(&request.into_inner().context_id)
            .await?;
        Ok(Response::new(DeleteContextResponse { success: true }))
    }

    async fn restart_context(&self, request: Request<RestartContextRequest>) -> Reply<Context> {
        Ok(Response::new(
            self.contexts
                .restart(&request.into_inner().context_id)
                .await?,
        ))
    }

    async fn interrupt(&self, request: Request<InterruptRequest>) -> Reply<InterruptResponse> {
        let success = self.contexts.interrupt(&request.into_inner().context_id)?;
        Ok(Response::new(InterruptResponse { success }))
    }

    async fn read_file(&self, request: Request<ReadFileRequest>) -> Reply<ReadFileResponse> {
        let req = request.into_inner();
        Ok(Response::new(
            self.files
                .read(&req.path, req.max_bytes)
                .instrument(file_io("read"))
                .await?,
        ))
    }

    async fn write_file(&self, request: Request<WriteFileRequest>) -> Reply<WriteFileResponse> {
        let req = request.into_inner();
        let span = file_io("write");
        span.record("bytes", req.content.len());
        let reply = self
            .files
            .write(&req.path, req.content, req.mode, req.append)
            .instrument(span)
            .await?;
        Ok(Response::new(reply))
    }

    async fn list_dir(&self, request: Request<ListDirRequest>) -> Reply<ListDirResponse> {
        let req = request.into_inner();
        Ok(Response::new(
            self.files
                .list(&req.path, req.include_hidden)
                .instrument(file_io("list"))
                .await?,
        ))
    }

    async fn stat(&self, request: Request<StatRequest>) -> Reply<FileInfo> {
        Ok(Response::new(
            self.files
                .stat(&request.into_inner().path)
                .instrument(file_io("stat"))
                .await?,
        ))
    }

    async fn remove(&self, request: Request<RemoveRequest>) -> Reply<RemoveResponse> {
        let req = request.into_inner();
        self.files
            .remove(&req.path, req.recursive)
            .instrument(file_io("remove"))
            .await?;
        Ok(Response::new(RemoveResponse { success: true }))
    }

    async fn make_dir(&self, request: Request<MakeDirRequest>) -> Reply<FileInfo> {
        Ok(Response::new(
            self.files
                .make_dir(&request.into_inner().path)
                .instrument(file_io("make_dir"))
                .await?,
        ))
    }

    async fn upload(&self, request: Request<Streaming<UploadRequest>>) -> Reply<UploadResponse> {
        Ok(Response::new(
            transfer::upload(&self.files, request.into_inner())
                .instrument(file_io("upload"))
                .await?,
        ))
    }

    type DownloadStream = DownloadStream;

    async fn download(&self, request: Request<DownloadRequest>) -> Reply<DownloadStream> {
        let req = request.into_inner();
        Ok(Response::new(
            transfer::download(&self.files, &req.path, req.chunk_size)
                .instrument(file_io("download"))
                .await?,
        ))
    }

    async fn browser_goto(&self, r: Request<BrowserGotoRequest>) -> Reply<BrowserPage> {
        Ok(Response::new(
            self.browser
                .goto(r.into_inner())
                .instrument(playwright("goto"))
                .await?,
        ))
    }

    async fn browser_click(
        &self,
        r: Request<BrowserClickRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        let reply = self
            .browser
            .click(r.into_inner())
            .instrument(playwright("click"))
            .await?;
        self.acted(reply)
    }

    async fn browser_type(&self, r: Request<BrowserTypeRequest>) -> Reply<BrowserPage> {
        let reply = self
            .browser
            .type_text(r.into_inner())
            .instrument(playwright("type_text"))
            .await?;
        self.acted(reply)
    }

    async fn browser_snapshot(
        &self,
        r: Request<BrowserSnapshotRequest>,
    ) -> Reply<BrowserSnapshotResponse> {
        Ok(Response::new(
            self.browser
                .snapshot(r.into_inner())
                .instrument(playwright("snapshot"))
                .await?,
        ))
    }

    async fn browser_find(
        &self,
        r: Request<pb::BrowserFindRequest>,
    ) -> Reply<pb::BrowserFindResponse> {
        Ok(Response::new(
            self.browser
                .find(r.into_inner())
                .instrument(playwright("find"))
                .await?,
        ))
    }

    async fn browser_aria_snapshot(
        &self,
        r: Request<pb::BrowserAriaSnapshotRequest>,
    ) -> Reply<pb::BrowserAriaSnapshotResponse> {
        Ok(Response::new(
            self.browser
                .aria_snapshot(r.into_inner())
                .instrument(playwright("aria_snapshot"))
                .await?,
        ))
    }

    async fn browser_press(
        &self,
        r: Request<pb::BrowserPressRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        let reply = self
            .browser
            .press(r.into_inner())
            .instrument(playwright("press"))
            .await?;
        self.acted(reply)
    }

    async fn browser_scroll(
        &self,
        r: Request<pb::BrowserScrollRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        let reply = self
            .browser
            .scroll(r.into_inner())
            .instrument(playwright("scroll"))
            .await?;
        self.acted(reply)
    }

    async fn browser_navigate(
        &self,
        r: Request<pb::BrowserNavigateRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        let reply = self
            .browser
            .navigate(r.into_inner())
            .instrument(playwright("navigate"))
            .await?;
        self.acted(reply)
    }

    async fn browser_wait(
        &self,
        r: Request<pb::BrowserWaitRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        let reply = self
            .browser
            .wait(r.into_inner())
            .instrument(playwright("wait"))
            .await?;
        self.acted(reply)
    }

    async fn browser_select_option(
        &self,
        r: Request<pb::BrowserSelectOptionRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        let reply = self
            .browser
            .select_option(r.into_inner())
            .instrument(playwright("select_option"))
            .await?;
        self.acted(reply)
    }

    async fn browser_hover(
        &self,
        r: Request<pb::BrowserHoverRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        let reply = self
            .browser
            .hover(r.into_inner())
            .instrument(playwright("hover"))
            .await?;
        self.acted(reply)
    }

    async fn browser_evaluate(
        &self,
        r: Request<pb::BrowserEvaluateRequest>,
    ) -> Reply<pb::BrowserEvaluateResponse> {
        Ok(Response::new(
            self.browser
                .evaluate(r.into_inner())
                .instrument(playwright("evaluate"))
                .await?,
        ))
    }

    async fn browser_tabs(
        &self,
        r: Request<pb::BrowserTabsRequest>,
    ) -> Reply<pb::BrowserTabsResponse> {
        Ok(Response::new(
            self.browser
                .tabs(r.into_inner())
                .instrument(playwright("tabs"))
                .await?,
        ))
    }

    async fn browser_dialog(
        &self,
        r: Request<pb::BrowserDialogRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        Ok(Response::new(
            self.browser
                .dialog(r.into_inner())
                .instrument(playwright("dialog"))
                .await?,
        ))
    }

    async fn browser_upload_file(
        &self,
        r: Request<pb::BrowserUploadFileRequest>,
    ) -> Reply<pb::BrowserActionResponse> {
        let workspace = self.files.workspace().clone();
        Ok(Response::new(
            self.browser
                .upload_file(r.into_inner(), &workspace)
                .instrument(playwright("upload_file"))
                .await?,
        ))
    }

    async fn browser_screenshot(
        &self,
        r: Request<pb::BrowserScreenshotRequest>,
    ) -> Reply<pb::BrowserScreenshotResponse> {
        Ok(Response::new(
            self.browser
                .screenshot(r.into_inner())
                .instrument(playwright("screenshot"))
                .await?,
        ))
    }
}

/// The span of one Playwright action (`playwright.click`), a child of the call's.
fn playwright(action: &'static str) -> tracing::Span {
    tracing::debug_span!("playwright", otel.name = %format_args!("playwright.{action}"), action)
}

/// The span of one file operation (`file.read`); `bytes` is recorded when known.
fn file_io(op: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "file",
        otel.name = %format_args!("file.{op}"),
        op,
        bytes = tracing::field::Empty
    )
}
