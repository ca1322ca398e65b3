//! `agent-runtime pool`: the host's warm pools — what each keeps ready, what it handed out and
//! how often a create found it empty — and changes to them.

use agent_runtime_proto::v1::{PoolStatusRequest, PoolStatusResponse};

use super::call::Host;
use crate::sandboxes::PoolShape;

/// Pool subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PoolCommand {
    /// Show every pool (the default).
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a pool or change one (by name); size 0 removes it and destroys its idle members.
    Set {
        /// `NAME=SIZE`, or `name=N,size=N,memory=512m,cpu=1` with the flags kernel, browser,
        /// paused (as `serve --pool`).
        shape: String,
    },
}

/// Runs a pool subcommand.
pub async fn run(cmd: Option<PoolCommand>, addr: &str) -> anyhow::Result<i32> {
    let host = Host::connect(addr).await?;
    match cmd.unwrap_or(PoolCommand::Ls { json: false }) {
        PoolCommand::Ls { json } => {
            let status = host.call(PoolStatusRequest {}).await?;
            print(&status, json)?;
        }
        PoolCommand::Set { shape } => {
            let shape = PoolShape::parse(&shape).map_err(anyhow::Error::msg)?;
            let status = host.call(shape.to_proto()).await?;
            print(&status, false)?;
        }
    }
    Ok(0)
}

fn print(status: &PoolStatusResponse, json: bool) -> anyhow::Result<()> {
    if json {
        let pools: Vec<serde_json::Value> = status
            .pools
            .iter()
            .map(|p| {
                let s = p.shape.clone().unwrap_or_default();
                serde_json::json!({
                    "name": s.name, "size": s.size, "memory_bytes": p.memory_bytes, "cpu": s.cpu,
                    "kernel": s.kernel, "browser": s.browser, "paused": s.paused,
                    "ready": p.ready, "starting": p.starting, "claims": p.claims, "misses": p.misses,
                })
            })
            .collect();
        let all = serde_json::json!({
            "running": status.running, "max_sandboxes": status.max_sandboxes,
            "image": status.image, "pools": pools,
        });
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{} sandboxes in use of {}; image {}",
        status.running, status.max_sandboxes, status.image
    );
    if status.pools.is_empty() {
        println!("no warm pools (serve --pool NAME=SIZE, or `agent-runtime pool set NAME=SIZE`)");
        return Ok(());
    }
    println!(
        "{:<14} {:>5} {:>6} {:>9} {:>8} {:>7} {:>7}  kind",
        "pool", "size", "ready", "starting", "memory", "claims", "misses"
    );
    for p in &status.pools {
        let s = p.shape.clone().unwrap_or_default();
        let kind: Vec<&str> = [
            (s.kernel, "kernel"),
            (s.browser, "browser"),
            (s.paused, "paused"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        println!(
            "{:<14} {:>5} {:>6} {:>9} {:>7}M {:>7} {:>7}  {}",
            s.name,
            s.size,
            p.ready,
            p.starting,
            p.memory_bytes >> 20,
            p.claims,
            p.misses,
            if kind.is_empty() {
                "plain".to_owned()
            } else {
                kind.join(",")
            }
        );
    }
    Ok(())
}
