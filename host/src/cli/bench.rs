//! `agent-runtime bench`: start-up and exec latency through a running host, with `docker run` of
//! the same image measured in the same run as the baseline.

use std::time::{Duration, Instant};

use agent_runtime_proto::v1::{CreateSandboxRequest, PoolStatusRequest};
use anyhow::Context as _;

use super::call::Host;
use super::speed_bench::{echo, with_sandboxes, Table};

/// Bench options.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Address of the host to measure.
    #[arg(long, env = "AGENT_RUNTIME_ADDR", default_value = super::DEFAULT_ADDR)]
    addr: String,
    /// Samples per measurement.
    #[arg(short, long, default_value_t = 20)]
    n: usize,
    /// Also measure the REST contexts API at this base URL (e.g. http://127.0.0.1:8080):
    /// context create, `1+1` and the streamed first byte, as rows of the table.
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
    /// Also measure, as rows of the same table: warm-pool claims (a running and a paused pool
    /// the bench sets up and removes); Python `print(1)` and `import pandas` through the spare
    /// interpreter against cold starts; the streamed first byte; browser goto + snapshot of a
    /// small page and of Python's `library/os.html` (Debian's python3.11-doc), cold and warm;
    /// the first goto in a sandbox from a `browser` pool; the MCP bridge's overhead over a
    /// direct gRPC call (starts the `mcp-bridge` beside this binary); exec throughput across
    /// 1, 10 and 50 sandboxes (as many as the host's cap allows); density: memory per idle
    /// sandbox, with a kernel, with a browser, and as many idle sandboxes as the host admits
    /// (needs Docker on this machine). Every sandbox and pool it makes is removed at the end.
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
    let host = Host::connect(&args.addr).await?;
    tokio::select! {
        done = measure(&args, &host) => done,
        _ = tokio::signal::ctrl_c() => {
            // Parts clean up after themselves when they fail, not when they are dropped here.
            let removed = super::speed_bench::remove_leftovers(&host).await?;
            anyhow::bail!("interrupted; removed the bench's pools and its {removed} sandbox(es)")
        }
    }
}

async fn measure(args: &BenchArgs, host: &Host) -> anyhow::Result<i32> {
    let n = args.n.max(1);
    let host = host.clone();
    let image = host.call(PoolStatusRequest {}).await?.image;

    let (create, exec) = with_sandboxes(&host, async |made| {
        let (mut create, mut exec) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let t = Instant::now();
            // Cold: a pool would answer some of these otherwise.
            let info = made
                .create(CreateSandboxRequest {
                    pool: "none".into(),
                    ..CreateSandboxRequest::default()
                })
                .await?;
            create.push(t.elapsed());
            let t = Instant::now();
            let out = echo(&host, &info.sandbox_id).await?;
            exec.push(t.elapsed());
            anyhow::ensure!(out == "hi\n", "echo printed {out:?}");
            made.destroy(&info.sandbox_id).await?;
        }
        Ok((create, exec))
    })
    .await?;

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
    let mut table = Table::new(&image, n, &docker);
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
        super::speed_bench::run(&host, &args.addr, n, &mut table).await?;
    }
    if let Some(rest) = &args.rest {
        rest_bench(&host, rest, n, &mut table).await?;
    }
    if args.speed {
        super::density_bench::run(&host, &mut table).await?;
    }
    table.print();
    if let Some(path) = &args.write {
        table.write(path, n).await?;
        println!("wrote {}", path.display());
    }
    if args.browser {
        super::browser_bench::run(&host, n).await?;
    }
    if args.egress {
        super::egress_bench::run(n).await?;
    }
    Ok(0)
}

/// Context create, `1+1` execute and first streamed byte through the REST API, as rows.
async fn rest_bench(host: &Host, base: &str, n: usize, table: &mut Table) -> anyhow::Result<()> {
    use futures::StreamExt;
    use serde_json::{json, Value};
    let http = reqwest::Client::new();
    let (mut create, mut exec, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        // Contexts come from the warm pool when it has a member, as they would for a user who
        // does not arrive right behind another.
        wait_for_contexts_pool(host).await?;
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
        let measured = async {
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
            anyhow::Ok(())
        }
        .await;
        // Deleted whether the runs worked or not: the context's sandbox goes with it.
        let deleted = http
            .delete(format!("{base}/api/v1/contexts/{ctx}"))
            .send()
            .await;
        measured?;
        deleted?.error_for_status()?;
    }
    table.row(
        "REST context create (POST /contexts, warm pool)",
        create,
        "keep ~15 ms",
    );
    table.row("REST execute `1+1` (POST /execute)", exec, "<= 5 ms");
    table.row("REST streaming execute: first byte", first, "");
    Ok(())
}

/// Waits until the host's pool of sandboxes with a started kernel (`serve --warm-contexts`,
/// the pool REST contexts take from) has a member ready; a few seconds when it has none.
async fn wait_for_contexts_pool(host: &Host) -> anyhow::Result<()> {
    let status = host.call(PoolStatusRequest {}).await?;
    let pool = status
        .pools
        .iter()
        .filter_map(|p| p.shape.as_ref())
        .find(|s| s.kernel && s.size > 0);
    match pool {
        Some(shape) => super::speed_bench::wait_ready(host, &shape.name).await,
        None => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(())
        }
    }
}

/// How long a new sandbox is left to settle (its spare interpreter imports numpy, pandas and
/// matplotlib, which takes the CPU a first exec would have) before the settled echo is timed.
const SETTLE: Duration = Duration::from_secs(3);

/// `echo hi` in one sandbox that has settled: what an agent's hundredth call costs, with nothing
/// of the sandbox's own start-up beside it.
async fn settled_echo(host: &Host, n: usize) -> anyhow::Result<Vec<Duration>> {
    with_sandboxes(host, async |made| {
        let id = made
            .create(CreateSandboxRequest {
                pool: "none".into(),
                ..CreateSandboxRequest::default()
            })
            .await?
            .sandbox_id;
        tokio::time::sleep(SETTLE).await;
        let mut samples = Vec::with_capacity(n);
        // The first few warm the channel and the page cache; not counted.
        for i in 0..n + 3 {
            let t = Instant::now();
            let out = echo(host, &id).await?;
            let took = t.elapsed();
            anyhow::ensure!(out == "hi\n", "echo printed {out:?}");
            if i >= 3 {
                samples.push(took);
            }
        }
        Ok(samples)
    })
    .await
}
