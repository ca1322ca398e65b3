//! `agent-runtime context create|run|ls|rm`: stateful Python contexts in a sandbox, over gRPC.

use agent_runtime_client::{Language, SandboxId};
use agent_runtime_proto::v1::{
    Context, CreateContextRequest, DeleteContextRequest, ListContextsRequest, RunCodeRequest,
};
use clap::Subcommand;

use super::call::{stream_run, Host};

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

fn line(c: &Context) -> String {
    format!(
        "{:<18} {:<8} {:<20} {}",
        c.context_id, c.status, c.name, c.created_at
    )
}

/// Runs a context subcommand against `sandbox`.
pub async fn run(cmd: ContextCommand, addr: &str, sandbox: SandboxId) -> anyhow::Result<i32> {
    let s = Host::connect(addr).await?.in_sandbox(sandbox);
    match cmd {
        ContextCommand::Create { name, cwd } => {
            let ctx = s
                .call(CreateContextRequest {
                    language: Language::Python.to_string(),
                    name,
                    cwd,
                })
                .await?;
            println!("{}", ctx.context_id);
            Ok(0)
        }
        ContextCommand::Ls => {
            let list = s.call(ListContextsRequest {}).await?;
            println!("{:<18} {:<8} {:<20} CREATED", "CONTEXT", "STATUS", "NAME");
            for ctx in list.contexts {
                println!("{}", line(&ctx));
            }
            Ok(0)
        }
        ContextCommand::Rm { contexts } => {
            let mut code = 0;
            for id in contexts {
                match s
                    .try_call(DeleteContextRequest {
                        context_id: id.clone(),
                    })
                    .await
                {
                    Ok(_) => println!("{id}"),
                    Err(st) => {
                        eprintln!("agent-runtime: {}", st.message());
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
            let stream = s
                .call(RunCodeRequest {
                    context_id: context,
                    code: code.join(" "),
                    timeout_seconds: timeout.unwrap_or(0.0),
                })
                .await?;
            let (outcome, x) = stream_run(stream).await?;
            if x.killed {
                eprintln!(
                    "agent-runtime: interrupted ({}) after {} ms",
                    x.reason, x.duration_ms
                );
            }
            if x.state_lost {
                eprintln!("agent-runtime: the kernel was restarted: its state is lost");
            }
            Ok(if outcome.success() { 0 } else { 1 })
        }
    }
}
