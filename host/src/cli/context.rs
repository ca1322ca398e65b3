//! `agent-runtime context create|run|ls|rm`: stateful Python contexts in a sandbox, over gRPC.

use std::io::Write;

use super::token::HostChannel;
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{
    Context, CreateContextRequest, DeleteContextRequest, ListContextsRequest, RunCodeRequest,
};
use agent_runtime_proto::SANDBOX_ID_HEADER;
use anyhow::Context as _;
use clap::Subcommand;

use super::sandbox::{connect, status_err};

/// Context subcommands.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Start a Python context (a Jupyter kernel) in a sandbox; prints its id.
    Create {
        /// A name for it.
        #[arg(long, default_value = "")]
        name: String,
        /// Working directory (default /workspace).
        #[arg(long, default_value = "")]
        cwd: String,
    },
    /// Run code in a context, streaming output; exits 1 when the code raised.
    Run {
        /// Context id.
        context: String,
        /// Seconds before the kernel is interrupted.
        #[arg(long)]
        timeout: Option<f64>,
        /// The code (joined with spaces).
        #[arg(required = true, last = true)]
        code: Vec<String>,
    },
    /// List the sandbox's contexts.
    Ls,
    /// Stop contexts.
    Rm {
        /// Context ids.
        #[arg(required = true)]
        contexts: Vec<String>,
    },
}

pub(crate) fn with_sandbox<T>(sandbox: &str, msg: T) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        SANDBOX_ID_HEADER,
        sandbox
            .parse()
            .context("sandbox id is not valid metadata")?,
    );
    Ok(r)
}

fn client(channel: HostChannel) -> SandboxClient<HostChannel> {
    SandboxClient::new(channel).max_decoding_message_size(80 << 20)
}

fn line(c: &Context) -> String {
    format!(
        "{:<18} {:<8} {:<20} {}",
        c.context_id, c.status, c.name, c.created_at
    )
}

/// Runs a context subcommand against `sandbox`.
pub async fn run(cmd: ContextCommand, addr: &str, sandbox: &str) -> anyhow::Result<i32> {
    let mut c = client(connect(addr).await?);
    match cmd {
        ContextCommand::Create { name, cwd } => {
            let ctx = c
                .create_context(with_sandbox(
                    sandbox,
                    CreateContextRequest {
                        language: "python".into(),
                        name,
                        cwd,
                    },
                )?)
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}", ctx.context_id);
            Ok(0)
        }
        ContextCommand::Ls => {
            let list = c
                .list_contexts(with_sandbox(sandbox, ListContextsRequest {})?)
                .await
                .map_err(status_err)?;
            println!("{:<18} {:<8} {:<20} CREATED", "CONTEXT", "STATUS", "NAME");
            for ctx in list.into_inner().contexts {
                println!("{}", line(&ctx));
            }
            Ok(0)
        }
        ContextCommand::Rm { contexts } => {
            let mut code = 0;
            for id in contexts {
                match c
                    .delete_context(with_sandbox(
                        sandbox,
                        DeleteContextRequest {
                            context_id: id.clone(),
                        },
                    )?)
                    .await
                {
                    Ok(_) => println!("{id}"),
                    Err(s) => {
                        eprintln!("agent-runtime: {}", s.message());
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        ContextCommand::Run {
            context,
            timeout,
            code,
        } => {
            let req = RunCodeRequest {
                context_id: context,
                code: code.join(" "),
                timeout_seconds: timeout.unwrap_or(0.0),
            };
            let mut stream = c
                .run_code(with_sandbox(sandbox, req)?)
                .await
                .map_err(status_err)?
                .into_inner();
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let mut failed = false;
            while let Some(ev) = stream.message().await.map_err(status_err)? {
                match ev.event {
                    Some(Event::Stdout(b)) => {
                        out.write_all(&b)?;
                        out.flush()?;
                    }
                    Some(Event::Stderr(b)) => {
                        err.write_all(&b)?;
                        err.flush()?;
                    }
                    Some(Event::Result(r)) => {
                        if let Some(text) = r.data.get("text/plain") {
                            println!("{text}");
                        }
                        let other: Vec<&String> =
                            r.data.keys().filter(|k| *k != "text/plain").collect();
                        if !other.is_empty() {
                            eprintln!("agent-runtime: rich output not shown: {other:?}");
                        }
                    }
                    Some(Event::Error(e)) => {
                        failed = true;
                        eprintln!("{}", e.traceback.join("\n"));
                    }
                    Some(Event::Exit(x)) => {
                        if x.killed {
                            eprintln!(
                                "agent-runtime: interrupted ({}) after {} ms",
                                x.reason, x.duration_ms
                            );
                        }
                        if x.state_lost {
                            eprintln!("agent-runtime: the kernel was restarted: its state is lost");
                        }
                        return Ok(if failed || x.killed { 1 } else { 0 });
                    }
                    None => {}
                }
            }
            anyhow::bail!("the stream ended without an exit event")
        }
    }
}
