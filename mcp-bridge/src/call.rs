//! The one path every `Sandbox`-service call takes: pick the sandbox, stamp its id, set the
//! call's deadline, call the host, map a failure to a [`ToolError`], and (for most tools) shape
//! the reply. The client layer ties each request type to its method ([`SandboxRpc`]); [`calls!`]
//! adds, once per type, the name its errors use and when its deadline or its NOT_FOUND differ
//! from the default.

use std::time::Duration;

use agent_runtime_client::{with_sandbox, Rpc, SandboxId, SandboxRpc};
use schemars::JsonSchema;
use serde::Deserialize;
use tonic::Status;

use crate::error::ToolError;
use crate::host_conn::DEFAULT_DEADLINE;
use crate::results::{respond, Outcome, ToolResult};
use crate::server::Bridge;

/// The sandbox a tool acts on; flattened into every tool's arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SandboxRef {
    // No description in the schema: the name says it, and the server's instructions say it may
    // be left out while the session has one sandbox (tools/list stays small, issue 14).
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

impl SandboxRef {
    /// The id given, if any.
    pub fn id(&self) -> Option<&str> {
        self.sandbox_id.as_deref()
    }
}

/// A request of the `Sandbox` service as the bridge sends it: the client layer's
/// [`SandboxRpc`] (which method carries it) plus the bridge's deadline and error mapping.
pub trait Call: SandboxRpc {
    /// The name its error messages use (a tool's name where a model knows it better).
    const NAME: &'static str = <Self as Rpc>::METHOD;

    /// How long the call may take.
    fn deadline(&self) -> Duration {
        DEFAULT_DEADLINE
    }

    /// What a failed call means to the tool.
    fn error(status: &Status) -> ToolError {
        ToolError::from_status(Self::NAME, status)
    }
}

/// A response a tool returns as it is: its JSON shape (DESIGN.md §3.1).
pub trait Reply {
    /// The tool result.
    fn reply(self) -> Outcome;
}

/// Implements [`Call`] for request types: `Request { name: "…", deadline: f, error: g, }`, each
/// part optional (in that order, each with its comma): the name errors use (default: the gRPC
/// method), `fn(&Request) -> Duration`, and `fn(&str, &Status) -> ToolError`.
macro_rules! calls {
    ($($req:ty { $(name: $name:literal,)? $(deadline: $deadline:path,)? $(error: $error:path,)? })*) => {$(
        impl $crate::call::Call for $req {
            $(const NAME: &'static str = $name;)?
            $(fn deadline(&self) -> ::std::time::Duration {
                $deadline(self)
            })?
            $(fn error(status: &::tonic::Status) -> $crate::error::ToolError {
                $error(<Self as $crate::call::Call>::NAME, status)
            })?
        }
    )*};
}
pub(crate) use calls;

impl Bridge {
    /// Calls `req` in the sandbox `at` names (or the session's own, created on first need).
    pub(crate) async fn call<R: Call>(
        &self,
        at: &SandboxRef,
        req: R,
    ) -> Result<<R as Rpc>::Response, ToolError> {
        let sandbox = self.session.resolve(at.id()).await?;
        self.call_in(&sandbox, req).await
    }

    /// Calls `req` in `sandbox`, with the request's deadline.
    pub(crate) async fn call_in<R: Call>(
        &self,
        sandbox: &SandboxId,
        req: R,
    ) -> Result<<R as Rpc>::Response, ToolError> {
        let channel = self.session.host().channel().await?;
        let deadline = req.deadline();
        let mut request = with_sandbox(req, sandbox);
        request.set_timeout(deadline);
        <R as Rpc>::send(channel, request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| R::error(&s))
    }

    /// The whole of a tool whose result is its response's JSON: `req` (already checked, or why
    /// not) is called in the sandbox `at` names, and the response shaped.
    pub(crate) async fn answer<R>(&self, at: &SandboxRef, req: Result<R, ToolError>) -> ToolResult
    where
        R: Call,
        <R as Rpc>::Response: Reply,
    {
        respond(match req {
            Ok(req) => self.call(at, req).await.and_then(Reply::reply),
            Err(e) => Err(e),
        })
    }
}
