//! `agent-runtime`: the host binary (serve, image, sandbox, doctor, bench).

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = agent_runtime::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match agent_runtime::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent-runtime: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
