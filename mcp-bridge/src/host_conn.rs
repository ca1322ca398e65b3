//! The connection to the host: one lazily connected gRPC channel, shared by every session.
//!
//! Before the first call (and again after the host went away) the bridge checks that a host
//! answers. When none does and the address is on loopback, it starts `agent-runtime serve`
//! itself — found beside the bridge's binary, else on PATH — with an idle exit, so the host goes
//! away once nobody uses it. Two bridges starting at once serialise on a lock file: the second
//! one finds the first one's host answering and uses it, so one host serves both.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agent_runtime_client::{run_timeout, Rpc, SandboxesRpc, MAX_RUN_TIMEOUT};
use agent_runtime_proto::v1::PoolStatusRequest;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use crate::error::{HostError, ToolError};

/// How long a probe waits for the host.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a started host may take to answer (it may build the sandbox image first).
const SPAWN_TIMEOUT: Duration = Duration::from_secs(600);
/// Deadline of a call that does not set its own (DESIGN.md §3.3).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Deadline of a sandbox create (the host may wait for a container and its daemon).
pub const CREATE_DEADLINE: Duration = Duration::from_secs(60);
/// What a run's deadline adds to the run's own timeout: sandboxd enforces the timeout itself
/// (and may restart a kernel after it); the deadline only guards against a daemon that hangs.
pub const RUN_MARGIN: Duration = Duration::from_secs(10);
/// The environment variable holding the bearer token for the host.
pub const TOKEN_ENV: &str = "AGENT_RUNTIME_TOKEN";

/// The channel every client uses: the host channel behind [`HostAuth`].
pub type HostChannel = InterceptedService<Channel, HostAuth>;

/// Adds the bearer token (when configured) and the default deadline to every call.
#[derive(Clone)]
pub struct HostAuth {
    bearer: Option<MetadataValue<Ascii>>,
}

impl HostAuth {
    /// From `AGENT_RUNTIME_TOKEN`; an empty variable means no token.
    fn from_env() -> Result<Self, HostError> {
        let Some(token) = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
        else {
            return Ok(Self { bearer: None });
        };
        // Never put the token itself into the error (or any log).
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| HostError::BadToken)?;
        value.set_sensitive(true);
        Ok(Self {
            bearer: Some(value),
        })
    }
}

impl Interceptor for HostAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.bearer {
            req.metadata_mut().insert("authorization", v.clone());
        }
        if !req.metadata().contains_key("grpc-timeout") {
            req.set_timeout(DEFAULT_DEADLINE);
        }
        // The host's span (and through it sandboxd's) joins the tool call's trace.
        agent_runtime_telemetry::inject_metadata(req.metadata_mut());
        Ok(req)
    }
}

/// How the bridge may start a host of its own.
#[derive(Clone, Debug)]
pub struct SpawnPolicy {
    /// Start `agent-runtime serve` when no host answers (loopback addresses only).
    pub enabled: bool,
    /// The host binary; `None`: beside this binary, else `agent-runtime` on PATH.
    pub binary: Option<PathBuf>,
    /// Seconds a started host stays up with no sandboxes and no calls.
    pub idle_exit_secs: u64,
}

/// The shared host connection.
pub struct HostConn {
    addr: String,
    channel: HostChannel,
    spawn: SpawnPolicy,
    /// True once a host answered; reset when a call finds it gone. Held across the probe (and a
    /// spawn) on purpose, so concurrent first calls wait for one check instead of racing.
    ready: tokio::sync::Mutex<bool>,
}

impl HostConn {
    /// A connection to `addr`; no I/O happens until the first call.
    pub fn new(addr: &str, spawn: SpawnPolicy) -> Result<Self, HostError> {
        let endpoint =
            Endpoint::from_shared(addr.to_owned()).map_err(|e| HostError::BadAddress {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
        let channel = endpoint
            .connect_timeout(PROBE_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            addr: addr.to_owned(),
            channel: InterceptedService::new(channel, HostAuth::from_env()?),
            spawn,
            ready: tokio::sync::Mutex::new(false),
        })
    }

    /// The host address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The channel to the host (every call through [`HostAuth`]), after making sure a host
    /// answers.
    pub async fn channel(&self) -> Result<HostChannel, ToolError> {
        self.ensure().await?;
        Ok(self.channel_now())
    }

    /// The channel without checking for (or starting) a host: for cleanup, which must neither
    /// wait for a host to start nor start one.
    pub fn channel_now(&self) -> HostChannel {
        self.channel.clone()
    }

    /// Calls `req` on the host's `Sandboxes` service within `deadline`, without checking for
    /// (or starting) a host: [`Self::ensure`] first where one should be started.
    pub async fn lifecycle<R: SandboxesRpc>(
        &self,
        req: R,
        deadline: Duration,
    ) -> Result<<R as Rpc>::Response, tonic::Status> {
        let mut request = tonic::Request::new(req);
        request.set_timeout(deadline);
        <R as Rpc>::send(self.channel_now(), request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Forgets that the host answered, so the next call checks (and maybe starts one) again.
    pub async fn mark_gone(&self) {
        *self.ready.lock().await = false;
    }

    /// Makes sure a host answers, starting one when allowed.
    pub async fn ensure(&self) -> Result<(), HostError> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        if self.probe().await.is_ok() {
            *ready = true;
            return Ok(());
        }
        let listen = self.spawnable_addr()?;
        self.start_host(listen).await?;
        *ready = true;
        Ok(())
    }

    async fn probe(&self) -> Result<(), tonic::Status> {
        let probe = self.lifecycle(PoolStatusRequest {}, PROBE_TIMEOUT);
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            // A host that refuses our credentials is there: calls will say why, and starting
            // another one on its address would only fail.
            Ok(Err(s))
                if matches!(
                    s.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                Ok(())
            }
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(tonic::Status::unavailable("probe timed out")),
        }
    }

    /// The address a started host should listen on, or why the bridge must not start one.
    fn spawnable_addr(&self) -> Result<SocketAddr, HostError> {
        let unreachable = |reason: &str| HostError::Unreachable {
            addr: self.addr.clone(),
            reason: reason.to_owned(),
        };
        if !self.spawn.enabled {
            return Err(unreachable(
                "starting a host is disabled (--no-spawn-host); start `agent-runtime serve`",
            ));
        }
        let uri: http::Uri =
            self.addr
                .parse()
                .map_err(|e: http::uri::InvalidUri| HostError::BadAddress {
                    addr: self.addr.clone(),
                    reason: e.to_string(),
                })?;
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h.parse::<IpAddr>().map_err(|_| {
                unreachable(
                    "it is not a loopback address, so the bridge does not start a host there",
                )
            })?,
        };
        if !ip.is_loopback() {
            return Err(unreachable(
                "it is not a loopback address, so the bridge does not start a host there",
            ));
        }
        Ok(SocketAddr::new(ip, uri.port_u16().unwrap_or(50051)))
    }

    /// Starts `agent-runtime serve` on `listen` unless another bridge did so meanwhile.
    async fn start_host(&self, listen: SocketAddr) -> Result<(), HostError> {
        let dir = std::env::temp_dir();
        let lock_path = dir.join(format!("agent-runtime-bridge-{}.lock", listen.port()));
        let log_path = dir.join(format!("agent-runtime-host-{}.log", listen.port()));
        let lock = HostLock::acquire(lock_path).await?;
        // Whoever held the lock before us may have started a host already.
        if self.probe().await.is_ok() {
            drop(lock);
            return Ok(());
        }
        let binary = self.host_binary();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| HostError::Io {
                what: format!("opening the host log {}", log_path.display()),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| HostError::Io {
            what: "duplicating the host log handle".into(),
            source,
        })?;
        tracing::info!(binary = %binary.display(), %listen, log = %log_path.display(),
            "no host answers: starting agent-runtime serve");
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.args([
            "serve",
            "--grpc-listen",
            &listen.to_string(),
            "--rest-listen",
            "none",
        ])
        .env(
            "AGENT_RUNTIME_IDLE_EXIT",
            self.spawn.idle_exit_secs.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: the host outlives this bridge (others may share it) and a
        // Ctrl-C meant for the MCP client does not reach it. It exits by itself once idle.
        .process_group(0)
        .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| HostError::SpawnFailed {
            addr: listen.to_string(),
            reason: format!("cannot run {}: {e}", binary.display()),
            log: log_path.display().to_string(),
        })?;
        let started = Instant::now();
        let result = loop {
            if self.probe().await.is_ok() {
                break Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                break Err(HostError::SpawnFailed {
                    addr: listen.to_string(),
                    reason: format!("it exited with {status}"),
                    log: log_path.display().to_string(),
                });
            }
            if started.elapsed() > SPAWN_TIMEOUT {
                break Err(HostError::SpawnFailed {
                    addr: listen.to_string(),
                    reason: format!("no answer after {}s", SPAWN_TIMEOUT.as_secs()),
                    log: log_path.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        drop(lock);
        if result.is_ok() {
            tracing::info!(ms = started.elapsed().as_millis() as u64, "host answers");
        }
        // Dropping the handle does not kill it (kill_on_drop is off); tokio reaps it when it
        // exits while this bridge still runs.
        drop(child);
        result
    }

    fn host_binary(&self) -> PathBuf {
        if let Some(b) = &self.spawn.binary {
            return b.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("agent-runtime")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("agent-runtime"))
    }
}

/// An exclusive flock on a lock file, released on drop.
struct HostLock {
    file: std::fs::File,
}

impl HostLock {
    async fn acquire(path: PathBuf) -> Result<Self, HostError> {
        let what = format!("locking {}", path.display());
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // SAFETY: flock on a file descriptor we own for the duration of the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Self { file })
        })
        .await
        .map_err(|e| HostError::Io {
            what: what.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| HostError::Io { what, source })
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own; closing it would release the lock anyway.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// A run's deadline: its timeout in seconds (0: the default) plus [`RUN_MARGIN`].
pub fn run_deadline(timeout_s: f64) -> Duration {
    run_timeout(timeout_s).unwrap_or(MAX_RUN_TIMEOUT) + RUN_MARGIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_gets_a_deadline_and_the_token() {
        let mut auth = HostAuth {
            bearer: Some("Bearer t0ken".parse().expect("ascii")),
        };
        let req = auth.call(tonic::Request::new(())).expect("intercepted");
        assert_eq!(
            req.metadata().get("authorization").map(|v| v.to_str().ok()),
            Some(Some("Bearer t0ken"))
        );
        assert_eq!(
            req.metadata().get("grpc-timeout").map(|v| v.to_str().ok()),
            Some(Some("30000000u"))
        );
        // A deadline the caller set is kept.
        let mut own = tonic::Request::new(());
        own.set_timeout(Duration::from_secs(90));
        let req = auth.call(own).expect("intercepted");
        assert_eq!(
            req.metadata().get("grpc-timeout").map(|v| v.to_str().ok()),
            Some(Some("90000000u"))
        );
        // Without a token, no header.
        let mut anonymous = HostAuth { bearer: None };
        let req = anonymous
            .call(tonic::Request::new(()))
            .expect("intercepted");
        assert!(req.metadata().get("authorization").is_none());
    }

    #[test]
    fn a_run_deadline_is_its_timeout_plus_the_margin() {
        assert_eq!(run_deadline(0.0), Duration::from_secs(30) + RUN_MARGIN);
        assert_eq!(run_deadline(3600.0), Duration::from_secs(3600) + RUN_MARGIN);
        assert_eq!(run_deadline(2.5), Duration::from_millis(2500) + RUN_MARGIN);
    }
}
