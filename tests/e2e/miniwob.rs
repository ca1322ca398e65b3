//! The scripted MiniWoB++ regression set (issue 5): real MiniWoB++ task pages (PyPI `miniwob`,
//! MIT) opened from the sandbox's /workspace in the sandbox's Chromium, each solved over several
//! seeds by a deterministic script that sees the page only through BrowserSnapshot and acts only
//! through BrowserClick / BrowserType / BrowserPress / BrowserSelectOption. The harness alone
//! uses BrowserEvaluate: to seed and start an episode, as MiniWoB's own Python driver does, and to
//! read the reward the page computed.

mod agent;
mod page;
mod solvers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_runtime_e2e::{with_id, Host};
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{BrowserEvaluateRequest, BrowserGotoRequest, WriteFileRequest};
use anyhow::{anyhow, bail, Context as _};
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;
use tonic::transport::Channel;

use agent::Agent;

/// The `miniwob` release .ci/setup fetches.
const MINIWOB_VERSION: &str = "1.1.0";
/// Seeds every task runs with (MiniWoB's driver calls `Math.seedrandom(seed)`);
/// `MINIWOB_SEEDS=1-20` runs others.
const SEEDS: [u32; 5] = [1, 2, 3, 4, 5];
/// Where the pages go in the sandbox.
const SANDBOX_DIR: &str = "miniwob";
/// Episode time limit. MiniWoB's default is 10 s (20 s for a few tasks); a loaded 2-core machine
/// should not fail a correct solver, and the summary shows the time each episode really took.
const EPISODE_MS: u32 = 30_000;

/// The unpacked `miniwob` wheel: `$MINIWOB_DIR`, or where .ci/setup puts it.
fn miniwob_html() -> PathBuf {
    let root = std::env::var_os("MINIWOB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "/var/cache/agent-runtime/miniwob-{MINIWOB_VERSION}"
            ))
        });
    let html = root.join("miniwob").join("html");
    assert!(
        html.join("core").join("core.js").is_file(),
        "MiniWoB++ pages not found under {}: run `bash .ci/setup` (it fetches miniwob=={MINIWOB_VERSION} \
         from PyPI and unpacks it there), or point MINIWOB_DIR at an unpacked miniwob wheel",
        root.display()
    );
    html
}

/// The files a task page needs: the shared core/ and common/ folders, and the task pages.
fn files_to_copy(html: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for dir in ["core", "common"] {
        walk(&html.join(dir), dir, &mut files)?;
    }
    for task in solvers::TASKS {
        let rel = format!("miniwob/{task}.html");
        files.push((html.join(&rel), rel));
    }
    Ok(files)
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(PathBuf, String)>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{rel}/{name}");
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else {
            out.push((entry.path(), rel));
        }
    }
    Ok(())
}

/// Copies the pages into the sandbox's /workspace/miniwob with WriteFile.
async fn copy_pages(
    client: &SandboxClient<Channel>,
    sandbox: &str,
    html: &Path,
) -> anyhow::Result<(usize, u64)> {
    let files = files_to_copy(html)?;
    let count = files.len();
    let sizes: Vec<u64> = futures::stream::iter(files)
        .map(|(local, rel)| {
            let mut client = client.clone();
            async move {
                let content = std::fs::read(&local)
                    .with_context(|| format!("reading {}", local.display()))?;
                let size = content.len() as u64;
                client
                    .write_file(with_id(
                        sandbox,
                        WriteFileRequest {
                            path: format!("{SANDBOX_DIR}/{rel}"),
                            content,
                            mode: 0,
                            append: false,
                        },
                    ))
                    .await
                    .map_err(|s| anyhow!("WriteFile {rel}: {s:?}"))?;
                anyhow::Ok(size)
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    Ok((count, sizes.iter().sum()))
}

/// The harness's own calls: open a task, start a seeded episode, read its reward.
struct Harness {
    client: SandboxClient<Channel>,
    sandbox: String,
}

/// What the page says about the episode that just ended.
#[derive(Debug, Clone, Default)]
struct Outcome {
    /// `WOB_RAW_REWARD_GLOBAL`: 1 for success, −1 for failure (partial for some tasks).
    raw: f64,
    /// `WOB_REWARD_GLOBAL`: the raw reward discounted by the time taken.
    discounted: f64,
    reason: Option<String>,
}

impl Harness {
    async fn evaluate(&mut self, expression: &str) -> anyhow::Result<Value> {
        let r = self
            .client
            .browser_evaluate(with_id(
                &self.sandbox,
                BrowserEvaluateRequest {
                    expression: expression.to_owned(),
                    target: None,
                },
            ))
            .await
            .map_err(|s| anyhow!("BrowserEvaluate {expression:?}: {s:?}"))?
            .into_inner();
        serde_json::from_str(&r.result_json).with_context(|| format!("result of {expression:?}"))
    }

    async fn open(&mut self, task: &str) -> anyhow::Result<()> {
        self.client
            .browser_goto(with_id(
                &self.sandbox,
                BrowserGotoRequest {
                    url: format!("file:///workspace/{SANDBOX_DIR}/miniwob/{task}.html"),
                    timeout_seconds: 0.0,
                },
            ))
            .await
            .map_err(|s| anyhow!("BrowserGoto {task}: {s:?}"))?;
        Ok(())
    }

    /// Seeds the page's random numbers and starts an episode, as MiniWoB's driver does.
    async fn start(&mut self, seed: u32) -> anyhow::Result<()> {
        let ready = self
            .evaluate(&format!(
                "() => {{ Math.seedrandom({seed}); \
                 core.EPISODE_MAX_TIME = Math.max(core.EPISODE_MAX_TIME, {EPISODE_MS}); \
                 core.startEpisodeReal(); return WOB_TASK_READY; }}"
            ))
            .await?;
        if ready != Value::Bool(true) {
            bail!("the task did not get ready: WOB_TASK_READY = {ready}");
        }
        Ok(())
    }

    /// Waits (briefly) for the episode to end and reads its reward.
    async fn outcome(&mut self) -> anyhow::Result<Option<Outcome>> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let v = self
                .evaluate(
                    "() => ({ done: WOB_DONE_GLOBAL, raw: WOB_RAW_REWARD_GLOBAL, \
                     reward: WOB_REWARD_GLOBAL, reason: WOB_REWARD_REASON })",
                )
                .await?;
            if v["done"] == Value::Bool(true) {
                return Ok(Some(Outcome {
                    raw: v["raw"].as_f64().unwrap_or(f64::NAN),
                    discounted: v["reward"].as_f64().unwrap_or(f64::NAN),
                    reason: v["reason"].as_str().map(str::to_owned),
                }));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends an episode the solver left open, so the next one starts clean.
    async fn abandon(&mut self) {
        let _ = self.evaluate("() => core.endEpisode(0)").await;
    }
}

/// `MINIWOB_SEEDS`: `1-20` or `4,7,9`, for hunting a flaky solver.
fn seeds_from_env() -> Option<Vec<u32>> {
    let spec = std::env::var("MINIWOB_SEEDS").ok()?;
    let seeds = match spec.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?..=b.trim().parse().ok()?).collect(),
        None => spec
            .split(',')
            .map(|s| s.trim().parse().ok())
            .collect::<Option<Vec<u32>>>()?,
    };
    (!seeds.is_empty()).then_some(seeds)
}

/// One episode's record.
struct Episode {
    seed: u32,
    outcome: Result<Outcome, String>,
    elapsed: Duration,
    calls: usize,
}

impl Episode {
    fn passed(&self) -> bool {
        matches!(&self.outcome, Ok(o) if o.raw >= 1.0)
    }
}

#[tokio::test]
async fn solves_miniwob_tasks_through_snapshots_over_several_seeds() {
    let html = miniwob_html();
    let wall = Instant::now();
    let host = Host::start(&[]);
    let sandbox = host.create().await;
    let client = host.sandbox().await;

    let copied = Instant::now();
    let (files, bytes) = copy_pages(&client, &sandbox, &html)
        .await
        .expect("copying the MiniWoB pages into the sandbox");
    println!(
        "copied {files} MiniWoB files ({} KiB) into /workspace/{SANDBOX_DIR} in {} ms",
        bytes / 1024,
        copied.elapsed().as_millis()
    );

    let only = std::env::var("MINIWOB_TASKS").ok();
    let tasks: Vec<&str> = solvers::TASKS
        .iter()
        .copied()
        .filter(|t| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x == *t))
        })
        .collect();
    let seeds = seeds_from_env().unwrap_or_else(|| SEEDS.to_vec());
    let mut harness = Harness {
        client: client.clone(),
        sandbox: sandbox.clone(),
    };
    let mut agent = Agent::new(client.clone(), &sandbox);
    let mut results: Vec<(&str, Vec<Episode>)> = Vec::new();
    for task in tasks {
        harness
            .open(task)
            .await
            .unwrap_or_else(|e| panic!("opening {task}: {e:#}"));
        let mut episodes = Vec::new();
        for &seed in &seeds {
            harness
                .start(seed)
                .await
                .unwrap_or_else(|e| panic!("starting {task} seed {seed}: {e:#}"));
            let started = Instant::now();
            let calls_before = agent.calls;
            let solved = solvers::solve(task, &mut agent).await;
            let elapsed = started.elapsed();
            let calls = agent.calls - calls_before;
            let outcome = match solved {
                Err(e) => {
                    harness.abandon().await;
                    Err(format!("{e:#}"))
                }
                Ok(()) => match harness.outcome().await {
                    Ok(Some(o)) => Ok(o),
                    Ok(None) => {
                        harness.abandon().await;
                        Err("the solver finished but the episode did not end".into())
                    }
                    Err(e) => Err(format!("reading the reward: {e:#}")),
                },
            };
            episodes.push(Episode {
                seed,
                outcome,
                elapsed,
                calls,
            });
        }
        results.push((task, episodes));
    }

    // The summary: one line per task, then every failure in full.
    println!(
        "\n{:<24} {:>6}  {:<20} {:<20} {:>9} {:>6}",
        "task", "passed", "raw rewards", "discounted", "ms/ep", "calls"
    );
    let mut failures = Vec::new();
    let (mut passed, mut total) = (0, 0);
    for (task, episodes) in &results {
        let ok = episodes.iter().filter(|e| e.passed()).count();
        passed += ok;
        total += episodes.len();
        let fmt = |f: &dyn Fn(&Outcome) -> f64| {
            episodes
                .iter()
                .map(|e| match &e.outcome {
                    Ok(o) => format!("{:.2}", f(o)),
                    Err(_) => "err".into(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let ms = episodes.iter().map(|e| e.elapsed.as_millis()).sum::<u128>()
            / episodes.len().max(1) as u128;
        let calls = episodes.iter().map(|e| e.calls).sum::<usize>() / episodes.len().max(1);
        println!(
            "{task:<24} {ok:>2}/{:<3}  {:<20} {:<20} {ms:>9} {calls:>6}",
            episodes.len(),
            fmt(&|o| o.raw),
            fmt(&|o| o.discounted),
        );
        for e in episodes.iter().filter(|e| !e.passed()) {
            let why = match &e.outcome {
                Ok(o) => format!("raw reward {} ({:?})", o.raw, o.reason),
                Err(msg) => msg.clone(),
            };
            failures.push(format!("{task} seed {}: {why}", e.seed));
        }
    }
    println!(
        "\nMiniWoB++: {passed}/{total} episodes of {} tasks solved (seeds {seeds:?}) in {:.1} s",
        results.len(),
        wall.elapsed().as_secs_f64()
    );
    host.destroy(&sandbox).await;
    assert!(
        failures.is_empty(),
        "{} of {total} episodes failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        results.len() >= 15 || only.is_some(),
        "the regression set needs at least 15 tasks"
    );
}
