//! `agent-runtime sandbox network ID ...` and the egress flags of `sandbox create`.

use agent_runtime_client::NetworkMode;
use agent_runtime_proto::v1::{
    EgressPolicy, EgressStatus, GetEgressPolicyRequest, SetEgressPolicyRequest,
};

use super::call::Host;

/// What may leave a sandbox (DESIGN.md §2.2).
#[derive(Debug, Default, clap::Args)]
pub struct EgressArgs {
    /// A host name the sandbox may reach, or a wildcard like '*.github.com' (repeatable;
    /// implies --network allowlist).
    #[arg(long = "allow-domain", value_name = "NAME")]
    pub allow: Vec<String>,
    /// A host name or wildcard the sandbox may never reach, whatever else allows it (repeatable).
    #[arg(long = "deny-domain", value_name = "NAME")]
    pub deny: Vec<String>,
    /// none (nothing leaves; the default), allowlist (only --allow-domain names) or open (the
    /// public internet; private, loopback and metadata addresses stay blocked).
    #[arg(long, value_enum)]
    pub network: Option<NetworkMode>,
}

impl EgressArgs {
    /// Whether any flag was given.
    pub fn given(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty() || self.network.is_some()
    }

    /// The policy the flags describe (the host checks it).
    pub fn policy(&self) -> EgressPolicy {
        EgressPolicy {
            network: self
                .network
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
            allow_domains: self.allow.clone(),
            deny_domains: self.deny.clone(),
        }
    }
}

/// Shows a sandbox's egress policy, replaces it when flags are given, and prints its audit
/// lines with `--log`.
pub async fn run(
    host: &Host,
    id: String,
    args: EgressArgs,
    log: Option<u32>,
    json: bool,
) -> anyhow::Result<i32> {
    let mut status = if args.given() {
        host.call(SetEgressPolicyRequest {
            sandbox_id: id.clone(),
            egress: Some(args.policy()),
        })
        .await?
    } else {
        host.call(GetEgressPolicyRequest {
            sandbox_id: id.clone(),
            log_lines: 0,
        })
        .await?
    };
    if let Some(n) = log {
        let with_log = host
            .call(GetEgressPolicyRequest {
                sandbox_id: id,
                log_lines: n.clamp(1, 1000),
            })
            .await?;
        status.log = with_log.log;
        if json {
            for line in &status.log {
                println!("{line}");
            }
            return Ok(0);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
        return Ok(0);
    }
    print_status(&status);
    Ok(0)
}

fn status_json(s: &EgressStatus) -> serde_json::Value {
    let p = s.egress.clone().unwrap_or_default();
    serde_json::json!({
        "sandbox_id": s.sandbox_id,
        "network": p.network,
        "allow_domains": p.allow_domains,
        "deny_domains": p.deny_domains,
        "open_connections": s.open_connections,
        "max_connections": s.max_connections,
        "bytes_total": s.bytes_total,
        "max_bytes": s.max_bytes,
    })
}

fn print_status(s: &EgressStatus) {
    let p = s.egress.clone().unwrap_or_default();
    println!("network:      {}", p.network);
    if !p.allow_domains.is_empty() {
        println!("allow:        {}", p.allow_domains.join(", "));
    }
    if !p.deny_domains.is_empty() {
        println!("deny:         {}", p.deny_domains.join(", "));
    }
    println!(
        "connections:  {} open (cap {})",
        s.open_connections, s.max_connections
    );
    let cap = if s.max_bytes == 0 {
        "no cap".to_owned()
    } else {
        format!("cap {}", crate::limits::format_bytes(s.max_bytes))
    };
    println!(
        "bytes:        {} ({cap})",
        crate::limits::format_bytes(s.bytes_total)
    );
    for line in &s.log {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let why = v["rule"]
            .as_str()
            .map(|r| format!("rule {r}"))
            .or_else(|| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{} {:<7} {:<7} {}:{} {} up {} down {} {}ms {}",
            v["time"].as_str().unwrap_or(""),
            v["decision"].as_str().unwrap_or(""),
            v["method"].as_str().unwrap_or(""),
            v["host"].as_str().unwrap_or(""),
            v["port"],
            v["address"].as_str().unwrap_or(""),
            v["bytes_up"],
            v["bytes_down"],
            v["duration_ms"],
            why
        );
    }
}
