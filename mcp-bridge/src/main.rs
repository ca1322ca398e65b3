//! `mcp-bridge`: parse the command line, log to stderr (stdout carries MCP in stdio mode), run.

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = mcp_bridge::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let code = match mcp_bridge::cli::run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mcp-bridge: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
