//! `agent-runtime bench`: start-up and exec latency through a running host, with `docker run` of
//! the same image measured in the same run as the baseline.

use std::time::{Duration, Instant};

use agent_runtime_client::{Language, RunOutcome};
use agent_runtime_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, ExecRequest, PoolStatusRequest,
};
use anyhow::Context as _;

use super::call::{sandbox_id, status_err, Host};

/// Bench options.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Address of the host to measure.
    #[arg(long, env = "AGENT_RUNTIME_ADDR", default_value = super::DEFAULT_ADDR)]
    addr: String,
    /// Samples per measurement.
    #[arg(short, long, default_value_t = 20)]
    n: usize,
    /// Also measure the REST contexts API at this base URL (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    rest: Option<String>,
    /// Also measure the browser: cold start, goto + snapshot, snapshot size.
    #[arg(long)]
    browser: bool,
    /// Also measure the egress proxy (starts a private host; needs openssl and python3 here):
    /// added latency of a small HTTPS request and 200 MiB download throughput, against the same
    /// client without the proxy.
    #[arg(long)]
    egress: bool,
    /// Also measure warm pools (claims from a running and a paused pool the bench sets up and
    /// removes), Python through the spare interpreter against cold starts, streamed first byte
    /// and exec throughput across 1 and 10 sandboxes.
    #[arg(long)]
    speed: bool,
    /// Write the results as markdown to this file (e.g. BENCHMARKS.md), with the machine and
    /// the date.
    #[arg(long)]
    write: Option<std::path::PathBuf>,
}

/// The `p` quantile of sorted samples.
pub(super) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Milliseconds, for tables.
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the benchmark and prints a table.
pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let n = args.n.max(1);
    let host = Host::connect(&args.addr).await?;
    let image = host.call(PoolStatusRequest {}).await?.image;

    let mut create = Vec::with_capacity(n);
    let mut exec = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        // Cold: a pool would answer some of these otherwise.
        let info = host
            .call(CreateSandboxRequest {
                pool: "none".into(),
                ..CreateSandboxRequest::default()
            })
            .await?;
        create.push(t.elapsed());
        let t = Instant::now();
        let out = echo(&host, &info.sandbox_id).await?;
        exec.push(t.elapsed());
        anyhow::ensure!(out == "hi\n", "echo printed {out:?}");
        host.call(DestroySandboxRequest {
            sandbox_id: info.sandbox_id,
        })
        .await?;
    }

    let mut docker = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let st = tokio::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "true",
                &image,
            ])
            .status()
            .await
            .context("running the docker CLI")?;
        docker.push(t.elapsed());
        anyhow::ensure!(st.success(), "docker run failed");
    }
    let mut table = super::speed_bench::Table::new(&image, n, &docker);
    table.row(
        "docker run --rm --network none IMAGE true",
        docker.clone(),
        "baseline",
    );
    table.row(
        "sandbox create -> ready, cold (gRPC Create)",
        create,
        "<= 0.4x docker run",
    );
    table.row(
        "exec `echo hi` round trip through host, first call",
        exec,
        "<= 3 ms",
    );
    table.row(
        "exec `echo hi` round trip through host, settled sandbox",
        settled_echo(&host, n).await?,
        "<= 3 ms",
    );
    if args.speed {
        super::speed_bench::run(&host, n, &mut table).await?;
    }
    table.print();
    if let Some(path) = &args.write {
        table.write(path, n).await?;
        println!("wrote {}", path.display());
    }
    if let Some(rest) = &args.rest {
        rest_bench(rest, n).await?;
    }
    if args.browser {
        super::browser_bench::run(&host, n).await?;
    }
    if args.egress {
        super::egress_bench::run(n).await?;
    }
    Ok(0)
}

/// Context create, `1+1` execute and first streamed byte through the REST API.
async fn rest_bench(base: &str, n: usize) -> anyhow::Result<()> {
    use futures::StreamExt;
    use serde_json::{json, Value};
    let http = reqwest::Client::new();
    let (mut create, mut exec, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let created: Value = http
            .post(format!("{base}/api/v1/contexts"))
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        create.push(t.elapsed());
        let ctx = created["context_id"]
            .as_str()
            .with_context(|| format!("create answered {created}"))?
            .to_owned();
        for _ in 0..5 {
            let t = Instant::now();
            let v: Value = http
                .post(format!("{base}/api/v1/contexts/{ctx}/execute"))
                .json(&json!({"code": "1+1"}))
                .send()
                .await?
                .json()
                .await?;
            exec.push(t.elapsed());
            anyhow::ensure!(v["success"] == true, "1+1 answered {v}");
        }
        let t = Instant::now();
        let resp = http
            .post(format!("{base}/api/v1/contexts/{ctx}/execute"))
            .header("Accept", "application/x-ndjson")
            .json(&json!({"code": "print('hi', flush=True)"}))
            .send()
            .await?;
        let mut body = resp.bytes_stream();
        if let Some(chunk) = body.next().await {
            chunk?;
            first.push(t.elapsed());
        }
        while body.next().await.is_some() {}
        http.delete(format!("{base}/api/v1/contexts/{ctx}"))
            .send()
            .await?;
        // Give the warm pool time to refill, as it would between real users.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    for v in [&mut create, &mut exec, &mut first] {
        v.sort();
    }
    println!("REST {base}, n = {n} contexts");
    for (name, v, target) in [
        ("context create (POST /contexts)", &create, "< 100 ms"),
        ("execute `1+1` (POST /execute)", &exec, "< 50 ms"),
        ("streaming execute: first byte", &first, ""),
    ] {
        println!(
            "{:<42} {:>9.1} {:>9.1}   target {target}",
            name,
            ms(pct(v, 0.5)),
            ms(pct(v, 0.95))
        );
    }
    Ok(())
}

/// How long a new sandbox is left to settle (its spare interpreter imports numpy, pandas and
/// matplotlib, which takes the CPU a first exec would have) before the settled echo is timed.
const SETTLE: Duration = Duration::from_secs(3);

/// `echo hi` in one sandbox that has settled: what an agent's hundredth call costs, with nothing
/// of the sandbox's own start-up beside it.
async fn settled_echo(host: &Host, n: usize) -> anyhow::Result<Vec<Duration>> {
    let info = host
        .call(CreateSandboxRequest {
            pool: "none".into(),
            ..CreateSandboxRequest::default()
        })
        .await?;
    tokio::time::sleep(SETTLE).await;
    let mut samples = Vec::with_capacity(n);
    let mut outcome = Ok(());
    // The first few warm the channel and the page cache; not counted.
    for i in 0..n + 3 {
        let t = Instant::now();
        match echo(host, &info.sandbox_id).await {
            Ok(out) if out == "hi\n" => {
                if i >= 3 {
                    samples.push(t.elapsed());
                }
            }
            Ok(out) => {
                outcome = Err(anyhow::anyhow!("echo printed {out:?}"));
                break;
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    host.call(DestroySandboxRequest {
        sandbox_id: info.sandbox_id,
    })
    .await?;
    outcome.map(|()| samples)
}

async fn echo(host: &Host, id: &str) -> anyhow::Result<String> {
    let stream = host
        .in_sandbox(sandbox_id(id)?)
        .call(ExecRequest {
            language: Language::Shell.to_string(),
            code: "echo hi".into(),
            ..Default::default()
        })
        .await?;
    let out = RunOutcome::collect(stream, usize::MAX)
        .await
        .map_err(status_err)?;
    Ok(out.stdout)
}
