//! Command line: flags, and which transport to run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ServeError;
use crate::host_conn::{HostConn, SpawnPolicy};
use crate::http::HttpOptions;
use crate::session::SessionLimits;
use agent_runtime_client::SandboxId;

/// MCP server for Agent Runtime: every tool call becomes a gRPC call to the host.
#[derive(Debug, clap::Parser)]
#[command(name = "mcp-bridge", version)]
pub struct Cli {
    /// Serve MCP over Streamable HTTP on this address (path /mcp) instead of stdio,
    /// e.g. 127.0.0.1:8090.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Log lines on stderr as `text` or `json` (for collectors).
    #[arg(long, env = "MCP_BRIDGE_LOG_FORMAT", default_value = "text")]
    pub log_format: agent_runtime_telemetry::LogFormat,
    /// gRPC address of the Agent Runtime host.
    #[arg(
        long,
        env = "AGENT_RUNTIME_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
    /// Bearer token HTTP clients must send (required when --http binds beyond loopback).
    #[arg(long, env = "MCP_BRIDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Extra allowed browser Origin for HTTP (repeatable), e.g. https://app.example.com.
    /// Loopback origins are always allowed.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Most sandboxes one MCP session may hold at once.
    #[arg(long, env = "MCP_BRIDGE_MAX_SANDBOXES", default_value_t = 4)]
    pub max_sandboxes_per_session: usize,
    /// Seconds an idle HTTP session lives; then its sandboxes are destroyed.
    #[arg(long, env = "MCP_BRIDGE_SESSION_IDLE", default_value_t = 1800)]
    pub session_idle: u64,
    /// Never start `agent-runtime serve`; fail when no host answers.
    #[arg(long)]
    pub no_spawn_host: bool,
    /// The host binary to start (default: `agent-runtime` beside this binary, else on PATH).
    #[arg(long, env = "AGENT_RUNTIME_BIN")]
    pub host_binary: Option<PathBuf>,
    /// Seconds a host this bridge started stays up with no sandboxes and no calls.
    #[arg(long, env = "MCP_BRIDGE_HOST_IDLE_EXIT", default_value_t = 300)]
    pub host_idle_exit: u64,
    /// Print the `tools/list` result as JSON (and its size on stderr), then exit.
    #[arg(long)]
    pub list_tools: bool,
    /// A sandbox made elsewhere (gRPC, the CLI) that every session may use besides its own;
    /// repeatable. Sessions never destroy it.
    #[arg(
        long = "sandbox",
        value_name = "ID",
        env = "MCP_BRIDGE_SANDBOXES",
        value_delimiter = ',',
        value_parser = parse_sandbox
    )]
    pub sandboxes: Vec<SandboxId>,
}

fn parse_sandbox(value: &str) -> Result<SandboxId, String> {
    SandboxId::parse(value.trim())
        .ok_or_else(|| format!("{value:?} is not a sandbox id (sb- followed by hex digits)"))
}

/// Runs the bridge until its transport ends.
pub async fn run(cli: Cli) -> Result<(), ServeError> {
    let host = Arc::new(HostConn::new(
        &cli.addr,
        SpawnPolicy {
            enabled: !cli.no_spawn_host,
            binary: cli.host_binary.clone(),
            idle_exit_secs: cli.host_idle_exit,
        },
    )?);
    let limits = SessionLimits {
        max_sandboxes: cli.max_sandboxes_per_session.max(1),
        given: cli.sandboxes.clone(),
    };
    if cli.list_tools {
        return crate::stdio::print_tools(host, limits);
    }
    match cli.http {
        None => crate::stdio::serve(host, limits).await,
        Some(listen) => {
            crate::http::serve(
                host,
                limits,
                HttpOptions {
                    listen,
                    token: cli.token.filter(|t| !t.is_empty()),
                    allowed_origins: cli.allowed_origins,
                    session_idle: Duration::from_secs(cli.session_idle.max(1)),
                },
            )
            .await
        }
    }
}
