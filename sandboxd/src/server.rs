//! The `Sandbox` gRPC service: thin handlers that hand each call to its component.

use std::sync::Arc;

use agent_runtime_proto::v1::sandbox_server::Sandbox;
use agent_runtime_proto::v1::{
    BrowserClickRequest, BrowserClickResponse, BrowserGotoRequest, BrowserPage,
    BrowserSnapshotRequest, BrowserSnapshotResponse, BrowserTypeRequest, Context,
    CreateContextRequest, DeleteContextRequest, DeleteContextResponse, DownloadRequest,
    ExecRequest, FileInfo, HelloRequest, HelloResponse, InterruptRequest, InterruptResponse,
    ListContextsRequest, ListContextsResponse, ListDirRequest, ListDirResponse, MakeDirRequest,
    ReadFileRequest, ReadFileResponse, RemoveRequest, RemoveResponse, RestartContextRequest,
    RunCodeRequest, StatRequest, UploadRequest, UploadResponse, WriteFileRequest,
    WriteFileResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::contexts::Contexts;
use crate::error::Error;
use crate::exec::{EventStream, Exec};
use crate::files::Files;
use crate::transfer::{self, DownloadStream};

/// What this daemon can do, reported by Hello.
pub const CAPABILITIES: [&str; 3] = ["exec", "files", "contexts"];

/// The `Sandbox` service; each concern lives in its own component.
#[derive(Clone)]
pub struct SandboxService {
    exec: Arc<Exec>,
    files: Arc<Files>,
    contexts: Arc<Contexts>,
}

impl SandboxService {
    /// A service made of its components.
    pub fn new(exec: Arc<Exec>, files: Arc<Files>, contexts: Arc<Contexts>) -> Self {
        Self {
            exec,
            files,
            contexts,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn unimplemented<T>(call: &'static str) -> Reply<T> {
    Err(Error::Unimplemented(call).into())
}

#[tonic::async_trait]
impl Sandbox for SandboxService {
    async fn hello(&self, _: Request<HelloRequest>) -> Reply<HelloResponse> {
        Ok(Response::new(HelloResponse {
            protocol: agent_runtime_proto::PROTOCOL.to_string(),
            daemon_version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        }))
    }

    type ExecStream = EventStream;

    async fn exec(&self, request: Request<ExecRequest>) -> Reply<EventStream> {
        Ok(Response::new(self.exec.start(request.into_inner()).await?))
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
            self.files.read(&req.path, req.max_bytes).await?,
        ))
    }

    async fn write_file(&self, request: Request<WriteFileRequest>) -> Reply<WriteFileResponse> {
        let req = request.into_inner();
        let reply = self
            .files
            .write(&req.path, req.content, req.mode, req.append)
            .await?;
        Ok(Response::new(reply))
    }

    async fn list_dir(&self, request: Request<ListDirRequest>) -> Reply<ListDirResponse> {
        let req = request.into_inner();
        Ok(Response::new(
            self.files.list(&req.path, req.include_hidden).await?,
        ))
    }

    async fn stat(&self, request: Request<StatRequest>) -> Reply<FileInfo> {
        Ok(Response::new(
            self.files.stat(&request.into_inner().path).await?,
        ))
    }

    async fn remove(&self, request: Request<RemoveRequest>) -> Reply<RemoveResponse> {
        let req = request.into_inner();
        self.files.remove(&req.path, req.recursive).await?;
        Ok(Response::new(RemoveResponse { success: true }))
    }

    async fn make_dir(&self, request: Request<MakeDirRequest>) -> Reply<FileInfo> {
        Ok(Response::new(
            self.files.make_dir(&request.into_inner().path).await?,
        ))
    }

    async fn upload(&self, request: Request<Streaming<UploadRequest>>) -> Reply<UploadResponse> {
        Ok(Response::new(
            transfer::upload(&self.files, request.into_inner()).await?,
        ))
    }

    type DownloadStream = DownloadStream;

    async fn download(&self, request: Request<DownloadRequest>) -> Reply<DownloadStream> {
        let req = request.into_inner();
        Ok(Response::new(
            transfer::download(&self.files, &req.path, req.chunk_size).await?,
        ))
    }

    async fn browser_goto(&self, _: Request<BrowserGotoRequest>) -> Reply<BrowserPage> {
        unimplemented("BrowserGoto")
    }

    async fn browser_click(&self, _: Request<BrowserClickRequest>) -> Reply<BrowserClickResponse> {
        unimplemented("BrowserClick")
    }

    async fn browser_type(&self, _: Request<BrowserTypeRequest>) -> Reply<BrowserPage> {
        unimplemented("BrowserType")
    }

    async fn browser_snapshot(
        &self,
        _: Request<BrowserSnapshotRequest>,
    ) -> Reply<BrowserSnapshotResponse> {
        unimplemented("BrowserSnapshot")
    }

    async fn browser_aria_snapshot(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserAriaSnapshotRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserAriaSnapshotResponse> {
        unimplemented("BrowserAriaSnapshot")
    }

    async fn browser_press(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserPressRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserActionResponse> {
        unimplemented("BrowserPress")
    }

    async fn browser_scroll(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserScrollRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserActionResponse> {
        unimplemented("BrowserScroll")
    }

    async fn browser_navigate(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserNavigateRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserActionResponse> {
        unimplemented("BrowserNavigate")
    }

    async fn browser_wait(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserWaitRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserActionResponse> {
        unimplemented("BrowserWait")
    }

    async fn browser_select_option(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserSelectOptionRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserActionResponse> {
        unimplemented("BrowserSelectOption")
    }

    async fn browser_hover(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserHoverRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserActionResponse> {
        unimplemented("BrowserHover")
    }

    async fn browser_evaluate(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserEvaluateRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserEvaluateResponse> {
        unimplemented("BrowserEvaluate")
    }

    async fn browser_tabs(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserTabsRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserTabsResponse> {
        unimplemented("BrowserTabs")
    }

    async fn browser_dialog(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserDialogRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserActionResponse> {
        unimplemented("BrowserDialog")
    }

    async fn browser_upload_file(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserUploadFileRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserActionResponse> {
        unimplemented("BrowserUploadFile")
    }

    async fn browser_screenshot(
        &self,
        _: Request<agent_runtime_proto::v1::BrowserScreenshotRequest>,
    ) -> Reply<agent_runtime_proto::v1::BrowserScreenshotResponse> {
        unimplemented("BrowserScreenshot")
    }
}
