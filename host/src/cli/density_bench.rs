//! `agent-runtime bench --speed`, density part: memory per idle sandbox, per sandbox with a
//! Python kernel and per sandbox with a browser, each after it has settled; then as many idle
//! sandboxes as the host admits at once, their memory together, and from the machine's
//! available memory an estimate of how many it could hold.
//!
//! Memory is read where Docker keeps it, on this machine: the container's memory cgroup (usage
//! less inactive file cache, the figure `docker stats` shows) and the RSS of each process in
//! it from `/proc` (sandboxd, the spare interpreter, a kernel, Chromium and its driver). The
//! bench must run on the host's machine for this part, as it must for the `docker run` baseline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_runtime_client::RunOutcome;
use agent_runtime_proto::v1::{
    BrowserGotoRequest, CreateContextRequest, CreateSandboxRequest, PoolStatusRequest,
    RunCodeRequest, WriteFileRequest,
};
use anyhow::Context as _;
use futures::StreamExt;

use super::call::{sandbox_id, status_err, Host};
use super::speed_bench::{
    labelled, small_page, with_sandboxes, Created, Table, BROWSER_MEMORY, SMALL_PAGE,
};

/// Longest wait for sandboxes' memory to stop growing (spare interpreters import pandas).
const SETTLE_MAX: Duration = Duration::from_secs(90);
/// Time between two readings while waiting for memory to settle.
const SETTLE_POLL: Duration = Duration::from_secs(2);
/// Memory counts as settled when two readings differ by less than this share.
const SETTLE_SHARE: f64 = 0.01;
/// Creates in flight at once while filling the host.
const PARALLEL_CREATES: usize = 4;
/// Memory the host's pools leave free (`sandboxes::pool::LOW_MEMORY`), kept out of the estimate.
const KEEP_FREE: u64 = crate::sandboxes::LOW_MEMORY;
const MIB: f64 = 1024.0 * 1024.0;

/// Runs the density measurements into `table`'s notes.
pub async fn run(host: &Host, table: &mut Table) -> anyhow::Result<()> {
    with_sandboxes(host, async |made| {
        let kernel = made.create(cold("")).await?.sandbox_id;
        let browser = made.create(cold(BROWSER_MEMORY)).await?.sandbox_id;
        start_kernel(host, &kernel).await?;
        open_page(host, &browser).await?;
        let sandboxes = [
            Sandbox::locate(&kernel).await?,
            Sandbox::locate(&browser).await?,
        ];
        settle(&sandboxes).await?;
        let [k, b] = [sandboxes[0].footprint()?, sandboxes[1].footprint()?];
        table.note(format!(
            "memory, sandbox with a Python kernel (a context after `1+1`): {} in its memory \
             cgroup; kernel RSS {}, sandboxd {}, spare interpreter {}",
            mib(k.cgroup),
            mib(k.kernel),
            mib(k.sandboxd),
            mib(k.spare)
        ));
        table.note(format!(
            "memory, sandbox with a browser ({BROWSER_MEMORY} limit, after a goto of the small \
             page): {} in its memory cgroup; Chromium and its driver {} RSS summed over their \
             processes (shared pages counted in each), sandboxd {}, spare interpreter {}",
            mib(b.cgroup),
            mib(b.browser),
            mib(b.sandboxd),
            mib(b.spare)
        ));
        Ok(())
    })
    .await?;
    idle_at_cap(host, table).await
}

/// A cold sandbox, with the default memory when `memory` is empty.
fn cold(memory: &str) -> CreateSandboxRequest {
    CreateSandboxRequest {
        pool: "none".into(),
        memory: memory.into(),
        ..CreateSandboxRequest::default()
    }
}

/// Creates a context in `id` and runs `1+1` in it.
async fn start_kernel(host: &Host, id: &str) -> anyhow::Result<()> {
    let s = host.in_sandbox(sandbox_id(id)?);
    let ctx = s
        .call(CreateContextRequest {
            language: "python".into(),
            name: "bench".into(),
            ..Default::default()
        })
        .await?;
    let stream = s
        .call(RunCodeRequest {
            context_id: ctx.context_id,
            code: "1+1".into(),
            timeout_seconds: 60.0,
        })
        .await?;
    let out = RunOutcome::collect(stream, usize::MAX)
        .await
        .map_err(status_err)?;
    let two = out
        .results
        .iter()
        .any(|r| r.data.get("text/plain").is_some_and(|t| t == "2"));
    anyhow::ensure!(two && out.error.is_none(), "`1+1` in a context: {out:?}");
    Ok(())
}

/// Opens the small page in `id`'s browser.
async fn open_page(host: &Host, id: &str) -> anyhow::Result<()> {
    let s = host.in_sandbox(sandbox_id(id)?);
    s.call(WriteFileRequest {
        path: SMALL_PAGE.0.into(),
        content: small_page().into_bytes(),
        ..Default::default()
    })
    .await?;
    s.call(BrowserGotoRequest {
        url: SMALL_PAGE.1.into(),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// As many idle sandboxes as the host admits at once, settled: per sandbox, together, and
/// the estimate from the machine's available memory.
async fn idle_at_cap(host: &Host, table: &mut Table) -> anyhow::Result<()> {
    let status = host.call(PoolStatusRequest {}).await?;
    let cap = status.max_sandboxes as usize;
    // Idle pool members give way to these creates; sandboxes in use do not.
    let room = cap.saturating_sub(status.running as usize);
    let before = available_memory()?;
    with_sandboxes(host, async |made| {
        let refused = fill(host, made, room).await?;
        let mut sandboxes = Vec::new();
        for id in made.ids() {
            sandboxes.push(Sandbox::locate(id).await?);
        }
        anyhow::ensure!(
            !sandboxes.is_empty(),
            "no idle sandbox started: {refused:?}"
        );
        let count = sandboxes.len();
        settle(&sandboxes).await?;
        let after = available_memory()?;
        let prints = sandboxes
            .iter()
            .map(Sandbox::footprint)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let median = |f: fn(&Footprint) -> u64| {
            let mut v: Vec<u64> = prints.iter().map(f).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let total: u64 = prints.iter().map(|p| p.cgroup).sum();
        table.note(format!(
            "memory, idle sandbox (median of {count}, settled): {} in its memory cgroup (usage \
             less inactive file cache, as `docker stats` shows it); sandboxd RSS {} ({} of it \
             anonymous; the rest is its binary's pages, shared between sandboxes), spare Python \
             interpreter (numpy, pandas, matplotlib imported) {}; target: sandboxd RSS <= 15 MiB",
            mib(median(|p| p.cgroup)),
            mib(median(|p| p.sandboxd)),
            mib(median(|p| p.sandboxd_anon)),
            mib(median(|p| p.spare)),
        ));
        let fell = before.saturating_sub(after);
        let limit = match &refused {
            Some(why) => format!("the host refused the next one: {why}"),
            None => format!(
                "the host's cap, `agent-runtime serve --max-sandboxes`, is {cap}{}",
                if room < cap {
                    format!(", {} of it in use by others", cap - room)
                } else {
                    String::new()
                }
            ),
        };
        table.note(format!(
            "density: {count} idle sandboxes at once ({limit}): {} in their memory cgroups \
             together ({} each); the machine's MemAvailable fell by {} ({} each, Docker's \
             per-container processes and kernel memory included; other work on the machine \
             moves this figure)",
            mib(total),
            mib(total / count as u64),
            mib(fell),
            mib(fell / count as u64),
        ));
        let each = (total / count as u64).max(fell / count as u64).max(1);
        let estimate = before.saturating_sub(KEEP_FREE) / each;
        let physical = total_memory()?;
        let budget = physical.saturating_sub(2 << 30);
        table.note(format!(
            "density estimate (extrapolated, not measured): MemAvailable was {} before they \
             started; at {} per idle sandbox, leaving {} free, this machine holds about \
             {estimate} idle sandboxes (target >= 100). The host admits fewer: at most \
             `--max-sandboxes` ({cap}), and it counts each sandbox's memory limit (512 MiB by \
             default) against `--memory-budget` (default: physical memory less 2 GiB, {} here, \
             room for {}): raise both to hold more",
            mib(before),
            mib(each),
            mib(KEEP_FREE),
            mib(budget),
            budget / (512 << 20),
        ));
        Ok(())
    })
    .await
}

/// Creates up to `room` idle sandboxes, a few at a time; the host's refusal
/// (RESOURCE_EXHAUSTED), if it came first, as its message.
async fn fill(host: &Host, made: &mut Created, room: usize) -> anyhow::Result<Option<String>> {
    let mut creates = futures::stream::iter(0..room)
        .map(|_| host.try_call(labelled(cold(""))))
        .buffer_unordered(PARALLEL_CREATES);
    let (mut refused, mut failed) = (None, None);
    // Every create in flight is waited for, so each one that succeeded is destroyed later.
    while let Some(done) = creates.next().await {
        match done {
            Ok(info) => made.keep(info.sandbox_id),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                refused.get_or_insert_with(|| s.message().to_owned());
            }
            Err(s) => {
                failed.get_or_insert(status_err(s));
            }
        }
    }
    match failed {
        Some(e) => Err(e.context("creating idle sandboxes")),
        None => Ok(refused),
    }
}

/// Waits until the sandboxes' memory, summed, stops growing.
async fn settle(sandboxes: &[Sandbox]) -> anyhow::Result<()> {
    let sum = || -> anyhow::Result<u64> {
        sandboxes
            .iter()
            .map(|s| s.cgroup.usage())
            .sum::<anyhow::Result<u64>>()
    };
    let deadline = Instant::now() + SETTLE_MAX;
    let mut last = sum()?;
    loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let now = sum()?;
        if (now as f64 - last as f64).abs() < last as f64 * SETTLE_SHARE {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "memory of {} sandboxes still changing after {} s ({} -> {})",
            sandboxes.len(),
            SETTLE_MAX.as_secs(),
            mib(last),
            mib(now)
        );
        last = now;
    }
}

/// One sandbox's container as this machine sees it.
struct Sandbox {
    cgroup: Cgroup,
}

/// What one sandbox holds in memory, in bytes.
struct Footprint {
    /// The memory cgroup's usage less inactive file cache.
    cgroup: u64,
    sandboxd: u64,
    sandboxd_anon: u64,
    /// Spare interpreters waiting for a Python run.
    spare: u64,
    /// Jupyter kernels.
    kernel: u64,
    /// Chromium's processes and the driver, summed.
    browser: u64,
}

impl Sandbox {
    /// Finds sandbox `id`'s container (named after it) and its memory cgroup.
    async fn locate(id: &str) -> anyhow::Result<Self> {
        let out = tokio::process::Command::new("docker")
            .args(["inspect", "--format", "{{.State.Pid}}", id])
            .output()
            .await
            .context("running the docker CLI")?;
        anyhow::ensure!(
            out.status.success(),
            "docker inspect {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| format!("docker inspect {id}: no process id"))?;
        anyhow::ensure!(pid != 0, "sandbox {id}'s container is not running");
        Ok(Self {
            cgroup: Cgroup::of(pid)?,
        })
    }

    fn footprint(&self) -> anyhow::Result<Footprint> {
        let mut f = Footprint {
            cgroup: self.cgroup.usage()?,
            sandboxd: 0,
            sandboxd_anon: 0,
            spare: 0,
            kernel: 0,
            browser: 0,
        };
        for pid in self.cgroup.pids()? {
            // A process that ended between the listing and the reading counts for nothing.
            let Some(p) = Process::read(pid) else {
                continue;
            };
            match p.kind() {
                Kind::Sandboxd => {
                    f.sandboxd += p.rss;
                    f.sandboxd_anon += p.anon;
                }
                Kind::Spare => f.spare += p.rss,
                Kind::Kernel => f.kernel += p.rss,
                Kind::Browser => f.browser += p.rss,
                Kind::Other => {}
            }
        }
        Ok(f)
    }
}

/// A container's memory cgroup (v1 or v2).
struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

impl Cgroup {
    /// The memory cgroup of process `pid`.
    fn of(pid: u32) -> anyhow::Result<Self> {
        let file = format!("/proc/{pid}/cgroup");
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
        let mut unified = None;
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.split(',').any(|c| c == "memory") {
                return Ok(Self {
                    dir: Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')),
                    v2: false,
                });
            }
            if id == "0" && controllers.is_empty() {
                unified = Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
            }
        }
        let dir = unified.with_context(|| format!("no memory cgroup in {file}"))?;
        Ok(Self { dir, v2: true })
    }

    /// Usage less inactive file cache, as `docker stats` reports it.
    fn usage(&self) -> anyhow::Result<u64> {
        let (usage_file, inactive_key) = if self.v2 {
            ("memory.current", "inactive_file")
        } else {
            ("memory.usage_in_bytes", "total_inactive_file")
        };
        let usage: u64 =
            self.read(usage_file)?.trim().parse().with_context(|| {
                format!("{}: not a number", self.dir.join(usage_file).display())
            })?;
        let stat = self.read("memory.stat")?;
        let inactive = stat
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == inactive_key)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok(usage.saturating_sub(inactive))
    }

    /// The processes in it.
    fn pids(&self) -> anyhow::Result<Vec<u32>> {
        Ok(self
            .read("cgroup.procs")?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    fn read(&self, name: &str) -> anyhow::Result<String> {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }
}

/// What a process in a sandbox is, by its command line.
#[derive(Debug, PartialEq)]
enum Kind {
    Sandboxd,
    Spare,
    Kernel,
    Browser,
    Other,
}

/// One process: its command line and memory, in bytes.
struct Process {
    argv: Vec<String>,
    rss: u64,
    anon: u64,
}

impl Process {
    fn read(pid: u32) -> Option<Self> {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        Some(Self {
            argv: cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
            rss: field("VmRSS:"),
            anon: field("RssAnon:"),
        })
    }

    fn kind(&self) -> Kind {
        let program = self
            .argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_default();
        let has = |s: &str| self.argv.iter().any(|a| a.contains(s));
        if program == "sandboxd" {
            Kind::Sandboxd
        } else if has("agent-runtime-zygote") {
            Kind::Spare
        } else if has("ipykernel") {
            Kind::Kernel
        } else if program.contains("chrom") || program.contains("node") || has("playwright") {
            Kind::Browser
        } else {
            Kind::Other
        }
    }
}

/// `MemAvailable` of this machine, in bytes.
fn available_memory() -> anyhow::Result<u64> {
    meminfo("MemAvailable:")
}

/// `MemTotal` of this machine, in bytes.
fn total_memory() -> anyhow::Result<u64> {
    meminfo("MemTotal:")
}

fn meminfo(key: &str) -> anyhow::Result<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|k| k.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .with_context(|| format!("no {key} in /proc/meminfo"))
}

/// Bytes as MiB for the notes.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}
