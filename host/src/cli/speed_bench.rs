//! `agent-runtime bench --speed`: warm-pool claims (running and paused pools the bench sets up
//! and removes), Python through the spare interpreter against a cold start in the same sandbox,
//! the first streamed byte, and exec throughput across several sandboxes — and the table every
//! bench part adds to, printed and optionally written as BENCHMARKS.md.

use std::time::{Duration, Instant};

use agent_runtime_client::{Language, RunOutcome};
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, ExecRequest, PoolStatusRequest,
};
use anyhow::Context as _;
use futures::StreamExt;

use super::bench::{ms, pct};
use super::call::{sandbox_id, status_err, Host};
use crate::sandboxes::PoolShape;

/// Longest the bench waits for a pool to refill between samples (a hang guard).
const REFILL_WAIT: Duration = Duration::from_secs(120);
/// Pause between two samples through the spare interpreter, so that a new one has started
/// (it imports numpy, pandas and matplotlib first); not timed.
const SPARE_PAUSE: Duration = Duration::from_millis(3000);
/// A variable that makes a Python run start cold (see sandboxd's `zygote`).
const COLD_ENV: &str = "PYTHON_BENCH_COLD";

/// One measurement.
struct Row {
    name: String,
    samples: Vec<Duration>,
    target: String,
}

/// Results, with the `docker run` baseline every ratio is against.
pub struct Table {
    image: String,
    n: usize,
    base: f64,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    /// A table for `image` whose baseline is `docker`'s samples.
    pub fn new(image: &str, n: usize, docker: &[Duration]) -> Self {
        let mut sorted = docker.to_vec();
        sorted.sort();
        Self {
            image: image.to_owned(),
            n,
            base: ms(pct(&sorted, 0.5)).max(f64::MIN_POSITIVE),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, name: &str, mut samples: Vec<Duration>, target: &str) {
        samples.sort();
        self.rows.push(Row {
            name: name.to_owned(),
            samples,
            target: target.to_owned(),
        });
    }

    /// Adds a line under the table.
    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    fn cells(&self, r: &Row) -> (f64, f64, usize, f64) {
        let p50 = ms(pct(&r.samples, 0.5));
        (
            p50,
            ms(pct(&r.samples, 0.95)),
            r.samples.len(),
            p50 / self.base,
        )
    }

    /// Prints the table.
    pub fn print(&self) {
        println!("image {}, n = {}", self.image, self.n);
        println!(
            "{:<52} {:>9} {:>9} {:>4} {:>10}  target",
            "measurement", "p50 ms", "p95 ms", "n", "p50/docker"
        );
        for r in &self.rows {
            let (p50, p95, n, ratio) = self.cells(r);
            println!(
                "{:<52} {:>9.1} {:>9.1} {:>4} {:>10.3}  {}",
                r.name, p50, p95, n, ratio, r.target
            );
        }
        for note in &self.notes {
            println!("{note}");
        }
    }

    /// Writes the table as markdown with the machine and the date.
    pub async fn write(&self, path: &std::path::Path, n: usize) -> anyhow::Result<()> {
        let mut md = String::new();
        md.push_str("# Benchmarks\n\n");
        md.push_str(&format!(
            "Measured by `agent-runtime bench -n {n} --speed --rest URL --write BENCHMARKS.md` on {} \
             ({}). Every ratio is against `docker run --rm --network none IMAGE true` measured in \
             the same run. Timing thresholds live here, never in tests.\n\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            machine().await
        ));
        md.push_str(&format!("Image `{}`.\n\n", self.image));
        md.push_str("| measurement | p50 ms | p95 ms | n | p50 / docker run | target |\n");
        md.push_str("|---|---:|---:|---:|---:|---|\n");
        for r in &self.rows {
            let (p50, p95, n, ratio) = self.cells(r);
            md.push_str(&format!(
                "| {} | {p50:.1} | {p95:.1} | {n} | {ratio:.3} | {} |\n",
                r.name, r.target
            ));
        }
        if !self.notes.is_empty() {
            md.push('\n');
            for note in &self.notes {
                md.push_str(&format!("- {note}\n"));
            }
        }
        tokio::fs::write(path, md)
            .await
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The machine, for the record: CPU model and count, memory, kernel, Docker.
async fn machine() -> String {
    let cpuinfo = tokio::fs::read_to_string("/proc/cpuinfo")
        .await
        .unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = tokio::fs::read_to_string("/proc/meminfo")
        .await
        .unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0.0, |k| k as f64 / 1024.0 / 1024.0);
    let kernel = tokio::fs::read_to_string("/proc/sys/kernel/osrelease")
        .await
        .unwrap_or_default();
    let docker = tokio::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .await
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cpus} × {model}, {mem_gib:.0} GiB, Linux {}, Docker {docker}",
        kernel.trim()
    )
}

/// Runs the `--speed` measurements into `table`.
pub async fn run(host: &Host, n: usize, table: &mut Table) -> anyhow::Result<()> {
    claims(host, n, table, "bench-running", false).await?;
    claims(host, n, table, "bench-paused", true).await?;

    let info = host
        .call(CreateSandboxRequest {
            pool: "none".into(),
            ..CreateSandboxRequest::default()
        })
        .await?;
    let id = info.sandbox_id.clone();
    let measured = async {
        // The spare interpreter starts with the sandbox: give it its first imports.
        tokio::time::sleep(SPARE_PAUSE * 3).await;
        for (label, code, target) in [
            ("Python `print(1)`", "print(1)", "<= 8 ms"),
            (
                "Python `import pandas`",
                "import pandas\nprint(1)",
                "<= 50 ms (spare)",
            ),
        ] {
            let (mut spare, mut cold) = (Vec::new(), Vec::new());
            for _ in 0..n {
                tokio::time::sleep(SPARE_PAUSE).await;
                spare.push(python(host, &id, code, false).await?);
                cold.push(python(host, &id, code, true).await?);
            }
            table.row(&format!("{label}, spare interpreter"), spare, target);
            table.row(&format!("{label}, cold python3"), cold, "");
        }
        let mut first = Vec::new();
        for _ in 0..n {
            first.push(first_byte(host, &id).await?);
        }
        table.row("streamed first byte (Python print + sleep)", first, "");
        anyhow::Ok(())
    }
    .await;
    host.call(DestroySandboxRequest { sandbox_id: id }).await?;
    measured?;
    throughput(host, table).await
}

/// Claims from a pool of one the bench sets up (`paused` or not), n times.
async fn claims(
    host: &Host,
    n: usize,
    table: &mut Table,
    name: &str,
    paused: bool,
) -> anyhow::Result<()> {
    let shape = PoolShape {
        paused,
        ..PoolShape::new(name, 1)
    };
    host.call(shape.to_proto()).await?;
    let mut samples = Vec::new();
    let mut missed = 0;
    let result = async {
        for _ in 0..n {
            wait_ready(host, name).await?;
            let t = Instant::now();
            let info = host
                .call(CreateSandboxRequest {
                    pool: name.into(),
                    ..CreateSandboxRequest::default()
                })
                .await?;
            let took = t.elapsed();
            // Ready means answering: one call to be sure the claim is usable.
            let out = echo(host, &info.sandbox_id).await?;
            anyhow::ensure!(out == "hi\n", "echo printed {out:?}");
            if info.pool == name {
                samples.push(took);
            } else {
                missed += 1;
            }
            host.call(DestroySandboxRequest {
                sandbox_id: info.sandbox_id,
            })
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    host.call(PoolShape::new(name, 0).to_proto()).await?;
    result?;
    let kind = if paused { "paused" } else { "running" };
    table.row(
        &format!("sandbox create from a {kind} pool (gRPC Create)"),
        samples,
        "<= 10 ms (0.05x docker run)",
    );
    if missed > 0 {
        table.note(format!(
            "{missed} claims from the {kind} pool started cold (not counted)"
        ));
    }
    Ok(())
}

/// Waits until pool `name` has a member ready.
async fn wait_ready(host: &Host, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + REFILL_WAIT;
    loop {
        let status = host.call(PoolStatusRequest {}).await?;
        let ready = status
            .pools
            .iter()
            .any(|p| p.shape.as_ref().is_some_and(|s| s.name == name) && p.ready > 0);
        if ready {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "pool {name} did not refill within {} s",
            REFILL_WAIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// One Python run to its exit; `cold` makes it skip the spare interpreter.
async fn python(host: &Host, id: &str, code: &str, cold: bool) -> anyhow::Result<Duration> {
    let mut req = ExecRequest {
        language: Language::Python.to_string(),
        code: code.into(),
        ..Default::default()
    };
    if cold {
        req.env.insert(COLD_ENV.into(), "1".into());
    }
    let t = Instant::now();
    let stream = host.in_sandbox(sandbox_id(id)?).call(req).await?;
    let out = RunOutcome::collect(stream, usize::MAX)
        .await
        .map_err(status_err)?;
    let took = t.elapsed();
    anyhow::ensure!(
        out.stdout == "1\n",
        "{code:?} printed {:?} / {:?}",
        out.stdout,
        out.stderr
    );
    Ok(took)
}

/// Time to the first output chunk of a run that prints, then works on.
async fn first_byte(host: &Host, id: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut stream = host
        .in_sandbox(sandbox_id(id)?)
        .call(ExecRequest {
            language: Language::Shell.to_string(),
            code: "echo hi; sleep 0.2".into(),
            ..Default::default()
        })
        .await?;
    let mut first = None;
    while let Some(event) = stream.next().await {
        if first.is_none() && matches!(event?.event, Some(Event::Stdout(_))) {
            first = Some(t.elapsed());
        }
    }
    first.context("no output")
}

/// `echo hi` execs per second with k sandboxes, each running execs back to back, for 3 s.
async fn throughput(host: &Host, table: &mut Table) -> anyhow::Result<()> {
    let max = host.call(PoolStatusRequest {}).await?.max_sandboxes as usize;
    for k in [1usize, 10, 50] {
        if k + 1 > max {
            table.note(format!(
                "throughput across {k} sandboxes not measured: the host allows {max}"
            ));
            continue;
        }
        let mut ids = Vec::new();
        for _ in 0..k {
            let info = host
                .call(CreateSandboxRequest {
                    pool: "none".into(),
                    ..CreateSandboxRequest::default()
                })
                .await?;
            ids.push(info.sandbox_id);
        }
        let until = Instant::now() + Duration::from_secs(3);
        let workers = ids.iter().map(|id| async move {
            let mut done = 0u64;
            while Instant::now() < until {
                echo(host, id).await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
        let started = Instant::now();
        let counts = futures::future::join_all(workers).await;
        let elapsed = started.elapsed().as_secs_f64();
        for id in ids {
            let _ = host.call(DestroySandboxRequest { sandbox_id: id }).await;
        }
        let total: u64 = counts
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?
            .iter()
            .sum();
        table.note(format!(
            "throughput: {:.0} `echo hi` execs/s across {k} sandbox(es) ({total} in {elapsed:.1} s)",
            total as f64 / elapsed
        ));
    }
    Ok(())
}
