//! `agent-runtime bench --browser`: the browser's cold start, goto + snapshot on a local page, and
//! how small a snapshot is next to the page's own text and HTML.

use std::time::Instant;

use super::token::HostChannel;
use agent_runtime_proto::v1 as pb;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::sandboxes_client::SandboxesClient;

use super::bench::{ms, pct};
use super::context::with_sandbox;

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
pub async fn run(channel: &HostChannel, n: usize) -> anyhow::Result<()> {
    let mut sandboxes = SandboxesClient::new(channel.clone());
    let mut client = SandboxClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let html = page();
    let cold_samples = n.clamp(1, 5);
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut sizes = None;
    for round in 0..cold_samples {
        let id = sandboxes
            .create(pb::CreateSandboxRequest::default())
            .await?
            .into_inner()
            .sandbox_id;
        let result = async {
            client
                .write_file(with_sandbox(
                    &id,
                    pb::WriteFileRequest {
                        path: "bench.html".into(),
                        content: html.clone().into_bytes(),
                        ..Default::default()
                    },
                )?)
                .await?;
            let goto = |url: &str| {
                with_sandbox(
                    &id,
                    pb::BrowserGotoRequest {
                        url: url.into(),
                        ..Default::default()
                    },
                )
            };
            let t = Instant::now();
            client.browser_goto(goto("about:blank")?).await?;
            cold.push(t.elapsed());
            let samples = if round == 0 { n } else { 0 };
            for _ in 0..samples {
                let t = Instant::now();
                client
                    .browser_goto(goto("file:///workspace/bench.html")?)
                    .await?;
                let snap = client
                    .browser_snapshot(with_sandbox(&id, pb::BrowserSnapshotRequest {})?)
                    .await?
                    .into_inner();
                warm.push(t.elapsed());
                if sizes.is_none() {
                    let measure = |expr: &str| {
                        with_sandbox(
                            &id,
                            pb::BrowserEvaluateRequest {
                                expression: expr.into(),
                                target: None,
                            },
                        )
                    };
                    let text: usize = client
                        .browser_evaluate(measure("document.body.innerText.length")?)
                        .await?
                        .into_inner()
                        .result_json
                        .parse()?;
                    let dom: usize = client
                        .browser_evaluate(measure("document.documentElement.outerHTML.length")?)
                        .await?
                        .into_inner()
                        .result_json
                        .parse()?;
                    let outline = client
                        .browser_aria_snapshot(with_sandbox(
                            &id,
                            pb::BrowserAriaSnapshotRequest { max_chars: 0 },
                        )?)
                        .await?
                        .into_inner();
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
        sandboxes
            .destroy(pb::DestroySandboxRequest {
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
    Ok(())
}
