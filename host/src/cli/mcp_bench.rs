//! `agent-runtime bench --speed`, MCP part: what the bridge adds over a direct gRPC call. The
//! bench starts `mcp-bridge --http` on loopback (the binary beside this one) pointed at the
//! host it measures, opens one Streamable HTTP session, and times `code_run` of `echo hi`
//! against gRPC `Exec` of the same command in the same sandbox, the two interleaved.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::call::Host;
use super::speed_bench::{echo, with_sandboxes, Table};

/// How long the bridge has to say where it listens.
const START_WAIT: Duration = Duration::from_secs(30);
/// Calls of each kind before the timed ones (connections, the bridge's channel, page cache).
const WARMUP: usize = 3;
/// Timed pairs at least: one difference of two p50s of a few ms needs more than a handful.
const MIN_PAIRS: usize = 20;
/// Pause after the sandbox starts: its spare interpreter takes the CPU for a few seconds.
const SETTLE: Duration = Duration::from_secs(3);
/// The MCP protocol revision the session speaks.
const PROTOCOL: &str = "2025-06-18";

/// Measures the bridge's overhead into `table`; `addr` is the host's gRPC address.
pub async fn run(host: &Host, addr: &str, n: usize, table: &mut Table) -> anyhow::Result<()> {
    let bridge = std::env::current_exe()
        .context("finding this binary")?
        .with_file_name("mcp-bridge");
    if !bridge.exists() {
        table.note(format!(
            "MCP bridge overhead not measured: {} is missing (cargo build -p mcp-bridge)",
            bridge.display()
        ));
        return Ok(());
    }
    let pairs = n.max(MIN_PAIRS);
    let (direct, mcp) = with_sandboxes(host, async |made| {
        let id = made
            .create(agent_runtime_proto::v1::CreateSandboxRequest {
                pool: "none".into(),
                ..Default::default()
            })
            .await?
            .sandbox_id;
        tokio::time::sleep(SETTLE).await;
        let mut child = tokio::process::Command::new(&bridge)
            .args(["--http", "127.0.0.1:0", "--no-spawn-host", "--addr", addr])
            .args(["--sandbox", &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bridge.display()))?;
        let mut drain = None;
        let measured = async {
            let (url, drained) = listening_url(&mut child).await?;
            drain = Some(drained);
            let session = Session::open(&url).await?;
            let (mut direct, mut mcp) = (Vec::new(), Vec::new());
            for i in 0..WARMUP + pairs {
                let t = Instant::now();
                let out = echo(host, &id).await?;
                let d = t.elapsed();
                anyhow::ensure!(out == "hi\n", "gRPC echo printed {out:?}");
                let t = Instant::now();
                session.echo(&id).await?;
                let m = t.elapsed();
                if i >= WARMUP {
                    direct.push(d);
                    mcp.push(m);
                }
            }
            Ok((direct, mcp))
        }
        .await;
        let _ = child.kill().await;
        if let Some(task) = drain {
            task.abort();
        }
        measured
    })
    .await?;
    let mut diffs: Vec<f64> = direct
        .iter()
        .zip(&mcp)
        .map(|(d, m)| super::bench::ms(*m) - super::bench::ms(*d))
        .collect();
    diffs.sort_by(f64::total_cmp);
    let p95 = diffs
        .get(((diffs.len().max(1) - 1) as f64 * 0.95).round() as usize)
        .copied();
    let p50 = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        super::bench::ms(super::bench::pct(&v, 0.5))
    };
    let overhead = p50(&mcp) - p50(&direct);
    let pairs = direct.len();
    table.row(
        "exec `echo hi`, gRPC Exec (paired with the MCP row)",
        direct,
        "",
    );
    table.row(
        "code_run `echo hi` through mcp-bridge (Streamable HTTP)",
        mcp,
        "",
    );
    table.derived(
        "MCP bridge overhead (p50 difference; p95 of pair differences)",
        overhead,
        p95,
        pairs,
        "<= 1 ms",
    );
    Ok(())
}

/// Reads the bridge's stderr until it says where it listens; the task returned drains the rest
/// of its log (dropped), so the bridge never blocks on a full pipe.
async fn listening_url(
    child: &mut tokio::process::Child,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let stderr = child.stderr.take().context("the bridge's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(START_WAIT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.split("listening on ").nth(1) {
                return anyhow::Ok(Some(url.trim().to_owned()));
            }
            seen.push(line);
        }
        Ok(None)
    })
    .await;
    let url = match found {
        Ok(Ok(Some(url))) => url,
        Ok(Ok(None)) => anyhow::bail!("mcp-bridge exited before it listened: {}", seen.join("\n")),
        Ok(Err(e)) => return Err(e).context("reading the bridge's log"),
        Err(_) => anyhow::bail!(
            "mcp-bridge did not listen within {} s: {}",
            START_WAIT.as_secs(),
            seen.join("\n")
        ),
    };
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((url, drain))
}

/// One Streamable HTTP session.
struct Session {
    http: reqwest::Client,
    url: String,
    id: String,
}

impl Session {
    /// `initialize`, then `notifications/initialized`.
    async fn open(url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
        let resp = http
            .post(url)
            .header("Accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "agent-runtime-bench", "version": "1"}}}),
            )
            .send()
            .await
            .with_context(|| format!("POST initialize to {url}"))?;
        anyhow::ensure!(
            resp.status().is_success(),
            "initialize answered {}",
            resp.status()
        );
        let id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .context("initialize answered without an mcp-session-id")?
            .to_owned();
        resp.bytes().await?;
        let session = Self {
            http,
            url: url.to_owned(),
            id,
        };
        let resp = session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "notifications/initialized answered {}",
            resp.status()
        );
        resp.bytes().await?;
        Ok(session)
    }

    async fn post(&self, body: Value) -> anyhow::Result<reqwest::Response> {
        self.http
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", PROTOCOL)
            .json(&body)
            .send()
            .await
            .context("POST to the bridge")
    }

    /// `code_run` of `echo hi` in `sandbox`; an error unless it printed `hi`.
    async fn echo(&self, sandbox: &str) -> anyhow::Result<()> {
        let resp = self
            .post(
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "code_run",
                "arguments": {"language": "shell", "code": "echo hi", "sandbox_id": sandbox}}}),
            )
            .await?;
        let body = resp.text().await?;
        let result = rpc_result(&body, 1)?;
        let out = &result["structuredContent"];
        anyhow::ensure!(
            result["isError"] != true && out["stdout"] == "hi\n",
            "code_run answered {result}"
        );
        Ok(())
    }
}

/// The `result` of JSON-RPC response `id` in a body that is JSON or an SSE stream.
fn rpc_result(body: &str, id: u64) -> anyhow::Result<Value> {
    let messages: Vec<Value> = if body.trim_start().starts_with('{') {
        serde_json::from_str(body).into_iter().collect()
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    let reply = messages
        .into_iter()
        .find(|m| m["id"] == id)
        .with_context(|| format!("no response {id} in {body:?}"))?;
    if let Some(e) = reply.get("error") {
        anyhow::bail!("the bridge answered an error: {e}");
    }
    Ok(reply["result"].clone())
}
