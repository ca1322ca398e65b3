//! One call path for every RPC: each request type knows, once, the client method that carries
//! it and what it answers, so a front end writes one generic `call<R: SandboxRpc>` (stamping the
//! sandbox, setting its deadline, mapping its errors) instead of one body per method.
//!
//! Upload is left out: its request is a stream, not a message.

use std::future::Future;

use agent_runtime_proto::v1 as pb;
use agent_runtime_proto::v1::sandboxes_client::SandboxesClient;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::{Status, Streaming};

use crate::call::sandbox_client;

/// A channel the generated clients can call through and whose calls can be sent to another task
/// (a tonic `Channel`, possibly wrapped in an interceptor).
pub trait Transport:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<T> Transport for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// A gRPC service of the protocol.
pub trait Service {
    /// Its full name.
    const NAME: &'static str;
}

/// The `Sandbox` service: served by sandboxd, forwarded by the host by `sandbox-id`.
#[derive(Debug)]
pub enum Sandbox {}

impl Service for Sandbox {
    const NAME: &'static str = "agent_runtime.v1.Sandbox";
}

/// The host's `Sandboxes` (lifecycle) service.
#[derive(Debug)]
pub enum Sandboxes {}

impl Service for Sandboxes {
    const NAME: &'static str = "agent_runtime.v1.Sandboxes";
}

/// A request message of the protocol: the service and method that carry it, and its answer.
pub trait Rpc: Sized + Send + 'static {
    /// The service it belongs to.
    type Service: Service;
    /// What the call answers (a `Streaming` for Exec, RunCode and Download).
    type Response: Send + 'static;
    /// The gRPC method, as error messages name it ("BrowserGoto").
    const METHOD: &'static str;

    /// Sends `request` over `channel` (for the `Sandbox` service with [`sandbox_client`]'s
    /// message limits).
    fn send<T: Transport>(
        channel: T,
        request: tonic::Request<Self>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send;
}

/// A request of the `Sandbox` service.
pub trait SandboxRpc: Rpc<Service = Sandbox> {}
impl<R: Rpc<Service = Sandbox>> SandboxRpc for R {}

/// A request of the `Sandboxes` service.
pub trait SandboxesRpc: Rpc<Service = Sandboxes> {}
impl<R: Rpc<Service = Sandboxes>> SandboxesRpc for R {}

macro_rules! rpcs {
    ($service:ty, $client:path { $($req:ty => $resp:ty { $method:ident, $name:literal },)* }) => {$(
        impl Rpc for $req {
            type Service = $service;
            type Response = $resp;
            const METHOD: &'static str = $name;

            fn send<T: Transport>(
                channel: T,
                request: tonic::Request<Self>,
            ) -> impl Future<Output = Result<tonic::Response<$resp>, Status>> + Send {
                async move { $client(channel).$method(request).await }
            }
        }
    )*};
}

rpcs!(Sandbox, sandbox_client {
    pb::HelloRequest => pb::HelloResponse { hello, "Hello" },
    pb::ConfigureRequest => pb::ConfigureResponse { configure, "Configure" },
    pb::ExecRequest => Streaming<pb::ExecEvent> { exec, "Exec" },
    pb::AttachRequest => Streaming<pb::ExecEvent> { attach, "Attach" },
    pb::ListRunsRequest => pb::ListRunsResponse { list_runs, "ListRuns" },
    pb::SignalRequest => pb::SignalResponse { signal, "Signal" },
    pb::KillRequest => pb::KillResponse { kill, "Kill" },
    pb::KillAllRequest => pb::KillAllResponse { kill_all, "KillAll" },
    pb::SendInputRequest => pb::SendInputResponse { send_input, "SendInput" },
    pb::CloseInputRequest => pb::CloseInputResponse { close_input, "CloseInput" },
    pb::ResizeTerminalRequest => pb::ResizeTerminalResponse { resize_terminal, "ResizeTerminal" },
    pb::RunCodeRequest => Streaming<pb::ExecEvent> { run_code, "RunCode" },
    pb::CreateContextRequest => pb::Context { create_context, "CreateContext" },
    pb::ListContextsRequest => pb::ListContextsResponse { list_contexts, "ListContexts" },
    pb::DeleteContextRequest => pb::DeleteContextResponse { delete_context, "DeleteContext" },
    pb::RestartContextRequest => pb::Context { restart_context, "RestartContext" },
    pb::InterruptRequest => pb::InterruptResponse { interrupt, "Interrupt" },
    pb::ReadFileRequest => pb::ReadFileResponse { read_file, "ReadFile" },
    pb::WriteFileRequest => pb::WriteFileResponse { write_file, "WriteFile" },
    pb::ListDirRequest => pb::ListDirResponse { list_dir, "ListDir" },
    pb::StatRequest => pb::FileInfo { stat, "Stat" },
    pb::RemoveRequest => pb::RemoveResponse { remove, "Remove" },
    pb::MakeDirRequest => pb::FileInfo { make_dir, "MakeDir" },
    pb::DownloadRequest => Streaming<pb::DownloadChunk> { download, "Download" },
    pb::BrowserGotoRequest => pb::BrowserPage { browser_goto, "BrowserGoto" },
    pb::BrowserClickRequest => pb::BrowserActionResponse { browser_click, "BrowserClick" },
    pb::BrowserTypeRequest => pb::BrowserPage { browser_type, "BrowserType" },
    pb::BrowserSnapshotRequest => pb::BrowserSnapshotResponse {
        browser_snapshot, "BrowserSnapshot"
    },
    pb::BrowserAriaSnapshotRequest => pb::BrowserAriaSnapshotResponse {
        browser_aria_snapshot, "BrowserAriaSnapshot"
    },
    pb::BrowserFindRequest => pb::BrowserFindResponse { browser_find, "BrowserFind" },
    pb::BrowserPressRequest => pb::BrowserActionResponse { browser_press, "BrowserPress" },
    pb::BrowserScrollRequest => pb::BrowserActionResponse { browser_scroll, "BrowserScroll" },
    pb::BrowserNavigateRequest => pb::BrowserActionResponse {
        browser_navigate, "BrowserNavigate"
    },
    pb::BrowserWaitRequest => pb::BrowserActionResponse { browser_wait, "BrowserWait" },
    pb::BrowserSelectOptionRequest => pb::BrowserActionResponse {
        browser_select_option, "BrowserSelectOption"
    },
    pb::BrowserHoverRequest => pb::BrowserActionResponse { browser_hover, "BrowserHover" },
    pb::BrowserEvaluateRequest => pb::BrowserEvaluateResponse {
        browser_evaluate, "BrowserEvaluate"
    },
    pb::BrowserTabsRequest => pb::BrowserTabsResponse { browser_tabs, "BrowserTabs" },
    pb::BrowserDialogRequest => pb::BrowserActionResponse { browser_dialog, "BrowserDialog" },
    pb::BrowserUploadFileRequest => pb::BrowserActionResponse {
        browser_upload_file, "BrowserUploadFile"
    },
    pb::BrowserScreenshotRequest => pb::BrowserScreenshotResponse {
        browser_screenshot, "BrowserScreenshot"
    },
});

rpcs!(Sandboxes, SandboxesClient::new {
    pb::CreateSandboxRequest => pb::SandboxInfo { create, "Create" },
    pb::GetSandboxRequest => pb::SandboxInfo { get, "Get" },
    pb::ListSandboxesRequest => pb::ListSandboxesResponse { list, "List" },
    pb::DestroySandboxRequest => pb::DestroySandboxResponse { destroy, "Destroy" },
    pb::ExtendTimeoutRequest => pb::SandboxInfo { extend_timeout, "ExtendTimeout" },
    pb::PoolStatusRequest => pb::PoolStatusResponse { pool_status, "PoolStatus" },
    pb::PoolShape => pb::PoolStatusResponse { set_pool, "SetPool" },
    pb::SetEgressPolicyRequest => pb::EgressStatus { set_egress_policy, "SetEgressPolicy" },
    pb::GetEgressPolicyRequest => pb::EgressStatus { get_egress_policy, "GetEgressPolicy" },
});

#[cfg(test)]
mod tests {
    use super::*;

    fn method<R: SandboxRpc>(_: &R) -> &'static str {
        R::METHOD
    }

    fn is_transport<T: Transport>() {}

    #[test]
    fn requests_name_their_method() {
        assert_eq!(method(&pb::BrowserGotoRequest::default()), "BrowserGoto");
        assert_eq!(method(&pb::ExecRequest::default()), "Exec");
        assert_eq!(<pb::CreateSandboxRequest as Rpc>::METHOD, "Create");
        assert_eq!(
            <<pb::ExecRequest as Rpc>::Service as Service>::NAME,
            Sandbox::NAME
        );
        is_transport::<tonic::transport::Channel>();
    }
}
