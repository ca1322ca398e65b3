//! `mcp-bridge`: parse the command line, log to stderr (stdout carries MCP in stdio mode), run.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = mcp_bridge::cli::Cli::parse();
    let telemetry = match agent_runtime_telemetry::init(
        "mcp-bridge",
        cli.log_format,
        "info,rmcp=warn",
        &agent_runtime_telemetry::OtelEnv::from_env(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mcp-bridge: {e}");
            std::process::exit(2);
        }
    };
    let code = match mcp_bridge::cli::run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mcp-bridge: {e:#}");
            1
        }
    };
    // Spans still buffered go out before exit.
    telemetry.shutdown().await;
    std::process::exit(code);
}
