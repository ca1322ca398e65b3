//! `sandboxd` binary: parse flags, set up logging, separate the daemon from user code, run until a
//! shutdown signal. Started as `node` it is the Playwright driver shim instead (see `privileges`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Started as `node` (the driver shim): become the sandbox user and run the real Node.
    if sandboxd::privileges::is_driver_shim() {
        let err = sandboxd::privileges::exec_driver_node();
        eprintln!("sandboxd (driver shim): error: {err}");
        return std::process::ExitCode::from(127);
    }
    let args = sandboxd::cli::Args::parse();
    // Children get proxy variables only when the host asks, never the daemon's own.
    sandboxd::egress::scrub_inherited_env();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in `docker logs`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,zeromq=error")),
        )
        .init();
    // Before any thread exists: setgroups applies to the whole process.
    match sandboxd::privileges::harden_daemon() {
        Ok(Some(user)) => tracing::info!(uid = user.uid, gid = user.gid, "user code runs as"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("sandboxd: error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandboxd: error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sandboxd::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandboxd: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
