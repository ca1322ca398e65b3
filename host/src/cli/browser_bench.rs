//! `agent-runtime bench --browser`: the browser's cold start, goto + snapshot on a local page, and
//! how small a snapshot is next to the page's own text and HTML.

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
    Ok(())
}
