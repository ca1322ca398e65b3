//! Command-line interface of `agent-runtime`.

pub mod audit;
pub mod bench;
pub mod browser;
pub mod browser_bench;
pub mod call;
pub mod context;
pub mod density_bench;
pub mod egress_bench;
pub mod image;
pub mod mcp_bench;
pub mod network;
pub mod pool;
pub mod run;
pub mod sandbox;
pub mod speed_bench;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::limits::{parse_memory, Caps};
use crate::serve::{serve, EgressOptions, ServeOptions, WorkspaceSize};

/// Default address of a running host, for the client commands.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";

/// Agent Runtime: disposable, locked-down computers for LLM agents.
#[derive(Debug, Parser)]
#[command(name = "agent-runtime", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr as `text` (colour only on a terminal) or `json` (for collectors).
    #[arg(
        long,
        global = true,
        env = "AGENT_RUNTIME_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: agent_runtime_telemetry::LogFormat,
}

impl Cli {
    /// Whether this runs the host (a server), rather than a command that prints and exits.
    pub fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: gRPC on 127.0.0.1:50051, building the sandbox image first if it is missing.
    Serve(Box<ServeArgs>),
    /// Manage the sandbox image.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Create, list, remove sandboxes and run commands in them (talks to a running host).
    Sandbox {
        #[command(subcommand)]
        command: sandbox::SandboxCommand,
        /// Address of the host.
        #[arg(long, global = true, env = "AGENT_RUNTIME_ADDR", default_value = DEFAULT_ADDR)]
        addr: String,
    },
    /// Stateful Python contexts (Jupyter kernels) in a sandbox.
    Context {
        #[command(subcommand)]
        command: context::ContextCommand,
        /// The sandbox holding the contexts.
        #[arg(
            long,
            short,
            global = true,
            env = "AGENT_RUNTIME_SANDBOX",
            default_value = ""
        )]
        sandbox: String,
        /// Address of the host.
        #[arg(long, global = true, env = "AGENT_RUNTIME_ADDR", default_value = DEFAULT_ADDR)]
        addr: String,
    },
    /// Runs in a sandbox: ls, attach (resume a run's output), kill, kill-all.
    Run {
        #[command(subcommand)]
        command: run::RunCommand,
        /// The sandbox holding the runs.
        #[arg(
            long,
            short,
            global = true,
            env = "AGENT_RUNTIME_SANDBOX",
            default_value = ""
        )]
        sandbox: String,
        /// Address of the host.
        #[arg(long, global = true, env = "AGENT_RUNTIME_ADDR", default_value = DEFAULT_ADDR)]
        addr: String,
    },
    /// The sandbox's browser: goto, snapshot, click, type, ... (refs come from `snapshot`).
    Browser {
        #[command(subcommand)]
        command: browser::BrowserCommand,
        /// The sandbox whose browser to drive.
        #[arg(
            long,
            short,
            global = true,
            env = "AGENT_RUNTIME_SANDBOX",
            default_value = ""
        )]
        sandbox: String,
        /// Address of the host.
        #[arg(long, global = true, env = "AGENT_RUNTIME_ADDR", default_value = DEFAULT_ADDR)]
        addr: String,
    },
    /// The host's warm pools: ls (the default), set NAME=SIZE / name=..,size=..,kernel,paused.
    Pool {
        #[command(subcommand)]
        command: Option<pool::PoolCommand>,
        /// Address of the host.
        #[arg(long, global = true, env = "AGENT_RUNTIME_ADDR", default_value = DEFAULT_ADDR)]
        addr: String,
    },
    /// Check what the host needs (Docker daemon, permissions, image) and say how to fix what is missing.
    Doctor(StateArgs),
    /// Measure start-up and exec latency against `docker run` in the same run.
    Bench(bench::BenchArgs),
    /// Read the host's call audit log: who did what to which sandbox, how it ended.
    Audit(audit::AuditArgs),
}

/// Where state lives and which sandboxd to use.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// State directory (sandbox directories, build cache).
    #[arg(long, env = "AGENT_RUNTIME_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The sandboxd binary to bake into the image (default: the one beside this binary).
    #[arg(long, env = "AGENT_RUNTIME_SANDBOXD")]
    pub sandboxd: Option<PathBuf>,
}

impl StateArgs {
    /// The state directory, defaulted.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(crate::config::default_state_dir)
    }
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// gRPC listen address (port 0 picks a free port and prints it).
    #[arg(
        long,
        env = "AGENT_RUNTIME_GRPC_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    grpc_listen: SocketAddr,
    /// REST listen address (`none` disables the REST API).
    #[arg(
        long,
        env = "AGENT_RUNTIME_REST_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    rest_listen: String,
    /// HTTP Basic credentials USER:PASSWORD the REST API requires (required off loopback).
    #[arg(long, env = "AGENT_RUNTIME_BASIC_AUTH", hide_env_values = true)]
    basic_auth: Option<String>,
    #[command(flatten)]
    state: StateArgs,
    /// Instance name; a host owns, adopts and cleans up only its own instance's sandboxes.
    #[arg(long, env = "AGENT_RUNTIME_INSTANCE", default_value = "default")]
    instance: String,
    /// Most sandboxes at once; creating more fails with RESOURCE_EXHAUSTED.
    #[arg(long, env = "AGENT_RUNTIME_MAX_SANDBOXES", default_value_t = 32)]
    max_sandboxes: usize,
    /// Largest memory limit a caller may ask for.
    #[arg(long, default_value = "8g")]
    max_memory: String,
    /// Longest sandbox lifetime in seconds.
    #[arg(long, default_value_t = 86400)]
    max_timeout: u64,
    /// Run this image instead of building the content-hashed one.
    #[arg(long, env = "AGENT_RUNTIME_IMAGE")]
    image: Option<String>,
    /// Destroy all sandboxes on shutdown (default: leave them for the next host to adopt).
    #[arg(long)]
    cleanup_on_exit: bool,
    /// Sandboxes with a started Python kernel kept ready, so REST contexts start at once (the
    /// pool `contexts`; with REST only).
    #[arg(long, env = "AGENT_RUNTIME_WARM_CONTEXTS", default_value_t = 1)]
    warm_contexts: usize,
    /// A warm pool (repeatable): `NAME=SIZE`, or `name=N,size=N,memory=512m,cpu=1` with the
    /// flags `kernel` (a started Python kernel), `browser` (Chromium launched) and `paused`
    /// (frozen while waiting). Creates whose memory and CPU match take a member; the pool
    /// refills in the background. E.g. `--pool default=4 --pool name=idle,size=20,paused`.
    #[arg(long = "pool", env = "AGENT_RUNTIME_POOLS", value_delimiter = ';', value_parser = parse_pool)]
    pools: Vec<crate::sandboxes::PoolShape>,
    /// Seconds between reaper passes.
    #[arg(long, default_value_t = 1)]
    reap_interval: u64,
    /// File of gRPC bearer tokens, one `NAME:TOKEN` per line; required to listen beyond
    /// loopback. Each token owns the sandboxes it creates.
    #[arg(long, env = "AGENT_RUNTIME_TOKEN_FILE", conflicts_with = "tokens")]
    token_file: Option<PathBuf>,
    /// The same tokens given in the environment (a Kubernetes secret, say): `NAME:TOKEN`
    /// entries separated by newlines or commas. Never printed.
    #[arg(
        long,
        env = "AGENT_RUNTIME_TOKENS",
        hide_env_values = true,
        hide = true
    )]
    tokens: Option<String>,
    /// Most memory all sandboxes together may be given (e.g. 16g); default: physical memory
    /// minus 2 GiB. Creates beyond it fail with RESOURCE_EXHAUSTED.
    #[arg(long, env = "AGENT_RUNTIME_MEMORY_BUDGET")]
    memory_budget: Option<String>,
    /// Size of each sandbox's /workspace filesystem (e.g. 1g); writers past it get ENOSPC.
    /// `0` leaves workspaces unbounded. Default: 1g when the host can loop-mount (root).
    #[arg(long, env = "AGENT_RUNTIME_WORKSPACE_SIZE")]
    workspace_size: Option<String>,
    /// Most egress proxy connections one sandbox may have open at once.
    #[arg(long, default_value_t = crate::egress::DEFAULT_MAX_CONNECTIONS)]
    egress_max_connections: u32,
    /// Most bytes (both ways) one sandbox may move through the egress proxy in its life
    /// (e.g. 8g; 0: no cap).
    #[arg(long, default_value = "8g")]
    egress_max_bytes: String,
    /// Trust this extra CA certificate (PEM) in every sandbox: curl, pip, git, requests, Node
    /// and Chromium (for an inspecting upstream proxy, or a test server).
    #[arg(long, env = "AGENT_RUNTIME_SANDBOX_CA_CERT")]
    sandbox_ca_cert: Option<PathBuf>,
    /// FOR TESTS ONLY: make the egress proxy dial ADDR for NAME (`NAME=IP:PORT` or
    /// `NAME:PORT=IP:PORT`), unchecked — the only way a sandbox can reach a loopback or private
    /// address. Never use it outside tests.
    #[arg(long = "egress-test-resolve", value_name = "NAME=IP:PORT")]
    egress_test_resolve: Vec<String>,
    /// The call audit log (JSON lines): default `<state>/instances/<instance>/audit.jsonl`;
    /// `none` turns it off.
    #[arg(long, env = "AGENT_RUNTIME_AUDIT_LOG")]
    audit_log: Option<String>,
    /// Size past which the audit log rotates to `FILE.1` (at most twice this is kept).
    #[arg(long, default_value = "64m")]
    audit_max_bytes: String,
}

/// Runs the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(a) => {
            let caps = Caps {
                max_memory: parse_memory(&a.max_memory)?,
                max_timeout: Duration::from_secs(a.max_timeout),
                ..Caps::default()
            };
            let rest_listen = match a.rest_listen.as_str() {
                "none" | "" => None,
                s => Some(
                    s.parse()
                        .map_err(|e| anyhow::anyhow!("--rest-listen {s:?}: {e}"))?,
                ),
            };
            let basic_auth = a
                .basic_auth
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(crate::rest::auth::BasicAuth::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let audit = crate::observe::AuditOptions {
                path: match a.audit_log.as_deref().map(str::trim) {
                    Some("none") => None,
                    Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                    _ => Some(crate::observe::audit::default_path(
                        &a.state.state_dir(),
                        &a.instance,
                    )),
                },
                max_bytes: parse_memory(&a.audit_max_bytes)
                    .map_err(|e| anyhow::anyhow!("--audit-max-bytes: {e}"))?,
            };
            serve(ServeOptions {
                grpc_listen: a.grpc_listen,
                rest_listen,
                basic_auth,
                state_dir: a.state.state_dir(),
                instance: a.instance,
                max_sandboxes: a.max_sandboxes,
                caps,
                image: a.image,
                sandboxd: a.state.sandboxd,
                cleanup_on_exit: a.cleanup_on_exit,
                reap_interval: Duration::from_secs(a.reap_interval.max(1)),
                warm_contexts: a.warm_contexts,
                pools: a.pools,
                tokens: match (a.token_file.as_deref(), a.tokens.as_deref()) {
                    (Some(file), _) => {
                        Some(crate::auth::Tokens::load(file).map_err(anyhow::Error::msg)?)
                    }
                    (None, Some(list)) if !list.trim().is_empty() => Some(
                        crate::auth::Tokens::parse(&list.replace(',', "\n"))
                            .map_err(|e| anyhow::anyhow!("AGENT_RUNTIME_TOKENS: {e}"))?,
                    ),
                    _ => None,
                },
                memory_budget: a
                    .memory_budget
                    .as_deref()
                    .map(|m| parse_memory(m).map_err(|e| anyhow::anyhow!("--memory-budget: {e}")))
                    .transpose()?,
                workspace_size: match a.workspace_size.as_deref().map(str::trim) {
                    None | Some("") => WorkspaceSize::Auto,
                    Some("0") => WorkspaceSize::Unbounded,
                    Some(v) => WorkspaceSize::Bytes(
                        parse_memory(v).map_err(|e| anyhow::anyhow!("--workspace-size: {e}"))?,
                    ),
                },
                egress: EgressOptions {
                    max_connections: a.egress_max_connections.max(1),
                    max_bytes: match a.egress_max_bytes.trim() {
                        "0" => 0,
                        v => parse_memory(v)
                            .map_err(|e| anyhow::anyhow!("--egress-max-bytes: {e}"))?,
                    },
                    test_resolve: a.egress_test_resolve,
                    sandbox_ca_cert: a.sandbox_ca_cert,
                },
                audit,
            })
            .await?;
            Ok(0)
        }
        Command::Image { command } => image::run(command).await,
        Command::Sandbox { command, addr } => sandbox::run(command, &addr).await,
        Command::Context {
            command,
            sandbox,
            addr,
        } => context::run(command, &addr, require_sandbox(&sandbox)?).await,
        Command::Run {
            command,
            sandbox,
            addr,
        } => {
            let host = call::Host::connect(&addr).await?;
            run::run(command, host.in_sandbox(require_sandbox(&sandbox)?)).await
        }
        Command::Browser {
            command,
            sandbox,
            addr,
        } => browser::run(command, &addr, require_sandbox(&sandbox)?).await,
        Command::Pool { command, addr } => pool::run(command, &addr).await,
        Command::Doctor(state) => crate::doctor::run(&state).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Audit(args) => audit::run(&args),
    }
}

/// Parses one `--pool` value.
fn parse_pool(s: &str) -> Result<crate::sandboxes::PoolShape, String> {
    crate::sandboxes::PoolShape::parse(s)
}

/// The sandbox a context or browser command works on; clap cannot require a global flag.
fn require_sandbox(sandbox: &str) -> anyhow::Result<agent_runtime_client::SandboxId> {
    if sandbox.trim().is_empty() {
        anyhow::bail!(
            "say which sandbox: --sandbox sb-... (or AGENT_RUNTIME_SANDBOX); \
             `agent-runtime sandbox ls` lists them"
        );
    }
    call::sandbox_id(sandbox)
}
