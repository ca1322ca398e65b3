//! `agent-runtime doctor`: what the host needs, what is missing, and how to fix it.

use std::path::Path;

use crate::cli::StateArgs;
use crate::serve::docker_backend;

struct Report {
    failed: bool,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("  ok    {what}");
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.failed = true;
        println!("  FAIL  {what}\n        fix: {fix}");
    }
    fn warn(&self, what: &str, fix: &str) {
        println!("  warn  {what}\n        fix: {fix}");
    }
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// Runs the checks; exit code 1 when something needed is missing.
pub async fn run(state: &StateArgs) -> anyhow::Result<i32> {
    let mut r = Report { failed: false };
    let state_dir = state.state_dir();
    println!("agent-runtime doctor");

    let sock = Path::new("/var/run/docker.sock");
    if std::env::var_os("DOCKER_HOST").is_none() && !sock.exists() {
        if on_path("dockerd") {
            r.fail(
                "the Docker daemon is not running (no /var/run/docker.sock)",
                "start it as root: `dockerd --bridge=none --iptables=false > /var/log/dockerd.log 2>&1 &` (or `systemctl start docker`)",
            );
        } else {
            r.fail(
                "Docker is not installed",
                "apt-get install docker.io (Debian) and start dockerd",
            );
        }
    }

    match docker_backend(
        &state_dir,
        "default",
        None,
        state.sandboxd.as_deref(),
        None,
        None,
    )
    .await
    {
        Ok(backend) => {
            match backend.daemon_version().await {
                Ok(v) => r.ok(&format!("Docker daemon answers: {v}")),
                Err(e) => r.fail(&format!("Docker daemon: {e}"), "check dockerd's log"),
            }
            let sandboxd = crate::config::sandboxd_binary(state.sandboxd.as_deref());
            if sandboxd.is_file() {
                r.ok(&format!("sandboxd binary: {}", sandboxd.display()));
                match backend.image_present().await {
                    Ok((tag, true)) => r.ok(&format!("sandbox image {tag} is built")),
                    Ok((tag, false)) => r.warn(
                        &format!("sandbox image {tag} is not built yet"),
                        "`agent-runtime image build` (serve also builds it on first start; a few minutes)",
                    ),
                    Err(e) => r.fail(&format!("sandbox image: {e}"), "see the message"),
                }
            } else {
                r.fail(
                    &format!("sandboxd binary not found at {}", sandboxd.display()),
                    "cargo build --workspace (it lands beside agent-runtime), or pass --sandboxd PATH",
                );
            }
        }
        Err(e) => {
            let msg = e.to_string();
            let fix = if msg.contains("ermission denied") {
                "run as root or add your user to the `docker` group (then log in again)"
            } else {
                "start dockerd (see above) and retry"
            };
            r.fail(&format!("cannot use Docker: {msg}"), fix);
        }
    }

    if on_path("mmdebstrap") {
        r.ok("mmdebstrap found (offline image build path)");
    } else {
        r.warn(
            "mmdebstrap not found: the image can be built only where debian:bookworm-slim can be pulled",
            "apt-get install mmdebstrap",
        );
    }
    if on_path("npm") {
        r.ok("npm found (stages Node.js and playwright-core for the image)");
    } else {
        r.fail(
            "npm not found: needed to build the image",
            "apt-get install npm (or install Node.js)",
        );
    }

    match std::fs::create_dir_all(&state_dir) {
        Ok(()) => r.ok(&format!(
            "state directory {} is usable",
            state_dir.display()
        )),
        Err(e) => r.fail(
            &format!("state directory {}: {e}", state_dir.display()),
            "pass --state-dir to a writable directory",
        ),
    }

    match crate::backend::docker::workspace::supported() {
        Ok(()) => r.ok("sized workspaces: loop devices and mkfs.ext4 available (1 GiB per sandbox by default)"),
        Err(e) => r.warn(
            &format!("sandbox workspaces will have no disk limit: {e}"),
            "run the host as root on a machine with loop devices and e2fsprogs, or accept unbounded workspaces (--workspace-size 0 silences this)",
        ),
    }
    if std::env::var_os("AGENT_RUNTIME_TOKEN_FILE").is_some() {
        r.ok("gRPC tokens: AGENT_RUNTIME_TOKEN_FILE is set (each token owns its sandboxes)");
    } else {
        r.warn(
            "gRPC has no tokens: every local user who can reach the port can use every sandbox",
            "on a shared machine start `serve --token-file FILE` (lines NAME:TOKEN) and give clients AGENT_RUNTIME_TOKEN",
        );
    }
    let otel = agent_runtime_telemetry::OtelEnv::from_env();
    match otel.export_config() {
        Ok(Some(export)) => r.ok(&format!(
            "traces: {export} (service {})",
            otel.service_name("agent-runtime")
        )),
        Ok(None) => r.ok(
            "traces: off (set OTEL_EXPORTER_OTLP_ENDPOINT, and OTEL_EXPORTER_OTLP_PROTOCOL=grpc or http/protobuf, to export spans)",
        ),
        Err(e) => r.fail(&format!("traces: {e}"), "fix or unset OTEL_EXPORTER_OTLP_PROTOCOL"),
    }

    if r.failed {
        println!("some checks failed");
        Ok(1)
    } else {
        println!("all checks passed");
        Ok(0)
    }
}
