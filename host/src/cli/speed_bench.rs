//! `agent-runtime bench --speed`: warm-pool claims (running and paused pools the bench sets up
//! and removes), Python through the spare interpreter against a cold start in the same sandbox,
//! the first streamed byte, browser goto + snapshot (a small page and Python's os.html, cold and
//! warm; the first goto in a sandbox from a `browser` pool), then the MCP bridge's overhead
//! ([`super::mcp_bench`]) and exec throughput across several sandboxes — and the table every
//! bench part adds to, printed and optionally written as BENCHMARKS.md. Every sandbox a part creates is destroyed when the part ends, also
//! when it fails ([`with_sandboxes`]).

use std::time::{Duration, Instant};

use agent_runtime_client::{Language, RunOutcome};
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::{
    BrowserGotoRequest, BrowserSnapshotRequest, CreateSandboxRequest, DestroySandboxRequest,
    ExecRequest, ListSandboxesRequest, PoolStatusRequest, SandboxInfo, WriteFileRequest,
};
use anyhow::Context as _;
use futures::StreamExt;

use super::bench::{ms, pct};
use super::call::{sandbox_id, status_err, Host, InSandbox};
use crate::sandboxes::PoolShape;

/// Longest the bench waits for a pool to refill between samples (a hang guard).
const REFILL_WAIT: Duration = Duration::from_secs(120);
/// Pause between two samples through the spare interpreter, so that a new one has started
/// (it imports numpy, pandas and matplotlib first); not timed.
const SPARE_PAUSE: Duration = Duration::from_millis(3000);
/// A variable that makes a Python run start cold (see sandboxd's `zygote`).
const COLD_ENV: &str = "PYTHON_BENCH_COLD";

/// One measurement: its p50 and p95 in milliseconds over `n` samples.
struct Row {
    name: String,
    p50: f64,
    p95: Option<f64>,
    n: usize,
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

    /// Adds a row of timed samples.
    pub fn row(&mut self, name: &str, mut samples: Vec<Duration>, target: &str) {
        samples.sort();
        self.rows.push(Row {
            name: name.to_owned(),
            p50: ms(pct(&samples, 0.5)),
            p95: Some(ms(pct(&samples, 0.95))),
            n: samples.len(),
            target: target.to_owned(),
        });
    }

    /// Adds a row computed from other rows (a difference of two p50s), in milliseconds.
    pub fn derived(&mut self, name: &str, p50: f64, p95: Option<f64>, n: usize, target: &str) {
        self.rows.push(Row {
            name: name.to_owned(),
            p50,
            p95,
            n,
            target: target.to_owned(),
        });
    }

    /// Adds a line under the table.
    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    fn ratio(&self, r: &Row) -> f64 {
        r.p50 / self.base
    }

    /// Prints the table.
    pub fn print(&self) {
        println!("image {}, n = {}", self.image, self.n);
        println!(
            "{:<64} {:>9} {:>9} {:>4} {:>10}  target",
            "measurement", "p50 ms", "p95 ms", "n", "p50/docker"
        );
        for r in &self.rows {
            let p95 = r.p95.map_or("-".to_owned(), |v| format!("{v:.1}"));
            println!(
                "{:<64} {:>9.1} {:>9} {:>4} {:>10.3}  {}",
                r.name,
                r.p50,
                p95,
                r.n,
                self.ratio(r),
                r.target
            );
        }
        for note in &self.notes {
            println!("- {note}");
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
            let p95 = r.p95.map_or("-".to_owned(), |v| format!("{v:.1}"));
            md.push_str(&format!(
                "| {} | {:.1} | {p95} | {} | {:.3} | {} |\n",
                r.name,
                r.p50,
                r.n,
                self.ratio(r),
                r.target
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

/// Runs the `--speed` measurements but density ([`super::density_bench`], last of all: it fills
/// the host) into `table`; `addr` is the host's gRPC address (the MCP bridge the bench starts
/// calls it).
pub async fn run(host: &Host, addr: &str, n: usize, table: &mut Table) -> anyhow::Result<()> {
    claims(host, n, table, POOLS[0], false, 1).await?;
    claims(host, n, table, POOLS[1], true, 1).await?;
    claims(host, n, table, POOLS[1], true, 3).await?;
    python_and_first_byte(host, n, table).await?;
    browser(host, n, table).await?;
    pooled_browser(host, n, table).await?;
    super::mcp_bench::run(host, addr, n, table).await?;
    throughput(host, table).await
}

/// The pools the bench sets up (running, paused, browser) and removes when done.
pub const POOLS: [&str; 3] = ["bench-running", "bench-paused", "bench-browser"];
/// The label every sandbox the bench creates carries, with this process's id as its value:
/// an interrupted bench finds them by it.
pub const LABEL: &str = "bench";

/// `req` with the bench's label.
pub fn labelled(mut req: CreateSandboxRequest) -> CreateSandboxRequest {
    req.labels
        .insert(LABEL.to_owned(), std::process::id().to_string());
    req
}

/// Removes what an interrupted bench left: its pools, and every sandbox with its label.
pub async fn remove_leftovers(host: &Host) -> anyhow::Result<usize> {
    for name in POOLS {
        host.call(PoolShape::new(name, 0).to_proto()).await?;
    }
    let ours = std::process::id().to_string();
    let list = host.call(ListSandboxesRequest {}).await?;
    let mut made = Created {
        host: host.clone(),
        ids: list
            .sandboxes
            .into_iter()
            .filter(|s| s.labels.get(LABEL) == Some(&ours))
            .map(|s| s.sandbox_id)
            .collect(),
    };
    let count = made.ids.len();
    made.destroy_all().await?;
    Ok(count)
}

/// Sandboxes one part of the bench created; [`with_sandboxes`] destroys those left when the part
/// ends, whether it succeeded or not.
pub struct Created {
    host: Host,
    ids: Vec<String>,
}

impl Created {
    /// Creates a sandbox and keeps its id for the clean-up.
    pub async fn create(&mut self, req: CreateSandboxRequest) -> anyhow::Result<SandboxInfo> {
        let info = self.host.call(labelled(req)).await?;
        self.ids.push(info.sandbox_id.clone());
        Ok(info)
    }

    /// Destroys one sandbox now.
    pub async fn destroy(&mut self, id: &str) -> anyhow::Result<()> {
        self.ids.retain(|i| i != id);
        self.host
            .call(DestroySandboxRequest {
                sandbox_id: id.to_owned(),
            })
            .await
            .with_context(|| format!("destroying {id}"))?;
        Ok(())
    }

    /// Takes a sandbox created elsewhere into the clean-up.
    pub fn keep(&mut self, id: String) {
        self.ids.push(id);
    }

    /// The sandboxes alive, in the order they were created.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Destroys every sandbox left, four at a time; the first failure is returned after all
    /// were tried.
    async fn destroy_all(&mut self) -> anyhow::Result<()> {
        let host = &self.host;
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(std::mem::take(&mut self.ids))
            .map(|id| async move {
                host.call(DestroySandboxRequest {
                    sandbox_id: id.clone(),
                })
                .await
                .with_context(|| format!("destroying {id}"))
                .map(drop)
            })
            .buffer_unordered(4)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

/// Runs `body` with a [`Created`], then destroys every sandbox it left — also when it failed.
pub async fn with_sandboxes<T>(
    host: &Host,
    body: impl AsyncFnOnce(&mut Created) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut made = Created {
        host: host.clone(),
        ids: Vec::new(),
    };
    let result = body(&mut made).await;
    let cleaned = made.destroy_all().await;
    match (result, cleaned) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(cleanup)) => {
            eprintln!("agent-runtime bench: clean-up after the failure: {cleanup:#}");
            Err(e)
        }
    }
}

/// A cold sandbox with default limits.
fn cold() -> CreateSandboxRequest {
    CreateSandboxRequest {
        pool: "none".into(),
        ..CreateSandboxRequest::default()
    }
}

/// Python through the spare interpreter against a cold start, and the first streamed byte, in
/// one sandbox.
async fn python_and_first_byte(host: &Host, n: usize, table: &mut Table) -> anyhow::Result<()> {
    with_sandboxes(host, async |made| {
        let id = made.create(cold()).await?.sandbox_id;
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
        Ok(())
    })
    .await
}

/// Claims from a pool of one the bench sets up (`paused` or not), n times.
async fn claims(
    host: &Host,
    n: usize,
    table: &mut Table,
    name: &str,
    paused: bool,
    size: usize,
) -> anyhow::Result<()> {
    let shape = PoolShape {
        paused,
        ..PoolShape::new(name, size)
    };
    host.call(shape.to_proto()).await?;
    let result = with_sandboxes(host, async |made| {
        let (mut samples, mut missed) = (Vec::new(), 0);
        for _ in 0..n {
            if size > 1 {
                // A full, settled pool: a paused one of two or more has thawed its first member.
                wait_full(host, name, size).await?;
            } else {
                wait_ready(host, name).await?;
            }
            let t = Instant::now();
            let info = made
                .create(CreateSandboxRequest {
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
            made.destroy(&info.sandbox_id).await?;
        }
        Ok((samples, missed))
    })
    .await;
    host.call(PoolShape::new(name, 0).to_proto()).await?;
    let (samples, missed) = result?;
    let kind = match (paused, size) {
        (false, _) => "running pool".to_owned(),
        (true, 1) => "paused pool of 1 (a frozen member)".to_owned(),
        (true, size) => format!("paused pool of {size} (first in line thawed ahead)"),
    };
    table.row(
        &format!("sandbox create from a {kind} (gRPC Create)"),
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

/// Waits until pool `name` has `size` members ready and none starting.
async fn wait_full(host: &Host, name: &str, size: usize) -> anyhow::Result<()> {
    wait_pool(host, name, "fill", REFILL_WAIT * 3, |p| {
        p.ready as usize == size && p.starting == 0
    })
    .await
}

/// Waits until pool `name` has a member ready.
pub async fn wait_ready(host: &Host, name: &str) -> anyhow::Result<()> {
    wait_pool(host, name, "refill", REFILL_WAIT, |p| p.ready > 0).await
}

/// Polls `PoolStatus` until pool `name` satisfies `done`; an error naming `what` did not happen
/// after `limit`.
async fn wait_pool(
    host: &Host,
    name: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&agent_runtime_proto::v1::PoolInfo) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let status = host.call(PoolStatusRequest {}).await?;
        if status
            .pools
            .iter()
            .any(|p| p.shape.as_ref().is_some_and(|s| s.name == name) && done(p))
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "pool {name} did not {what} within {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `echo hi` through the host; what it printed.
pub async fn echo(host: &Host, id: &str) -> anyhow::Result<String> {
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

/// Python's documentation from Debian's `python3.11-doc`.
const DOCS: &str = "/usr/share/doc/python3.11/html";
/// The big page, under [`DOCS`] and under `docs/` in the workspace.
const OS_PAGE: &str = "library/os.html";
/// Cold browser samples per page: each costs a new sandbox and a Chromium launch.
const BROWSER_COLD: usize = 3;
/// Warm browser samples per page, at most.
const BROWSER_WARM: usize = 5;
/// Memory of every browser sandbox: at the default 512 MiB, Chromium's renderer on os.html
/// beside the driver and the spare interpreter can be OOM-killed.
pub const BROWSER_MEMORY: &str = "1g";
/// Where the small page goes in the workspace, and its URL.
pub const SMALL_PAGE: (&str, &str) = ("bench/small.html", "file:///workspace/bench/small.html");
/// How long a pooled browser member waits before its claim in the "launched" samples: past
/// the driver and Chromium launch its daemon starts in the background.
const LAUNCH_SETTLE: Duration = Duration::from_secs(4);

/// Files to write into a sandbox: path under the workspace, content.
type Files = Vec<(String, Vec<u8>)>;

/// A page the browser rows read: files to write into the workspace, and the URL to open.
struct BenchPage {
    label: &'static str,
    files: Files,
    url: String,
    warm_target: &'static str,
}

/// A small page like the ones agents read: a heading, some paragraphs, links and a form.
pub fn small_page() -> String {
    let mut html = String::from(
        "<!doctype html><html><head><title>Small bench page</title></head><body>\
         <header><a href=\"#top\">Home</a> <a href=\"#news\">News</a></header><main><h1>Notes</h1>",
    );
    for i in 0..20 {
        html.push_str(&format!(
            "<section id=\"n{i}\"><h2>Note {i}</h2><p>Note {i} says what the sandbox did and \
             links <a href=\"#n{i}\">here</a>.</p></section>"
        ));
    }
    html.push_str(
        "<form><input name=q placeholder=\"Find a note\"><button>Find</button></form>\
         </main></body></html>",
    );
    html
}

/// os.html and the `_static` files it links, read from this machine; `None` when the page is
/// missing. Paths are under `docs/` in the workspace.
fn docs_files() -> anyhow::Result<Option<Files>> {
    let root = std::path::Path::new(DOCS);
    let page = match std::fs::read(root.join(OS_PAGE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {DOCS}/{OS_PAGE}")),
    };
    let mut files = vec![(format!("docs/{OS_PAGE}"), page)];
    let statics = root.join("_static");
    for entry in std::fs::read_dir(&statics).with_context(|| format!("{}", statics.display()))? {
        let path = entry?.path();
        // jquery.js and underscore.js are symlinks into other packages, present or not.
        match std::fs::read(&path) {
            Ok(bytes) => {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if let Some(name) = name {
                    files.push((format!("docs/_static/{name}"), bytes));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(Some(files))
}

/// Writes a page's files into a sandbox.
async fn put_files(s: &InSandbox, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    for (path, content) in files {
        s.call(WriteFileRequest {
            path: path.clone(),
            content: content.clone(),
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// Opens `url` and takes the default snapshot (screenshot included): the time of each.
async fn goto_snapshot(s: &InSandbox, url: &str) -> anyhow::Result<(Duration, Duration)> {
    let t = Instant::now();
    let page = s
        .call(BrowserGotoRequest {
            url: url.to_owned(),
            ..Default::default()
        })
        .await?;
    let goto = t.elapsed();
    anyhow::ensure!(page.url == url, "goto {url} landed on {:?}", page.url);
    let t = Instant::now();
    let snap = s.call(BrowserSnapshotRequest::default()).await?;
    let snapshot = t.elapsed();
    anyhow::ensure!(
        !snap.text.is_empty() && !snap.elements.is_empty(),
        "the snapshot of {url} is empty"
    );
    Ok((goto, snapshot))
}

/// goto + snapshot of the small page and of os.html: cold (the first goto in a new sandbox
/// launches the driver and Chromium) and warm (the same sandbox, browser running).
async fn browser(host: &Host, n: usize, table: &mut Table) -> anyhow::Result<()> {
    let mut pages = vec![BenchPage {
        label: "small page",
        files: vec![(SMALL_PAGE.0.to_owned(), small_page().into_bytes())],
        url: SMALL_PAGE.1.to_owned(),
        warm_target: "",
    }];
    match docs_files()? {
        Some(files) => pages.push(BenchPage {
            label: "os.html (755 KB)",
            files,
            url: format!("file:///workspace/docs/{OS_PAGE}"),
            warm_target: "<= 800 ms",
        }),
        None => table.note(format!(
            "goto + snapshot of os.html not measured: {DOCS}/{OS_PAGE} is missing (install \
             Debian's python3.11-doc)"
        )),
    }
    for page in &pages {
        browser_page(host, n, page, table).await?;
    }
    Ok(())
}

/// The cold and warm rows of one page.
async fn browser_page(
    host: &Host,
    n: usize,
    page: &BenchPage,
    table: &mut Table,
) -> anyhow::Result<()> {
    let cold_n = BROWSER_COLD.min(n);
    let warm_n = BROWSER_WARM.min(n).max(cold_n);
    let (first, warm, gotos, snaps) = with_sandboxes(host, async |made| {
        let (mut first, mut warm, mut gotos, mut snaps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..cold_n {
            let id = made
                .create(CreateSandboxRequest {
                    memory: BROWSER_MEMORY.into(),
                    ..cold()
                })
                .await?
                .sandbox_id;
            let s = host.in_sandbox(sandbox_id(&id)?);
            put_files(&s, &page.files).await?;
            let (g, sn) = goto_snapshot(&s, &page.url).await?;
            first.push(g + sn);
            // The first sandbox gives the warm samples the others do not.
            let warm_here = if round == 0 { warm_n + 1 - cold_n } else { 1 };
            for _ in 0..warm_here {
                let (g, sn) = goto_snapshot(&s, &page.url).await?;
                warm.push(g + sn);
                gotos.push(g);
                snaps.push(sn);
            }
            made.destroy(&id).await?;
        }
        Ok((first, warm, gotos, snaps))
    })
    .await?;
    let label = page.label;
    table.row(
        &format!("browser goto + snapshot, {label}, cold (new sandbox)"),
        first,
        "",
    );
    table.row(
        &format!("browser goto + snapshot, {label}, warm"),
        warm,
        page.warm_target,
    );
    if !page.warm_target.is_empty() {
        table.row(&format!("  of which goto, {label}, warm"), gotos, "");
        table.row(&format!("  of which snapshot, {label}, warm"), snaps, "");
    }
    Ok(())
}

/// The first `browser_goto` in a sandbox claimed from a pool with the `browser` flag: claimed
/// as soon as the pool reports a member ready, and after the member has waited
/// [`LAUNCH_SETTLE`].
async fn pooled_browser(host: &Host, n: usize, table: &mut Table) -> anyhow::Result<()> {
    let name = POOLS[2];
    let shape = PoolShape {
        browser: true,
        memory: BROWSER_MEMORY.into(),
        ..PoolShape::new(name, 1)
    };
    host.call(shape.to_proto()).await?;
    let k = BROWSER_WARM.min(n);
    let page = small_page().into_bytes();
    let result = with_sandboxes(host, async |made| {
        let (mut at_ready, mut settled, mut missed) = (Vec::new(), Vec::new(), 0);
        for settle in [false, true] {
            for _ in 0..k {
                wait_ready(host, name).await?;
                if settle {
                    tokio::time::sleep(LAUNCH_SETTLE).await;
                }
                let info = made
                    .create(CreateSandboxRequest {
                        pool: name.into(),
                        memory: BROWSER_MEMORY.into(),
                        ..CreateSandboxRequest::default()
                    })
                    .await?;
                let s = host.in_sandbox(sandbox_id(&info.sandbox_id)?);
                put_files(&s, &[(SMALL_PAGE.0.to_owned(), page.clone())]).await?;
                let t = Instant::now();
                s.call(BrowserGotoRequest {
                    url: SMALL_PAGE.1.into(),
                    ..Default::default()
                })
                .await?;
                let took = t.elapsed();
                match (info.pool == name, settle) {
                    (false, _) => missed += 1,
                    (true, false) => at_ready.push(took),
                    (true, true) => settled.push(took),
                }
                made.destroy(&info.sandbox_id).await?;
            }
        }
        Ok((at_ready, settled, missed))
    })
    .await;
    host.call(PoolShape::new(name, 0).to_proto()).await?;
    let (at_ready, settled, missed) = result?;
    table.row(
        "first browser_goto, browser pool, claimed when reported ready",
        at_ready,
        "<= 400 ms",
    );
    table.row(
        &format!(
            "first browser_goto, browser pool, member waited {} s",
            LAUNCH_SETTLE.as_secs()
        ),
        settled,
        "<= 400 ms",
    );
    if missed > 0 {
        table.note(format!(
            "{missed} claims from the browser pool started cold (not counted)"
        ));
    }
    Ok(())
}

/// `echo hi` execs per second with k sandboxes, each running execs back to back, for 3 s.
async fn throughput(host: &Host, table: &mut Table) -> anyhow::Result<()> {
    let max = host.call(PoolStatusRequest {}).await?.max_sandboxes as usize;
    for k in [1usize, 10, 50] {
        if k + 1 > max {
            table.note(format!(
                "throughput across {k} sandboxes not measured: the host allows {max} at once \
                 (start it with `agent-runtime serve --max-sandboxes {}`; {k} x 512 MiB must \
                 also fit its `--memory-budget`, by default physical memory minus 2 GiB)",
                k + 2
            ));
            continue;
        }
        let (total, elapsed) = with_sandboxes(host, async |made| {
            let mut ids = Vec::new();
            for _ in 0..k {
                ids.push(made.create(cold()).await?.sandbox_id);
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
            let total: u64 = counts
                .into_iter()
                .collect::<anyhow::Result<Vec<_>>>()?
                .iter()
                .sum();
            Ok((total, elapsed))
        })
        .await?;
        table.note(format!(
            "throughput: {:.0} `echo hi` execs/s across {k} sandbox(es) ({total} in {elapsed:.1} s)",
            total as f64 / elapsed
        ));
    }
    Ok(())
}
