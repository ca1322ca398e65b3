//! Command-line flags (with environment fallbacks) and the settings they make.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// The value that turns a listener off.
const NONE: &str = "none";

/// sandboxd: the daemon inside every Agent Runtime sandbox. Serves the `Sandbox` gRPC service
/// (exec, files, contexts, browser) and the host's `Egress` service on TCP and on a unix socket,
/// and offers processes an egress proxy address whose connections it carries to the host.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// TCP address to serve on, or `none`.
    #[arg(long, env = "SANDBOXD_LISTEN", default_value = "0.0.0.0:9999", value_parser = parse_listen)]
    pub listen: Listen,
    /// Unix socket to serve on, or `none`.
    #[arg(long, env = "SANDBOXD_SOCKET", default_value = "/run/agent-runtime/sandboxd.sock", value_parser = parse_socket)]
    pub socket: Socket,
    /// The workspace: relative paths resolve here, and code runs here by default.
    #[arg(long, env = "SANDBOXD_WORKSPACE", default_value = "/workspace")]
    pub workspace: PathBuf,
    /// The egress proxy's address inside the sandbox, or `none`. Processes reach the web through
    /// it; each connection is carried to the host's egress proxy (the `Egress` service), which
    /// decides. `127.0.0.1:0` picks a free port (several daemons on one machine); the host learns
    /// the URL from Listen's first offer. An address that cannot be bound turns egress off.
    #[arg(long, env = "SANDBOXD_EGRESS_LISTEN", default_value = "127.0.0.1:3128", value_parser = parse_listen)]
    pub egress_listen: Listen,
    /// A PEM file of extra CAs to trust (an inspecting upstream proxy, a test CA): written with
    /// the system CAs to /tmp/.agent-runtime/ca-bundle.pem, which every process gets in
    /// SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO, PIP_CERT and
    /// NODE_EXTRA_CA_CERTS, and added to the sandbox user's NSS database for Chromium (certutil).
    #[arg(long, env = "SANDBOXD_EXTRA_CA")]
    pub extra_ca: Option<PathBuf>,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object per line).
    #[arg(long, env = "SANDBOXD_LOG_FORMAT", default_value = "text")]
    pub log_format: agent_runtime_telemetry::LogFormat,
}

/// Where to serve TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// No TCP listener.
    Off,
    /// Listen on this address.
    On(SocketAddr),
}

/// Where to serve the unix socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Socket {
    /// No unix socket.
    Off,
    /// Create the socket at this path.
    On(PathBuf),
}

fn parse_listen(value: &str) -> Result<Listen, String> {
    if value.eq_ignore_ascii_case(NONE) {
        return Ok(Listen::Off);
    }
    value
        .parse()
        .map(Listen::On)
        .map_err(|e| format!("{e}; give HOST:PORT such as 0.0.0.0:9999, or none"))
}

fn parse_socket(value: &str) -> Result<Socket, String> {
    if value.eq_ignore_ascii_case(NONE) {
        Ok(Socket::Off)
    } else if value.is_empty() {
        Err("give a socket path, or none".into())
    } else {
        Ok(Socket::On(PathBuf::from(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_can_be_turned_off() {
        let args = Args::try_parse_from([
            "sandboxd",
            "--listen",
            "none",
            "--socket",
            "/tmp/s.sock",
            "--workspace",
            "/tmp/ws",
        ]);
        let args = args.map_err(|e| e.to_string());
        assert!(
            matches!(&args, Ok(a) if a.listen == Listen::Off && a.socket == Socket::On("/tmp/s.sock".into())),
            "{args:?}"
        );
        assert!(Args::try_parse_from(["sandboxd", "--listen", "nonsense"]).is_err());
    }
}
