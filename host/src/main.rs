//! `agent-runtime`: the host binary (serve, image, sandbox, doctor, bench).

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = agent_runtime::cli::Cli::parse();
    if !cli.is_serve() {
        // A command whose reader went away (`agent-runtime browser snapshot | head`) ends
        // quietly, as other command-line tools do, instead of panicking in `println!`. The host
        // keeps Rust's default (ignored: a write to a closed pipe is an error it handles).
        // SAFETY: setting a signal's disposition to the default has no preconditions; no other
        // thread installs handlers for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let telemetry = match agent_runtime_telemetry::init(
        "agent-runtime",
        cli.log_format,
        "info",
        &agent_runtime_telemetry::OtelEnv::from_env(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("agent-runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match agent_runtime::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent-runtime: {e:#}");
            1
        }
    };
    // Spans still buffered go out before exit.
    telemetry.shutdown().await;
    std::process::exit(code);
}
