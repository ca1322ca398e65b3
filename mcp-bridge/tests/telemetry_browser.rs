//! Issue 13 in the middle tier with a real Chromium: one MCP `browser_click` through a real
//! `mcp-bridge` process, an in-process host and a real `sandboxd` driving Playwright is ONE trace
//! — bridge span → host span → sandboxd span → `playwright.click` — received by a real
//! OTLP/HTTP (protobuf) receiver on loopback, sandboxd's spans relayed by the host as under
//! Docker and forwarded over http/protobuf (tests/telemetry.rs covers gRPC). Needs Debian's
//! Chromium and the Playwright driver `agent-runtime image build` stages; fails saying so.
//!
//! Its own test binary: the process's tracing subscriber (the host's) is global.

mod otlp;

use std::sync::Arc;

use agent_runtime::backend::local::LocalBackend;
use agent_runtime::backend::Backend;
use agent_runtime::serve::{InProcessHost, InProcessOptions};
use otlp::{http_receiver, span_in, until, Received};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::ServiceExt;
use serde_json::{json, Value};

const PAGE: &str = r#"<!doctype html>
<html><head><title>Traced</title></head>
<body><button onclick="document.getElementById('out').textContent = 'clicked'">Press me</button>
<p id="out">not yet</p></body></html>"#;

async fn call(client: &RunningService<RoleClient, ()>, tool: &'static str, args: Value) -> Value {
    let mut params = CallToolRequestParams::new(tool);
    params.arguments = args.as_object().cloned();
    let result: CallToolResult = client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let structured = result.structured_content.clone().unwrap_or_default();
    assert_ne!(result.is_error, Some(true), "{tool} failed: {structured}");
    structured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_click_is_one_trace_with_a_playwright_span() -> anyhow::Result<()> {
    let received = Received::default();
    let http = http_receiver(received.clone()).await;
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{http}"));
    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    std::env::remove_var("OTEL_SERVICE_NAME");
    let telemetry = agent_runtime_telemetry::init(
        "agent-runtime",
        agent_runtime_telemetry::LogFormat::Text,
        "info",
        &agent_runtime_telemetry::OtelEnv::from_env(),
    )?;

    let backend = Arc::new(
        LocalBackend::with_browser().unwrap_or_else(|e| panic!("the browser tier cannot run: {e}")),
    );
    let dyn_backend: Arc<dyn Backend> = backend.clone();
    let host = InProcessHost::start(
        dyn_backend,
        InProcessOptions {
            rest: false,
            ..InProcessOptions::default()
        },
    )
    .await?;

    let mut bridge = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .arg("--addr")
        .arg(host.grpc_url())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = bridge.stdout.take().expect("piped");
    let stdin = bridge.stdin.take().expect("piped");
    let client = ().serve((stdout, stdin)).await?;

    let created = call(&client, "sandbox_create", json!({})).await;
    let id = created["sandbox_id"]
        .as_str()
        .expect("sandbox_id")
        .parse()?;
    call(
        &client,
        "file_write",
        json!({"path": "index.html", "content": PAGE}),
    )
    .await;
    // The local backend's workspace is a host directory, so the page's URL is its path.
    let url = format!("file://{}/index.html", backend.workspace(&id).display());
    call(&client, "browser_goto", json!({ "url": url })).await;
    let snapshot = call(&client, "browser_snapshot", json!({"screenshot": false})).await;
    let elements = snapshot["elements"].as_str().expect("elements");
    let line = elements
        .lines()
        .find(|l| l.contains("Press me"))
        .unwrap_or_else(|| panic!("no button in\n{elements}"));
    let ref_id = line
        .strip_prefix('[')
        .and_then(|l| l.split_once(']'))
        .map(|(r, _)| r.to_owned())
        .unwrap_or_else(|| panic!("{line}: no [ref_N]"));
    call(&client, "browser_click", json!({ "ref_id": ref_id })).await;
    let after = call(&client, "browser_snapshot", json!({"screenshot": false})).await;
    assert!(
        after["text"]
            .as_str()
            .is_some_and(|t| t.contains("clicked")),
        "the click did not happen: {after}"
    );

    let tool = until(&received, "the bridge's browser_click span", |spans| {
        spans
            .iter()
            .find(|g| g.service == "mcp-bridge" && g.name == "tools/call browser_click")
            .cloned()
    })
    .await;
    let host_click = span_in(
        &received,
        "agent-runtime",
        "agent_runtime.v1.Sandbox/BrowserClick",
        &tool.trace,
    )
    .await;
    assert_eq!(host_click.parent, tool.id, "host span under the bridge's");
    let daemon_click = span_in(
        &received,
        "sandboxd",
        "agent_runtime.v1.Sandbox/BrowserClick",
        &tool.trace,
    )
    .await;
    assert_eq!(
        daemon_click.parent, host_click.id,
        "sandboxd's span under the host's"
    );
    let playwright = until(&received, "the playwright.click span", |spans| {
        spans
            .iter()
            .find(|g| g.name == "playwright.click" && g.trace == tool.trace)
            .cloned()
    })
    .await;
    assert_eq!(playwright.service, "sandboxd");
    assert_eq!(
        playwright.parent, daemon_click.id,
        "playwright.click under sandboxd's call span"
    );
    assert_eq!(
        playwright.attrs.get("action").map(String::as_str),
        Some("click")
    );

    client.cancel().await?;
    let _ = bridge.wait().await;
    host.shutdown().await?;
    telemetry.shutdown().await;
    Ok(())
}
