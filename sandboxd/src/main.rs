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
    // Nor the collector's address or headers: the daemon's exporter keeps them to itself.
    let otel = agent_runtime_telemetry::OtelEnv::take();
    // The host carries the spans (a sandbox has no network): see `spans`.
    let relayed =
        std::env::var(agent_runtime_telemetry::relay::TRACES_ENV).is_ok_and(|v| v == "host");
    std::env::remove_var(agent_runtime_telemetry::relay::TRACES_ENV);
    // Before any thread exists (the span exporter starts some): setgroups applies to the whole
    // process.
    let user = match sandboxd::privileges::harden_daemon() {
        Ok(user) => user,
        Err(e) => {
            eprintln!("sandboxd: error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandboxd: error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Inside the runtime: an OTLP/gRPC exporter's channel lives there.
        let init = if relayed {
            agent_runtime_telemetry::init_relayed
        } else {
            agent_runtime_telemetry::init
        };
        let telemetry = init("sandboxd", args.log_format, "info,zeromq=error", &otel)?;
        if let Some(user) = user {
            tracing::info!(uid = user.uid, gid = user.gid, "user code runs as");
        }
        let result = sandboxd::run(args).await;
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandboxd: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
