//! The one path every `Sandbox`-service call takes: pick the sandbox, stamp its id, set the
//! call's deadline, call the host, map a failure to a [`ToolError`], and (for most tools) shape
//! the reply. Each request type says once, through [`rpc!`], which method carries it,
//! the name its errors use, and when its deadline or its NOT_FOUND differ from the default.

use std::future::Future;
use std::time::Duration;

use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use schemars::JsonSchema;
use serde::Deserialize;
use tonic::Status;

use crate::error::ToolError;
use crate::host_conn::{with_sandbox, HostChannel, DEFAULT_DEADLINE};
use crate::ids::SandboxId;
use crate::results::{respond, Outcome, ToolResult};
use crate::server::Bridge;

/// The sandbox a tool acts on; flattened into every tool's arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SandboxRef {
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

impl SandboxRef {
    /// The id given, if any.
    pub fn id(&self) -> Option<&str> {
        self.sandbox_id.as_deref()
    }
}

/// A request of the `Sandbox` service, as the bridge sends it.
pub trait Rpc: Sized + Send + 'static {
    /// What the call answers.
    type Response: Send;
    /// The name its error messages use.
    const NAME: &'static str;

    /// How long the call may take.
    fn deadline(&self) -> Duration {
        DEFAULT_DEADLINE
    }

    /// What a failed call means to the tool.
    fn error(status: &Status) -> ToolError {
        ToolError::from_status(Self::NAME, status)
    }

    /// Sends the request on `client`.
    fn send(
        client: SandboxClient<HostChannel>,
        request: tonic::Request<Self>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send;
}

/// A response a tool returns as it is: its JSON shape (DESIGN.md §3.1).
pub trait Reply {
    /// The tool result.
    fn reply(self) -> Outcome;
}

/// Implements [`Rpc`] for request types: `Request => Response { method, "name" }`, optionally
/// followed by `, deadline: f` (`fn(&Request) -> Duration`) and `, error: g`
/// (`fn(&str, &Status) -> ToolError`).
macro_rules! rpc {
    ($($req:ty => $resp:ty { $method:ident, $name:literal
        $(, deadline: $deadline:path)? $(, error: $error:path)? $(,)? })*) => {$(
        impl $crate::call::Rpc for $req {
            type Response = $resp;
            const NAME: &'static str = $name;
            $(fn deadline(&self) -> ::std::time::Duration {
                $deadline(self)
            })?
            $(fn error(status: &::tonic::Status) -> $crate::error::ToolError {
                $error(Self::NAME, status)
            })?
            fn send(
                mut client: ::agent_runtime_proto::v1::sandbox_client::SandboxClient<
                    $crate::host_conn::HostChannel,
                >,
                request: ::tonic::Request<Self>,
            ) -> impl ::std::future::Future<
                Output = Result<::tonic::Response<$resp>, ::tonic::Status>,
            > + Send {
                async move { client.$method(request).await }
            }
        }
    )*};
}
pub(crate) use rpc;

impl Bridge {
    /// Calls `req` in the sandbox `at` names (or the session's own, created on first need).
    pub(crate) async fn call<R: Rpc>(
        &self,
        at: &SandboxRef,
        req: R,
    ) -> Result<R::Response, ToolError> {
        let sandbox = self.session.resolve(at.id()).await?;
        self.call_in(&sandbox, req).await
    }

    /// Calls `req` in `sandbox`, with the request's deadline.
    pub(crate) async fn call_in<R: Rpc>(
        &self,
        sandbox: &SandboxId,
        req: R,
    ) -> Result<R::Response, ToolError> {
        let client = self.session.host().sandbox().await?;
        let deadline = req.deadline();
        let mut request = with_sandbox(sandbox, req)?;
        request.set_timeout(deadline);
        R::send(client, request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| R::error(&s))
    }

    /// The whole of a tool whose result is its response's JSON: `req` (already checked, or why
    /// not) is called in the sandbox `at` names, and the response shaped.
    pub(crate) async fn answer<R>(&self, at: &SandboxRef, req: Result<R, ToolError>) -> ToolResult
    where
        R: Rpc,
        R::Response: Reply,
    {
        respond(match req {
            Ok(req) => self.call(at, req).await.and_then(Reply::reply),
            Err(e) => Err(e),
        })
    }
}
