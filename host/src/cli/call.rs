//! The CLI's one call path. Every command connects with [`Host::connect`], then calls the host's
//! `Sandboxes` service with [`Host::call`] or a sandbox with [`InSandbox::call`]: one generic
//! function per service (the request type picks the method), failures shown as `message (Code)`.
//! Exec and RunCode streams are printed as they arrive by [`stream_run`].

use std::io::Write;

use agent_runtime_client::rpc::{SandboxRpc, SandboxesRpc};
use agent_runtime_client::{traceback_text, with_sandbox, OutputStream, RunOutcome, SandboxId};
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::ExecEvent;
use anyhow::Context as _;
use tonic::transport::Channel;

use super::token::{with_token, HostChannel};

/// A gRPC status as a CLI error.
pub fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", s.message(), s.code())
}

/// A connection to a running host.
#[derive(Clone)]
pub struct Host {
    channel: HostChannel,
}

impl Host {
    /// Connects to the host at `addr`; says how to start one when none answers.
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let channel = Channel::from_shared(addr.to_owned())
            .with_context(|| format!("bad host address {addr:?}"))?
            .connect()
            .await
            .with_context(|| {
                format!(
                    "no agent-runtime host answers at {addr}: start one with `agent-runtime serve`"
                )
            })?;
        Ok(Self {
            channel: with_token(channel)?,
        })
    }

    /// Calls the host's `Sandboxes` service; the status is kept for callers that go on.
    pub async fn try_call<R: SandboxesRpc>(&self, req: R) -> Result<R::Response, tonic::Status> {
        R::send(self.channel.clone(), tonic::Request::new(req))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Calls the host's `Sandboxes` service.
    pub async fn call<R: SandboxesRpc>(&self, req: R) -> anyhow::Result<R::Response> {
        self.try_call(req).await.map_err(status_err)
    }

    /// Calls into `sandbox` (`sandbox-id` metadata; the host forwards the call).
    pub fn in_sandbox(&self, sandbox: SandboxId) -> InSandbox {
        InSandbox {
            channel: self.channel.clone(),
            sandbox,
        }
    }
}

/// Calls addressed to one sandbox.
#[derive(Clone)]
pub struct InSandbox {
    channel: HostChannel,
    sandbox: SandboxId,
}

impl InSandbox {
    /// The sandbox the calls go to.
    pub fn id(&self) -> &SandboxId {
        &self.sandbox
    }

    /// Calls the sandbox; the status is kept for callers that go on.
    pub async fn try_call<R: SandboxRpc>(&self, req: R) -> Result<R::Response, tonic::Status> {
        R::send(self.channel.clone(), with_sandbox(req, &self.sandbox))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Calls the sandbox.
    pub async fn call<R: SandboxRpc>(&self, req: R) -> anyhow::Result<R::Response> {
        self.try_call(req).await.map_err(status_err)
    }
}

/// Parses a sandbox id given on the command line.
pub fn sandbox_id(raw: &str) -> anyhow::Result<SandboxId> {
    Ok(raw.parse::<SandboxId>()?)
}

/// Prints an Exec or RunCode stream as it arrives — output to stdout/stderr, a context's text
/// results to stdout, its traceback to stderr — and returns the fold; an error when the stream
/// fails or ends without an exit event.
pub async fn stream_run(
    mut stream: tonic::Streaming<ExecEvent>,
) -> anyhow::Result<(RunOutcome, agent_runtime_proto::v1::ExecExit)> {
    // The CLI streams everything through; the fold keeps nothing but the ending.
    let mut outcome = RunOutcome::with_cap(0);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    while let Some(ev) = stream.message().await.map_err(status_err)? {
        if let Some((which, bytes)) = outcome.add(&ev) {
            let sink: &mut dyn Write = match which {
                OutputStream::Stdout => &mut out,
                OutputStream::Stderr => &mut err,
            };
            sink.write_all(bytes)?;
            sink.flush()?;
        }
        show_rich(&ev);
    }
    let exit = outcome
        .exit
        .clone()
        .context("the stream ended without an exit event")?;
    Ok((outcome, exit))
}

/// A context run's rich result (its text) or exception (its traceback), as it arrives.
fn show_rich(ev: &ExecEvent) {
    match &ev.event {
        Some(Event::Result(r)) => {
            if let Some(text) = r.data.get("text/plain") {
                println!("{text}");
            }
            let other: Vec<&String> = r.data.keys().filter(|k| *k != "text/plain").collect();
            if !other.is_empty() {
                eprintln!("agent-runtime: rich output not shown: {other:?}");
            }
        }
        Some(Event::Error(e)) => eprintln!("{}", traceback_text(e)),
        _ => {}
    }
}
